"""The load generator: streamed requests sent in the shapes people expect, timed one way.

Shapes (`LoadPlan.shape`):
- "concurrency": a fixed number of requests in flight (closed loop: a new one leaves when one ends);
- "poisson": new requests arrive at random (Poisson) times at `rate` per second (open loop);
- "constant": new requests arrive at evenly spaced times at `rate` per second (open loop);
- "throughput": every request leaves at once, as fast as it goes (optionally capped by `concurrency`).
`run_sweep()` goes from one at a time to saturation with about ten constant rates between (as GuideLLM
and `vllm bench sweep` do) and stops by itself once the server is over-saturated.

Warm-up and cool-down: `warmup` requests are sent one by one before the clock starts, and the first
`warmup_s` / last `cooldown_s` seconds of a run are left out of the figures (their requests are still
counted as sent, and their errors still reported). Goodput is the share of requests that met the
user's latency limits (`LatencyLimits`).

One aiohttp session with an unlimited connection pool carries every request: connections are never
the bottleneck, and queueing in a pool cannot pass for server latency. Every request is timed by
`client.stream_chat`; failed and cut requests are counted and reported, never hidden.

`run_load()` is the blocking entry point for the CLI and for Streamlit worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import aiohttp
import httpx

from dashboard.engine.presets import RequestSpec
from dashboard.measure import metrics
from dashboard.measure.client import (
    RequestTiming,
    auth_headers,
    make_session,
    run_coroutine,
    stream_chat,
    tls_context,
)

ProgressCallback = Callable[[int, int | None], None]  # (requests done, total planned or None)

SYNTHETIC_FILLER = (
    "the of and to in is for on with as at by from that this it be are was or an not but all can "
    "one two new more time year people way day man thing woman life child world school state family"
)
SYNTHETIC_WORDS = SYNTHETIC_FILLER.split()
SYNTHETIC_SYSTEM = "Continue the text."


# ---------------------------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between closest ranks (numpy's default,
    and `statistics.quantiles(..., method="inclusive")`). None for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError("q must be between 0 and 100")
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """Distribution of one latency over the successful requests, in milliseconds."""

    n: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    min: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        values = [v for v in values if v is not None]
        if not values:
            return cls(0, None, None, None, None, None, None)
        return cls(
            n=len(values),
            mean=sum(values) / len(values),
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            min=min(values),
            max=max(values),
        )


# ---------------------------------------------------------------------------------------------- workload


def synthetic_text(tokens: int, salt: str = "") -> str:
    """About `tokens` tokens of plain English filler (common words are one token in most vocabularies).
    A non-empty salt at the start makes prompts differ from their first token, defeating prefix caching."""
    words = [SYNTHETIC_WORDS[i % len(SYNTHETIC_WORDS)] for i in range(max(tokens, 1))]
    if salt:
        words[0] = salt
    return " ".join(words)


@dataclass(frozen=True)
class Workload:
    """What each request asks: a preset request (RequestSpec), or synthetic prompts of a chosen length.

    Synthetic requests ask for exactly `output_tokens` tokens (`ignore_eos`, a vLLM extension), so the
    output length does not depend on what the model says. Their prompt is about `input_tokens` tokens plus
    the chat template's own tokens; the results report the real counts the server saw.
    """

    request: RequestSpec | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    json_mode: bool | None = None  # preset requests: force the JSON schema on or off
    unique_prompts: bool = False  # synthetic: a different first token per request (no prefix-cache hits)
    salt: str = ""  # synthetic: starts the first token; random per workload so runs do not share prompts
    label: str = ""
    filler_words: int | None = None  # synthetic: words of filler text; None = input_tokens (see calibrated)

    @classmethod
    def from_request(cls, request: RequestSpec, json_mode: bool | None = None, label: str = "") -> Workload:
        return cls(request=request, json_mode=json_mode, label=label)

    @classmethod
    def synthetic(
        cls, input_tokens: int, output_tokens: int, unique_prompts: bool = True, label: str = ""
    ) -> Workload:
        if input_tokens < 1 or output_tokens < 1:
            raise ValueError("input_tokens and output_tokens must be at least 1")
        return cls(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            unique_prompts=unique_prompts,
            label=label,
            salt=secrets.token_hex(2) if unique_prompts else "",
        )

    @property
    def is_synthetic(self) -> bool:
        return self.request is None

    def payload(self, model: str, index: int = 0) -> dict[str, Any]:
        if self.request is not None:
            return self.request.payload(model, stream=True, json_mode=self.json_mode)
        salt = f"{self.salt}R{index}" if self.unique_prompts else ""
        return {
            "model": model,
            "messages": [
                {"role": "system", "content": SYNTHETIC_SYSTEM},
                {"role": "user", "content": synthetic_text(self.filler_words or self.input_tokens, salt)},
            ],
            "temperature": 0.0,
            "max_tokens": self.output_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def calibrated(self, base_url: str, model: str, api_key: str | None = None) -> Workload:
        """A synthetic workload whose prompt, chat template included, counts `input_tokens` tokens on this
        server (asks its /tokenize). Unchanged when it is not synthetic or the server cannot count."""
        if self.request is not None:
            return self
        body = {"model": model, "messages": self.payload(model, 0)["messages"]}
        try:
            response = httpx.post(
                base_url.rstrip("/") + "/tokenize",
                json=body,
                headers=auth_headers(api_key),
                timeout=30,
                verify=tls_context(),
            )
            response.raise_for_status()
            counted = int(response.json()["count"])
        except (httpx.HTTPError, KeyError, ValueError):
            return self
        words = self.filler_words or self.input_tokens
        return replace(self, filler_words=max(1, words - (counted - self.input_tokens)))

    def to_dict(self) -> dict[str, Any]:
        if self.request is None:
            return {
                "kind": "synthetic",
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "unique_prompts": self.unique_prompts,
                "salt": self.salt,
                "filler_words": self.filler_words,
                "label": self.label,
            }
        return {
            "kind": "request",
            "label": self.label,
            "max_tokens": self.request.max_tokens,
            "temperature": self.request.temperature,
            "json_mode": self.json_mode if self.json_mode is not None else self.request.schema is not None,
            "messages": [dict(m) for m in self.request.messages],
        }


# ----------------------------------------------------------------------------------------- plan and result

SHAPES = ("concurrency", "poisson", "constant", "throughput")
ARRIVALS = ("poisson", "constant")


@dataclass(frozen=True)
class LatencyLimits:
    """The user's latency limits for goodput; None means no limit on that figure."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "tpot_ms", "e2e_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2e_ms))

    def met_by(self, timing: RequestTiming) -> bool:
        """True when the request succeeded and stayed within every limit. A request without a content
        token fails a first-token limit; one of a single token has no time per token and passes that one."""
        if not timing.ok:
            return False
        if self.ttft_ms is not None and (timing.ttft_ms is None or timing.ttft_ms > self.ttft_ms):
            return False
        tpot = timing.mean_itl_ms()
        if self.tpot_ms is not None and tpot is not None and tpot > self.tpot_ms:
            return False
        return not (self.e2e_ms is not None and timing.e2e_ms > self.e2e_ms)

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass(frozen=True)
class LoadPlan:
    """How to send: a fixed number of requests in flight (closed loop), new requests arriving at `rate`
    per second (open loop; Poisson or evenly spaced arrivals, `concurrency` an optional cap on requests
    in flight), or everything at once (`throughput`, `concurrency` an optional cap).
    Stops after `requests` requests or `duration_s` seconds, whichever comes first; at least one is needed.
    Requests already sent when time runs out are allowed to finish."""

    concurrency: int | None = 1
    rate: float | None = None
    requests: int | None = 20
    duration_s: float | None = None
    warmup: int = 0  # sequential requests sent first and left out of the results
    seed: int = 0
    timeout_s: float = 120.0
    arrivals: str = "poisson"  # rate mode: "poisson" or "constant"
    throughput: bool = False  # send every request at once
    warmup_s: float = 0.0  # requests started in the first seconds are left out of the figures
    cooldown_s: float = 0.0  # requests still running in the last seconds are left out of the figures
    limits: LatencyLimits | None = None  # goodput: the share of requests within these limits

    def __post_init__(self) -> None:
        if self.requests is None and self.duration_s is None:
            raise ValueError("a load plan needs a number of requests or a duration")
        if self.requests is not None and self.requests < 1:
            raise ValueError("requests must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.throughput:
            if self.rate is not None:
                raise ValueError("a throughput plan sends everything at once: no rate")
            if self.requests is None and self.concurrency is None:
                raise ValueError("a throughput plan needs a number of requests or a concurrency cap")
        elif self.rate is None and self.concurrency is None:
            raise ValueError("a closed-loop plan needs concurrency >= 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.arrivals not in ARRIVALS:
            raise ValueError(f"arrivals must be one of {', '.join(ARRIVALS)}")
        if self.warmup < 0 or self.warmup_s < 0 or self.cooldown_s < 0:
            raise ValueError("warm-up and cool-down cannot be negative")

    @classmethod
    def of_shape(
        cls,
        shape: str,
        *,
        concurrency: int | None = None,
        rate: float | None = None,
        **options: Any,
    ) -> LoadPlan:
        """A plan for one of SHAPES: concurrency needs `concurrency`, poisson/constant need `rate`."""
        if shape == "concurrency":
            return cls(concurrency=concurrency or 1, **options)
        if shape in ARRIVALS:
            if rate is None:
                raise ValueError(f"the {shape} shape needs a rate")
            return cls(concurrency=concurrency, rate=rate, arrivals=shape, **options)
        if shape == "throughput":
            return cls(concurrency=concurrency, throughput=True, **options)
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}")

    @property
    def mode(self) -> str:
        if self.throughput:
            return "throughput"
        return "rate" if self.rate is not None else "concurrency"

    @property
    def shape(self) -> str:
        return self.arrivals if self.mode == "rate" else self.mode


@dataclass
class LoadResult:
    """One load test: settings, per-request timings and the figures they add up to (JSON-able).

    The figures come from the requests inside the measured window (after the warm-up seconds, before
    the cool-down seconds); `sent`, `ok` and `errors` count every request, so no failure is hidden."""

    mode: str
    concurrency: int | None
    rate: float | None
    planned_requests: int | None
    duration_limit_s: float | None
    workload: dict[str, Any]
    started_at: float  # wall clock at the first send
    duration_s: float  # first send -> last answer
    sent: int
    ok: int
    errors: int
    error_kinds: dict[str, int]
    ttft_ms: Summary
    itl_ms: Summary  # every gap between streamed chunks, pooled over requests (as vLLM's bench does)
    tpot_ms: Summary  # per request: (e2e - ttft) / (output tokens - 1)
    e2e_ms: Summary
    requests_per_s: float | None
    output_tokens_per_s: float | None
    mean_prompt_tokens: float | None
    mean_output_tokens: float | None
    stopped: bool = False  # the caller asked to stop before the plan was done
    timings: list[RequestTiming] = field(default_factory=list)
    shape: str = "concurrency"
    first_byte_ms: Summary = field(default_factory=lambda: Summary.of([]))
    measured: int = 0  # requests inside the measured window (successful or not)
    warmup_excluded: int = 0
    cooldown_excluded: int = 0
    window_s: float | None = None  # length of the measured window
    limits: dict[str, float | None] | None = None
    goodput: float | None = None  # share of measured requests within the limits (0-1)
    goodput_per_s: float | None = None  # measured requests within the limits per second
    clocks: dict[str, Any] | None = None  # three clocks of the first token, see first_token_clocks()
    waiting: list[tuple[float, float]] = field(default_factory=list)  # (s since start, queue length)
    preempted: list[tuple[float, float]] = field(default_factory=list)  # (s since start, preemptions so far)

    def to_dict(self, with_timings: bool = True) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "timings"}
        if with_timings:
            data["timings"] = [t.to_dict() for t in self.timings]
        return data


