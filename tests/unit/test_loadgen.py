"""The load generator's plans, shapes, bookkeeping and summaries, driven against a local aiohttp server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import threading
import time

import pytest
from aiohttp import web

from dashboard.engine import presets
from dashboard.measure import loadgen, metrics
from dashboard.measure.client import RequestTiming
from dashboard.measure.loadgen import LatencyLimits, LoadPlan, Workload
from tests.unit.sse_server import local_server, sse_response

MODEL = "m"
SSE = (
    b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"length"}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)


class FakeServer:
    """Answers every request after `delay` seconds; tracks how many were in flight at once, when each
    arrived, and serves a /metrics page whose waiting queue is `waiting`. With `hold_until`, no request
    is answered before that many are in flight at once (or 30 s have passed)."""

    def __init__(self, delay: float = 0.01, fail_every: int = 0, hold_until: int = 0) -> None:
        self.delay = delay
        self.fail_every = fail_every
        self.hold_until = hold_until
        self.all_in = asyncio.Event()
        self.in_flight = 0
        self.peak = 0
        self.bodies: list[dict] = []
        self.arrivals: list[float] = []
        self.waiting = 0.0
        self.metrics_reads = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        self.arrivals.append(time.perf_counter())
        number = len(self.bodies)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.hold_until:
                if self.in_flight >= self.hold_until:
                    self.all_in.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.all_in.wait(), 30)
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.fail_every and number % self.fail_every == 0:
            return web.json_response({"error": {"message": "boom"}}, status=500)
        return await sse_response(request, [SSE])

    async def metrics(self, request: web.Request) -> web.Response:
        self.metrics_reads += 1
        served = len(self.bodies)
        text = (
            f"{metrics.WAITING} {self.waiting}\n"
            f'{metrics.TTFT}_bucket{{le="+Inf"}} {served}\n{metrics.TTFT}_count {served}\n'
            f"{metrics.TTFT}_sum {served * 0.004}\n"
        )
        return web.Response(text=text)


def _run(
    server: FakeServer, plan: LoadPlan, workload: Workload | None = None, **kwargs
) -> loadgen.LoadResult:
    async def go() -> loadgen.LoadResult:
        async with local_server(server.__call__, gets={"/metrics": server.metrics}) as url:
            return await loadgen.run_load_async(
                url, MODEL, workload or Workload.synthetic(16, 2), plan, **kwargs
            )

    return asyncio.run(go())


def test_plan_needs_a_bound_and_sane_numbers():
    with pytest.raises(ValueError):
        LoadPlan(requests=None, duration_s=None)
    with pytest.raises(ValueError):
        LoadPlan(concurrency=0)
    with pytest.raises(ValueError):
        LoadPlan(rate=-1)
    assert LoadPlan(rate=5, concurrency=None).mode == "rate"
    assert LoadPlan(concurrency=4).mode == "concurrency"


def test_closed_loop_sends_exactly_the_planned_requests_and_never_exceeds_concurrency():
    server = FakeServer(delay=0.02)
    result = _run(server, LoadPlan(concurrency=3, requests=10))
    assert result.sent == 10 and result.ok == 10 and result.errors == 0
    assert server.peak == 3


def test_concurrency_above_100_is_not_capped_by_a_connection_pool():
    server = FakeServer(delay=0.0, hold_until=150)  # a pool capped at 100 would leave the peak at 100
    result = _run(server, LoadPlan(concurrency=150, requests=150))
    assert result.ok == 150
    assert server.peak == 150


def test_rate_mode_sends_the_planned_requests_and_respects_the_in_flight_cap():
    server = FakeServer(delay=0.05)
    result = _run(server, LoadPlan(rate=400, concurrency=2, requests=12))
    assert result.sent == 12
    assert server.peak <= 2
    assert result.mode == "rate" and result.rate == 400


def test_duration_bound_stops_sending_new_requests():
    server = FakeServer(delay=0.02)
    result = _run(server, LoadPlan(concurrency=2, requests=None, duration_s=0.2))
    assert 0 < result.sent < 100
    assert result.sent == result.ok


def test_errors_are_counted_with_their_message():
    server = FakeServer(fail_every=2)
    result = _run(server, LoadPlan(concurrency=1, requests=6))
    assert result.errors == 3 and result.ok == 3
    assert result.error_kinds == {"HTTP 500: boom": 3}
    assert result.e2e_ms.n == 3  # latencies only from the successful ones


def test_progress_callback_counts_up_to_the_total():
    seen: list[tuple[int, int | None]] = []
    _run(FakeServer(), LoadPlan(concurrency=2, requests=5), on_progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_stop_event_ends_the_run_early():
    stop = threading.Event()
    stop.set()
    result = _run(FakeServer(), LoadPlan(concurrency=2, requests=5), stop=stop)
    assert result.sent == 0 and result.stopped


def test_warmup_requests_are_sent_but_not_counted():
    server = FakeServer()
    result = _run(server, LoadPlan(concurrency=1, requests=3, warmup=2))
    assert len(server.bodies) == 5
    assert result.sent == 3


def test_synthetic_payload_fixes_output_length_and_varies_prompts():
    workload = Workload.synthetic(50, 7)
    first, second = workload.payload(MODEL, 0), workload.payload(MODEL, 1)
    assert first["ignore_eos"] is True and first["max_tokens"] == 7
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert len(first["messages"][-1]["content"].split()) == 50
    assert first["messages"] != second["messages"]
    shared = Workload.synthetic(50, 7, unique_prompts=False)
    assert shared.payload(MODEL, 0) == shared.payload(MODEL, 1)


def test_synthetic_needs_positive_lengths():
    with pytest.raises(ValueError):
        Workload.synthetic(0, 5)


def test_preset_workload_sends_the_preset_request():
    spec = presets.get("pika-json").request
    assert Workload.from_request(spec).payload(MODEL, 3) == spec.payload(MODEL, stream=True)
    assert "response_format" not in Workload.from_request(spec, json_mode=False).payload(MODEL)


def _timing(ttft: float, e2e: float, tokens: int, ok: bool = True) -> RequestTiming:
    return RequestTiming(
        ok=ok,
        error=None if ok else "x",
        text="",
        ttft_ms=ttft if ok else None,
        itl_ms=[(e2e - ttft) / (tokens - 1)] * (tokens - 1) if ok else [],
        e2e_ms=e2e,
        prompt_tokens=100,
        completion_tokens=tokens if ok else None,
    )


def test_summarize_computes_rates_from_successful_requests():
    timings = [_timing(100, 300, 5), _timing(200, 600, 5), _timing(0, 0, 2, ok=False)]
    result = loadgen.summarize(
        timings, LoadPlan(concurrency=2, requests=3), Workload.synthetic(1, 1), 2.0, 0.0
    )
    assert result.ok == 2 and result.errors == 1
    assert result.requests_per_s == 1.0
    assert result.output_tokens_per_s == 5.0
    assert result.ttft_ms.mean == 150.0
    assert result.tpot_ms.p50 == pytest.approx(75.0)
    assert result.mean_prompt_tokens == 100
    json.dumps(result.to_dict())


def _hist(name: str, total_s: float, count: int) -> str:
    return f'{name}_bucket{{le="+Inf"}} {count}\n{name}_count {count}\n{name}_sum {total_s}\n'


def test_metrics_agreement_compares_means_and_counts():
    before = metrics.MetricsSnapshot.from_text(_hist(metrics.TTFT, 1.0, 10) + _hist(metrics.E2E, 5.0, 10))
    after = metrics.MetricsSnapshot.from_text(_hist(metrics.TTFT, 1.3, 12) + _hist(metrics.E2E, 5.9, 12))
    timings = [_timing(160, 470, 5), _timing(150, 450, 5)]
    result = loadgen.summarize(
        timings, LoadPlan(concurrency=1, requests=2), Workload.synthetic(1, 1), 1.0, 0.0
    )
    agreement = loadgen.metrics_agreement(before, after, result)
    assert agreement["ttft"].server_mean_ms == pytest.approx(150.0)
    assert agreement["ttft"].difference_ms == pytest.approx(5.0)
    assert agreement["ttft"].agrees()
    assert agreement["e2e"].server_mean_ms == pytest.approx(450.0)
    assert not agreement["e2e"].agrees(relative=0.0, absolute_ms=1.0)


def test_metrics_agreement_fails_when_counts_differ():
    before = metrics.MetricsSnapshot.from_text(_hist(metrics.TTFT, 0.0, 0))
    after = metrics.MetricsSnapshot.from_text(_hist(metrics.TTFT, 0.3, 2))
    result = loadgen.summarize(
        [_timing(150, 450, 5)], LoadPlan(requests=1), Workload.synthetic(1, 1), 1.0, 0.0
    )
    assert not loadgen.metrics_agreement(before, after, result)["ttft"].agrees()


# ---------------------------------------------------------------------------------------------- shapes


def test_every_shape_builds_its_plan_and_refuses_missing_numbers():
    assert LoadPlan.of_shape("concurrency", concurrency=4).shape == "concurrency"
    assert LoadPlan.of_shape("poisson", rate=3.0).shape == "poisson"
    assert LoadPlan.of_shape("constant", rate=3.0).shape == "constant"
    assert LoadPlan.of_shape("throughput", requests=8).mode == "throughput"
    with pytest.raises(ValueError):
        LoadPlan.of_shape("constant")  # no rate
    with pytest.raises(ValueError):
        LoadPlan.of_shape("zigzag")
    with pytest.raises(ValueError):
        LoadPlan(throughput=True, concurrency=None, requests=None, duration_s=1.0)
    with pytest.raises(ValueError):
        LoadPlan(rate=2.0, arrivals="bursty")


def test_constant_rate_spaces_arrivals_evenly():
    server = FakeServer(delay=0.001)
    result = _run(server, LoadPlan.of_shape("constant", rate=20.0, requests=6))
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    assert result.ok == 6 and result.shape == "constant"
    # 50 ms apart: one late arrival shortens the next gap (the schedule catches up), so look at the
    # typical gap and the whole span rather than at every gap on a busy machine
    assert 0.04 < statistics.median(gaps) < 0.06, gaps
    assert 0.2 < server.arrivals[-1] - server.arrivals[0] < 0.35, gaps
    assert max(gaps) < 2 * statistics.median(gaps), gaps


def test_poisson_rate_spaces_arrivals_unevenly():
    server = FakeServer(delay=0.001)
    _run(server, LoadPlan.of_shape("poisson", rate=20.0, requests=8, seed=3))
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    assert max(gaps) > 2 * min(gaps)


def test_throughput_sends_every_request_at_once():
    server = FakeServer(delay=0.3)
    result = _run(server, LoadPlan.of_shape("throughput", requests=40))
    assert result.ok == 40 and result.mode == "throughput"
    assert server.peak == 40


def test_throughput_with_a_cap_keeps_that_many_in_flight():
    server = FakeServer(delay=0.05)
    result = _run(server, LoadPlan.of_shape("throughput", concurrency=5, requests=20))
    assert result.ok == 20 and server.peak == 5


# ------------------------------------------------------------------------------------ warm-up, goodput


def _at(start: float, ttft: float, e2e: float, ok: bool = True) -> RequestTiming:
    timing = _timing(ttft, e2e, 5, ok=ok)
    timing.started_perf = start
    return timing


def test_warmup_and_cooldown_seconds_are_left_out_of_the_figures_but_errors_are_not():
    timings = [
        _at(100.0, 900, 1000),  # starts in the warm-up second
        _at(101.5, 100, 200),
        _at(102.0, 120, 220),
        _at(103.0, 0, 50, ok=False),  # a failure inside the window
        _at(104.8, 100, 300),  # still running in the cool-down second
    ]
    plan = LoadPlan(concurrency=2, requests=5, warmup_s=1.0, cooldown_s=1.0)
    result = loadgen.summarize(timings, plan, Workload.synthetic(1, 1), 6.0, 0.0, start_perf=100.0)
    assert (result.warmup_excluded, result.cooldown_excluded, result.measured) == (1, 1, 3)
    assert result.ttft_ms.n == 2 and result.ttft_ms.max == 120
    assert result.sent == 5 and result.errors == 1
    assert result.window_s == pytest.approx(4.0)
    assert result.requests_per_s == pytest.approx(0.5)


def test_goodput_counts_requests_within_every_limit_and_failures_as_misses():
    timings = [_timing(100, 300, 5), _timing(400, 600, 5), _timing(100, 900, 5), _timing(0, 0, 2, False)]
    limits = LatencyLimits(ttft_ms=200, e2e_ms=500)
    plan = LoadPlan(concurrency=2, requests=4, limits=limits)
    result = loadgen.summarize(timings, plan, Workload.synthetic(1, 1), 2.0, 0.0)
    assert result.goodput == pytest.approx(0.25)
    assert result.goodput_per_s == pytest.approx(0.5)
    assert result.limits == {"ttft_ms": 200, "tpot_ms": None, "e2e_ms": 500}


def test_goodput_is_unknown_without_limits_and_limits_must_be_positive():
    result = loadgen.summarize(
        [_timing(100, 300, 5)], LoadPlan(requests=1), Workload.synthetic(1, 1), 1.0, 0.0
    )
    assert result.goodput is None
    with pytest.raises(ValueError):
        LatencyLimits(ttft_ms=0)


def test_time_per_token_limit_uses_the_per_token_figure():
    assert LatencyLimits(tpot_ms=60).met_by(_timing(100, 300, 5))  # 50 ms per token
    assert not LatencyLimits(tpot_ms=40).met_by(_timing(100, 300, 5))


# ---------------------------------------------------------------------------------------------- sweep


def test_sweep_rates_lie_evenly_between_the_slowest_and_fastest():
    rates = loadgen.sweep_rates(2.0, 13.0, 10)
    assert rates == pytest.approx([3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0])
    assert loadgen.sweep_rates(5.0, 5.0, 10) == [5.0]


def _climbing(first_ms: float, last_ms: float, n: int = 9) -> list[RequestTiming]:
    step = (last_ms - first_ms) / (n - 1)
    return [_at(float(i), first_ms + step * i, first_ms + step * i + 100) for i in range(n)]


def _result_with(timings: list[RequestTiming], waiting: list[float]) -> loadgen.LoadResult:
    result = loadgen.summarize(timings, LoadPlan(requests=len(timings)), Workload.synthetic(1, 1), 1, 0)
    result.waiting = [(i * 0.5, w) for i, w in enumerate(waiting)]
    return result


def test_oversaturated_when_first_tokens_climb_while_the_queue_grows():
    saturated, reason = loadgen.oversaturation(_result_with(_climbing(50, 800), [0, 2, 5, 9, 14]))
    assert saturated and "growing" in reason


def test_not_oversaturated_when_the_queue_stays_empty_or_first_tokens_are_flat():
    assert not loadgen.oversaturation(_result_with(_climbing(50, 800), [0, 0, 0, 0]))[0]
    assert not loadgen.oversaturation(_result_with(_climbing(50, 55), [0, 2, 5, 9]))[0]
    assert not loadgen.oversaturation(_result_with(_climbing(50, 800, n=4), [0, 2, 5]))[0]


def test_without_a_queue_reading_the_climb_alone_decides():
    saturated, reason = loadgen.oversaturation(_result_with(_climbing(50, 800), []))
    assert saturated and "not seen" in reason


def test_sweep_goes_from_one_at_a_time_to_all_at_once_then_rates_and_stops_when_saturated(monkeypatch):
    calls: list[LoadPlan] = []

    def fake_run_load(base_url, model, workload, plan, *args, **kwargs):
        calls.append(plan)
        if plan.mode == "concurrency":
            return _result_with(_climbing(50, 50), [])  # 9 answers in 1 s
        if plan.mode == "throughput":
            result = _result_with(_climbing(50, 50), [])
            result.requests_per_s = 20.0
            return result
        if plan.rate is not None and plan.rate > 12:
            return _result_with(_climbing(50, 900), [0, 3, 8, 12])
        return _result_with(_climbing(50, 60), [0, 0, 0])

    monkeypatch.setattr(loadgen, "run_load", fake_run_load)
    steps = loadgen.run_sweep("http://x", MODEL, Workload.synthetic(1, 1), requests_per_step=9)
    kinds = [step.kind for step in steps]
    assert kinds[:2] == ["synchronous", "throughput"]
    rates = [step.rate for step in steps[2:]]
    assert rates == pytest.approx([10.0, 11.0, 12.0, 13.0])  # 9 -> 20 in 11 steps; 13 saturates
    assert steps[-1].oversaturated and not any(step.oversaturated for step in steps[:-1])
    assert all(plan.arrivals == "constant" for plan in calls[2:])
    json.dumps([step.to_dict() for step in steps])


# ------------------------------------------------------------------------------------------ three clocks


def test_first_token_clocks_put_three_clocks_side_by_side_with_their_gaps():
    before = metrics.MetricsSnapshot.from_text(_hist(metrics.TTFT, 1.0, 10) + _hist(metrics.QUEUE, 0, 10))
    after = metrics.MetricsSnapshot.from_text(_hist(metrics.TTFT, 1.2, 12) + _hist(metrics.QUEUE, 0.02, 12))
    timings = [_timing(130, 470, 5), _timing(150, 450, 5)]
    for timing, byte in zip(timings, (110.0, 120.0), strict=True):
        timing.first_byte_ms = byte
    result = loadgen.summarize(timings, LoadPlan(requests=2), Workload.synthetic(1, 1), 1.0, 0.0)
    clocks = loadgen.first_token_clocks(before, after, result)
    assert clocks["first_byte_mean_ms"] == pytest.approx(115.0)
    assert clocks["first_content_mean_ms"] == pytest.approx(140.0)
    assert clocks["server_mean_ms"] == pytest.approx(100.0)
    assert clocks["queue_mean_ms"] == pytest.approx(10.0)
    assert clocks["content_after_byte_ms"] == pytest.approx(25.0)
    assert clocks["client_over_server_ms"] == pytest.approx(15.0)


def test_first_token_clocks_say_unknown_when_the_server_saw_nothing():
    snapshot = metrics.MetricsSnapshot.from_text(_hist(metrics.TTFT, 1.0, 10))
    result = loadgen.summarize([_timing(130, 470, 5)], LoadPlan(requests=1), Workload.synthetic(1, 1), 1, 0)
    clocks = loadgen.first_token_clocks(snapshot, snapshot, result)
    assert clocks["server_mean_ms"] is None and clocks["client_over_server_ms"] is None


def test_watching_metrics_fills_the_clocks_and_samples_the_queue():
    server = FakeServer(delay=0.15)
    server.waiting = 3
    result = _run(server, LoadPlan(concurrency=2, requests=4), watch_metrics=True, metrics_every_s=0.05)
    assert result.clocks is not None
    assert result.clocks["server_count"] == 4
    assert result.clocks["server_mean_ms"] == pytest.approx(4.0, rel=0.3)
    assert result.clocks["first_byte_mean_ms"] is not None
    assert result.waiting and all(count == 3 for _at, count in result.waiting)


# ------------------------------------------------------------------------------------ isolated process


def test_a_load_test_in_its_own_process_returns_the_same_kind_of_result_and_reports_progress():
    server = FakeServer(delay=0.01)
    seen: list[tuple[int, int | None]] = []

    async def serve_until(done: threading.Event, where: list[str]) -> None:
        async with local_server(server.__call__) as url:
            where.append(url)
            while not done.is_set():
                await asyncio.sleep(0.05)

    done, where = threading.Event(), []
    thread = threading.Thread(target=lambda: asyncio.run(serve_until(done, where)), daemon=True)
    thread.start()
    while not where:
        time.sleep(0.01)
    try:
        result = loadgen.run_load_isolated(
            where[0], MODEL, Workload.synthetic(4, 2), LoadPlan(concurrency=2, requests=5),
            on_progress=lambda d, t: seen.append((d, t)),
        )  # fmt: skip
    finally:
        done.set()
        thread.join(5)
    assert isinstance(result, loadgen.LoadResult)
    assert (result.sent, result.ok) == (5, 5)
    assert seen[-1] == (5, 5) and len(server.bodies) == 5
