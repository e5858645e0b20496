"""The load generator's plan, bookkeeping and summaries, driven through an in-process fake transport."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest

from dashboard.engine import presets
from dashboard.measure import loadgen, metrics
from dashboard.measure.client import RequestTiming
from dashboard.measure.loadgen import LoadPlan, Workload

MODEL = "m"
SSE = (
    b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"length"}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)


class FakeServer:
    """Answers every request after `delay` seconds; tracks how many were in flight at once."""

    def __init__(self, delay: float = 0.01, fail_every: int = 0) -> None:
        self.delay = delay
        self.fail_every = fail_every
        self.in_flight = 0
        self.peak = 0
        self.bodies: list[dict] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        number = len(self.bodies)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.fail_every and number % self.fail_every == 0:
            return httpx.Response(500, json={"error": {"message": "boom"}})
        return httpx.Response(200, content=SSE)


def _run(
    server: FakeServer, plan: LoadPlan, workload: Workload | None = None, **kwargs
) -> loadgen.LoadResult:
    async def go() -> loadgen.LoadResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
            return await loadgen.run_load_async(
                "http://fake", MODEL, workload or Workload.synthetic(16, 2), plan, client=client, **kwargs
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
    server = FakeServer(delay=0.1)
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