def _end_perf(timing: RequestTiming) -> float:
    return timing.started_perf + timing.e2e_ms / 1000.0


def measured_window(
    timings: Sequence[RequestTiming], plan: LoadPlan, start_perf: float | None, duration_s: float
) -> tuple[list[RequestTiming], int, int, float]:
    """(requests inside the window, left out by the warm-up, left out by the cool-down, window seconds).
    A request counts when it started after the warm-up seconds and ended before the cool-down began."""
    if start_perf is None or (plan.warmup_s <= 0 and plan.cooldown_s <= 0):
        return list(timings), 0, 0, duration_s
    opens = start_perf + plan.warmup_s
    closes = start_perf + duration_s - plan.cooldown_s
    inside, early, late = [], 0, 0
    for timing in timings:
        if timing.started_perf < opens:
            early += 1
        elif _end_perf(timing) > closes:
            late += 1
        else:
            inside.append(timing)
    return inside, early, late, max(closes - opens, 0.0)


def summarize(
    timings: Sequence[RequestTiming],
    plan: LoadPlan,
    workload: Workload,
    duration_s: float,
    started_at: float,
    stopped: bool = False,
    start_perf: float | None = None,
) -> LoadResult:
    """Add per-request timings up into a LoadResult (pure). With `start_perf` (the perf_counter at the
    first send) the plan's warm-up and cool-down seconds are left out of the figures."""
    inside, early, late, window_s = measured_window(timings, plan, start_perf, duration_s)
    good = [t for t in inside if t.ok]
    bad = [t for t in timings if not t.ok]
    output_tokens = [t.completion_tokens for t in good if t.completion_tokens is not None]
    prompt_tokens = [t.prompt_tokens for t in good if t.prompt_tokens is not None]
    rate_base = window_s if window_s > 0 else None
    limits = plan.limits if plan.limits is not None and plan.limits.any else None
    within = sum(1 for t in inside if limits.met_by(t)) if limits else 0
    return LoadResult(
        mode=plan.mode,
        concurrency=plan.concurrency,
        rate=plan.rate,
        planned_requests=plan.requests,
        duration_limit_s=plan.duration_s,
        workload=workload.to_dict(),
        started_at=started_at,
        duration_s=duration_s,
        sent=len(timings),
        ok=len(timings) - len(bad),
        errors=len(bad),
        error_kinds=dict(Counter((t.error or "unknown")[:200] for t in bad)),
        ttft_ms=Summary.of([t.ttft_ms for t in good if t.ttft_ms is not None]),
        itl_ms=Summary.of([gap for t in good for gap in t.itl_ms]),
        tpot_ms=Summary.of([v for v in (t.mean_itl_ms() for t in good) if v is not None]),
        e2e_ms=Summary.of([t.e2e_ms for t in good]),
        requests_per_s=len(good) / rate_base if rate_base else None,
        output_tokens_per_s=sum(output_tokens) / rate_base if rate_base and output_tokens else None,
        mean_prompt_tokens=sum(prompt_tokens) / len(prompt_tokens) if prompt_tokens else None,
        mean_output_tokens=sum(output_tokens) / len(output_tokens) if output_tokens else None,
        stopped=stopped,
        timings=list(timings),
        shape=plan.shape,
        first_byte_ms=Summary.of([t.first_byte_ms for t in good if t.first_byte_ms is not None]),
        measured=len(inside),
        warmup_excluded=early,
        cooldown_excluded=late,
        window_s=window_s,
        limits=limits.to_dict() if limits else None,
        goodput=within / len(inside) if limits and inside else None,
        goodput_per_s=within / rate_base if limits and rate_base else None,
    )


# ---------------------------------------------------------------------------------------------- the runner


class _Run:
    """State shared by the coroutines of one load test."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        model: str,
        workload: Workload,
        plan: LoadPlan,
        api_key: str | None,
        on_progress: ProgressCallback | None,
        stop: threading.Event | None,
    ) -> None:
        self.session, self.base_url, self.model = session, base_url, model
        self.workload, self.plan, self.api_key = workload, plan, api_key
        self.on_progress, self.stop = on_progress, stop
        self.timings: list[RequestTiming] = []
        self.next_index = 0
        self.deadline = math.inf
        self.stopped = False

    def take_index(self) -> int | None:
        """The index of the next request to send, or None when the plan is done."""
        if self.stop is not None and self.stop.is_set():
            self.stopped = True
            return None
        if self.plan.requests is not None and self.next_index >= self.plan.requests:
            return None
        if time.perf_counter() >= self.deadline:
            return None
        index = self.next_index
        self.next_index += 1
        return index

    async def send(self, index: int) -> RequestTiming:
        payload = self.workload.payload(self.model, index)
        timing = await stream_chat(
            self.session, self.base_url, payload, api_key=self.api_key, timeout=self.plan.timeout_s
        )
        self.timings.append(timing)
        if self.on_progress is not None:
            self.on_progress(len(self.timings), self.plan.requests)
        return timing

    async def closed_loop_worker(self) -> None:
        while (index := self.take_index()) is not None:
            await self.send(index)

    def gaps(self) -> Callable[[], float]:
        """Seconds between two arrivals: exponential (Poisson) or fixed (constant rate)."""
        rate = self.plan.rate or 1.0
        if self.plan.arrivals == "constant":
            return lambda: 1.0 / rate
        rng = random.Random(self.plan.seed)
        return lambda: rng.expovariate(rate)

    async def open_loop(self) -> None:
        limit = self.plan.concurrency
        gate = asyncio.Semaphore(limit) if limit else None
        tasks: list[asyncio.Task] = []
        next_gap = self.gaps()
        next_at = time.perf_counter()
        while (index := self.take_index()) is not None:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._gated_send(gate, index)))
            next_at += next_gap()
        if tasks:
            await asyncio.gather(*tasks)

    async def all_at_once(self) -> None:
        """Throughput: every planned request leaves now; with a cap, that many stay in flight."""
        if self.plan.concurrency is not None:
            workers = self.plan.concurrency
            if self.plan.requests is not None:
                workers = min(workers, self.plan.requests)
            await asyncio.gather(*(self.closed_loop_worker() for _ in range(workers)))
            return
        tasks = []
        while (index := self.take_index()) is not None:
            tasks.append(asyncio.create_task(self.send(index)))
        await asyncio.gather(*tasks)

    async def _gated_send(self, gate: asyncio.Semaphore | None, index: int) -> None:
        if gate is None:
            await self.send(index)
            return
        async with gate:
            await self.send(index)

    async def drive(self) -> None:
        if self.plan.mode == "rate":
            await self.open_loop()
        elif self.plan.mode == "throughput":
            await self.all_at_once()
        else:
            workers = self.plan.concurrency or 1
            if self.plan.requests is not None:
                workers = min(workers, self.plan.requests)
            await asyncio.gather(*(self.closed_loop_worker() for _ in range(workers)))


async def scrape_async(
    session: aiohttp.ClientSession, base_url: str, api_key: str | None = None, timeout: float = 5.0
) -> metrics.MetricsSnapshot | None:
    """GET /metrics and parse it; None when the server does not answer or has no metrics."""
    try:
        async with session.get(
            metrics.metrics_url(base_url),
            headers=auth_headers(api_key),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if response.status != 200:
                return None
            text = await response.text()
        return metrics.MetricsSnapshot.from_text(text)
    except (aiohttp.ClientError, TimeoutError, OSError, metrics.MetricsParseError):
        return None


async def _watch_queue(
    session: aiohttp.ClientSession,
    base_url: str,
    api_key: str | None,
    start: float,
    every_s: float,
    samples: list[tuple[float, float]],
    preempted: list[tuple[float, float]] | None = None,
) -> None:
    """Sample vLLM's waiting queue (`vllm:num_requests_waiting`), and its preemption counter into
    `preempted` (for the request X-ray), until cancelled."""
    while True:
        snapshot = await scrape_async(session, base_url, api_key, timeout=max(every_s * 4, 2.0))
        at = time.perf_counter() - start
        waiting = snapshot.requests_waiting() if snapshot is not None else None
        if waiting is not None:
            samples.append((at, waiting))
        count = snapshot.value(metrics.PREEMPTIONS) if snapshot is not None else None
        if count is not None and preempted is not None:
            preempted.append((at, count))
        await asyncio.sleep(every_s)


async def run_load_async(
    base_url: str,
    model: str,
    workload: Workload,
    plan: LoadPlan,
    api_key: str | None = None,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    client: aiohttp.ClientSession | None = None,
    watch_metrics: bool = False,
    metrics_every_s: float = 0.5,
) -> LoadResult:
    """Run one load test. With `watch_metrics`, /metrics is read before and after (the three clocks of
    the first token) and the waiting queue is sampled during the run; nothing else should use the
    server meanwhile for the clocks to compare the same requests."""
    session = client or make_session(plan.timeout_s)
    before = after = None
    waiting: list[tuple[float, float]] = []
    preempted: list[tuple[float, float]] = []
    try:
        for i in range(plan.warmup):
            payload = workload.payload(model, -1 - i)
            await stream_chat(session, base_url, payload, api_key=api_key, timeout=plan.timeout_s)
        if watch_metrics:
            before = await scrape_async(session, base_url, api_key)
        run = _Run(session, base_url, model, workload, plan, api_key, on_progress, stop)
        started_at = time.time()
        start = time.perf_counter()
        if plan.duration_s is not None:
            run.deadline = start + plan.duration_s
        watcher = None
        if watch_metrics and before is not None:
            watcher = asyncio.create_task(
                _watch_queue(session, base_url, api_key, start, metrics_every_s, waiting, preempted)
            )
        try:
            await run.drive()
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        duration = time.perf_counter() - start
        if before is not None:
            after = await scrape_async(session, base_url, api_key)
            if after is not None and (count := after.value(metrics.PREEMPTIONS)) is not None:
                preempted.append((time.perf_counter() - start, count))
    finally:
        if client is None:
            await session.close()
    result = summarize(run.timings, plan, workload, duration, started_at, run.stopped, start_perf=start)
    result.waiting = waiting
    if before is not None and (count := before.value(metrics.PREEMPTIONS)) is not None:
        preempted.insert(0, (0.0, count))
    result.preempted = preempted
    if before is not None and after is not None:
        result.clocks = first_token_clocks(before, after, result)
    return result


def run_load(
    base_url: str,
    model: str,
    workload: Workload,
    plan: LoadPlan,
    api_key: str | None = None,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    watch_metrics: bool = False,
) -> LoadResult:
    """Run one load test to the end and return its result (blocking; call it from a worker thread)."""
    return run_coroutine(
        run_load_async(
            base_url, model, workload, plan, api_key, on_progress, stop, watch_metrics=watch_metrics
        )
    )


def _isolated_child(
    args: tuple[Any, ...], progress: Any, stop: Any, results: Any
) -> None:  # pragma: no cover - runs in the child process
    base_url, model, workload, plan, api_key, watch_metrics = args
    bridge = threading.Event()

    def watch_stop() -> None:
        while not stop.value:  # a shared flag, polled: see run_load_isolated
            time.sleep(0.1)
        bridge.set()

    threading.Thread(target=watch_stop, daemon=True).start()
    try:
        result = run_load(
            base_url, model, workload, plan, api_key,
            on_progress=lambda done, total: progress.put((done, total)),
            stop=bridge, watch_metrics=watch_metrics,
        )  # fmt: skip
        results.put(("ok", result))
    except BaseException as exc:  # the parent re-raises it
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        progress.put(None)


def run_load_isolated(
    base_url: str,
    model: str,
    workload: Workload,
    plan: LoadPlan,
    api_key: str | None = None,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    watch_metrics: bool = False,
) -> LoadResult:
    """`run_load` in a process of its own: no other thread of the caller (a page, a memory sampler)
    shares its interpreter lock, so none can hold the event loop back and stamp tokens late.
    Progress crosses over through a queue, the stop request through a shared flag that the child polls.
    Not a multiprocessing Event: setting one waits for every waiter to wake, and a waiter in a child that
    has already ended never does, so the page hung for good after a load test."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    progress, results = context.Queue(), context.Queue()
    stop_child = context.Value("b", 0, lock=False)
    args = (base_url, model, workload, plan, api_key, watch_metrics)
    child = context.Process(target=_isolated_child, args=(args, progress, stop_child, results), daemon=True)
    child.start()
    try:
        while True:
            if stop is not None and stop.is_set():
                stop_child.value = 1
            try:
                item = progress.get(timeout=0.1)
            except queue.Empty:
                if not child.is_alive() and results.empty():
                    raise RuntimeError("the load generator's process ended without a result") from None
                continue
            if item is None:
                break
            if on_progress is not None:
                on_progress(*item)
        status, payload = results.get(timeout=30)
    finally:
        stop_child.value = 1
        child.join(10)
    if status != "ok":
        raise RuntimeError(payload)
    return payload


def run_levels(
    base_url: str,
    model: str,
    workload: Workload,
    levels: Sequence[int],
    requests_per_level: int | None = 20,
    duration_s: float | None = None,
    api_key: str | None = None,
    on_progress: ProgressCallback | None = None,
    on_level: Callable[[LoadResult], None] | None = None,
    stop: threading.Event | None = None,
    warmup: int = 0,
    plan: LoadPlan | None = None,
    watch_metrics: bool = False,
) -> list[LoadResult]:
    """One test per level, in order; each result goes to `on_level` when done. A level is a number of
    requests in flight, or, when `plan` has a rate, a rate (the plan gives the shape and its options)."""
    results = []
    for number, level in enumerate(levels):
        base = plan or LoadPlan(requests=requests_per_level, duration_s=duration_s)
        level_plan = replace(
            base,
            concurrency=level if base.mode == "concurrency" else base.concurrency,
            rate=float(level) if base.mode == "rate" else None,
            warmup=warmup if number == 0 else 0,
        )
        result = run_load(base_url, model, workload, level_plan, api_key, on_progress, stop, watch_metrics)
        results.append(result)
        if on_level is not None:
            on_level(result)
        if result.stopped:
            break
    return results


# ---------------------------------------------------------------------------------------------- the sweep

SWEEP_RATES = 10
CLIMB_RATIO = 1.5  # over-saturated: the last third's first tokens wait this much longer than the first's
CLIMB_MIN_MS = 20.0  # ... and at least this many milliseconds longer (noise on an idle server)


@dataclass
class SweepStep:
    """One step of a sweep: "synchronous" (one at a time), "throughput" (all at once) or "rate"."""

    kind: str
    rate: float | None
    result: LoadResult
    oversaturated: bool = False
    reason: str = ""

    def to_dict(self, with_timings: bool = False) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rate": self.rate,
            "oversaturated": self.oversaturated,
            "reason": self.reason,
            "result": self.result.to_dict(with_timings=with_timings),
        }


def sweep_rates(slowest: float, fastest: float, count: int = SWEEP_RATES) -> list[float]:
    """`count` evenly spaced rates strictly between the one-at-a-time rate and the all-at-once rate."""
    if count < 1:
        return []
    if not (slowest > 0 and fastest > slowest):
        return [slowest] if slowest > 0 else []
    step = (fastest - slowest) / (count + 1)
    return [slowest + step * (i + 1) for i in range(count)]


def ttft_climb(timings: Sequence[RequestTiming]) -> tuple[float, float] | None:
    """(mean first-token time of the first third, of the last third) in the order the requests were
    sent; None with fewer than 6 answers."""
    ordered = sorted((t for t in timings if t.ok and t.ttft_ms is not None), key=lambda t: t.started_perf)
    if len(ordered) < 6:
        return None
    third = len(ordered) // 3
    first = [t.ttft_ms or 0.0 for t in ordered[:third]]
    last = [t.ttft_ms or 0.0 for t in ordered[-third:]]
    return sum(first) / len(first), sum(last) / len(last)


def queue_grows(waiting: Sequence[tuple[float, float]]) -> bool | None:
    """True when the waiting queue ends longer than it started (and is not empty at the end); None when
    the server's queue was not seen."""
    if len(waiting) < 2:
        return None
    values = [count for _at, count in waiting]
    half = max(len(values) // 2, 1)
    early = sum(values[:half]) / half
    late = sum(values[half:]) / len(values[half:])
    return late > early and values[-1] > 0


def oversaturation(result: LoadResult) -> tuple[bool, str]:
    """Is the server over-saturated in this run? The first-token time keeps climbing from the start to
    the end of the run while vLLM's waiting queue grows (without a queue reading: the climb alone)."""
    climb = ttft_climb(result.timings)
    if climb is None:
        return False, "too few answers to judge"
    first, last = climb
    climbing = last > first * CLIMB_RATIO and last - first > CLIMB_MIN_MS
    grows = queue_grows(result.waiting)
    detail = f"first token {first:.0f} -> {last:.0f} ms"
    if grows is None:
        return climbing, detail + ", queue not seen"
    detail += ", queue " + ("growing" if grows else "not growing")
    return climbing and grows, detail


def run_sweep(
    base_url: str,
    model: str,
    workload: Workload,
    requests_per_step: int = 20,
    rates: int = SWEEP_RATES,
    api_key: str | None = None,
    limits: LatencyLimits | None = None,
    step_s: float | None = None,
    on_step: Callable[[SweepStep], None] | None = None,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    warmup: int = 1,
    timeout_s: float = 300.0,
) -> list[SweepStep]:
    """From one at a time to saturation: a synchronous run gives the slowest rate, an all-at-once run the
    fastest, then `rates` constant rates between; stops by itself at the first over-saturated rate."""
    steps: list[SweepStep] = []

    def measure(kind: str, plan: LoadPlan, rate: float | None = None) -> SweepStep:
        result = run_load(base_url, model, workload, plan, api_key, on_progress, stop, watch_metrics=True)
        saturated, reason = oversaturation(result) if kind == "rate" else (False, "")
        step = SweepStep(kind, rate, result, saturated, reason)
        steps.append(step)
        if on_step is not None:
            on_step(step)
        return step

    common: dict[str, Any] = {"requests": requests_per_step, "timeout_s": timeout_s, "limits": limits}
    slow = measure("synchronous", LoadPlan(concurrency=1, warmup=warmup, **common))
    if slow.result.stopped or not slow.result.requests_per_s:
        return steps
    fast = measure("throughput", LoadPlan(concurrency=None, throughput=True, **common))
    if fast.result.stopped or not fast.result.requests_per_s:
        return steps
    for rate in sweep_rates(slow.result.requests_per_s, fast.result.requests_per_s, rates):
        count = max(requests_per_step, math.ceil(rate * step_s)) if step_s else requests_per_step
        plan = LoadPlan(concurrency=None, rate=rate, arrivals="constant", **{**common, "requests": count})
        step = measure("rate", plan, rate)
        if step.result.stopped or step.oversaturated:
            break
    return steps


# ----------------------------------------------------------------------------------- three first-token clocks


def first_token_clocks(
    before: metrics.MetricsSnapshot, after: metrics.MetricsSnapshot, result: LoadResult
) -> dict[str, Any]:
    """The first token seen by three clocks over the same requests, in milliseconds (means and p50s):
    the client's first byte, the client's first content token, and vLLM's own
    `time_to_first_token_seconds` histogram (delta between two scrapes), with vLLM's queue time.
    Gaps: `content_after_byte_ms` (an empty role chunk, tokens without text) and `client_over_server_ms`
    (HTTP, request parsing, chat template and tokenizing, which vLLM's clock does not see). Unknown
    figures are None."""
    server = metrics.histogram_delta(before, after, metrics.TTFT)
    queue = metrics.histogram_delta(before, after, metrics.QUEUE)
    byte, content = result.first_byte_ms, result.ttft_ms
    server_mean = server.mean_ms() if server is not None and server.count > 0 else None
    server_p50 = server.quantile_ms(0.5) if server is not None and server.count > 0 else None
    return {
        "first_byte_mean_ms": byte.mean,
        "first_byte_p50_ms": byte.p50,
        "first_content_mean_ms": content.mean,
        "first_content_p50_ms": content.p50,
        "server_mean_ms": server_mean,
        "server_p50_ms": server_p50,  # from the histogram's buckets: approximate
        "server_count": server.count if server is not None else 0.0,
        "client_count": content.n,
        "queue_mean_ms": queue.mean_ms() if queue is not None and queue.count > 0 else None,
        "content_after_byte_ms": _gap(content.mean, byte.mean),
        "client_over_server_ms": _gap(byte.mean, server_mean),
    }


def _gap(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


# ---------------------------------------------------------------------------------------------- cross-check


@dataclass(frozen=True)
class MetricAgreement:
    """Client-side mean of one latency next to the server's histogram mean over the same requests."""

    metric: str
    client_mean_ms: float | None
    server_mean_ms: float | None
    client_count: int
    server_count: float

    @property
    def difference_ms(self) -> float | None:
        if self.client_mean_ms is None or self.server_mean_ms is None:
            return None
        return self.client_mean_ms - self.server_mean_ms

    def agrees(self, relative: float = 0.15, absolute_ms: float = 5.0) -> bool:
        """True when the two means differ by at most `relative` of the server's mean plus `absolute_ms`,
        and both saw the same number of requests."""
        diff = self.difference_ms
        if diff is None or self.server_mean_ms is None or self.client_count != round(self.server_count):
            return False
        return abs(diff) <= relative * self.server_mean_ms + absolute_ms

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["difference_ms"] = self.difference_ms
        return data


def metrics_agreement(
    before: metrics.MetricsSnapshot, after: metrics.MetricsSnapshot, result: LoadResult
) -> dict[str, MetricAgreement]:
    """Compare the client's TTFT and e2e means with the server's histogram deltas between two scrapes
    taken just before and just after the load test (nothing else may use the server in between)."""
    pairs = {"ttft": (metrics.TTFT, result.ttft_ms), "e2e": (metrics.E2E, result.e2e_ms)}
    out = {}
    for key, (name, summary) in pairs.items():
        delta = metrics.histogram_delta(before, after, name)
        out[key] = MetricAgreement(
            metric=key,
            client_mean_ms=summary.mean,
            server_mean_ms=delta.mean_ms() if delta else None,
            client_count=summary.n,
            server_count=delta.count if delta else 0.0,
        )
    return out
