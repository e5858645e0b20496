"""The load generator: many streamed requests at a fixed concurrency or a Poisson request rate.

Connections are never the bottleneck: httpx's default pool of 100 connections would queue requests
silently (and the queueing would look like server latency), so clients have unlimited pools. And because
httpcore scans its whole pool on every request event (its cost grows with the number of connections),
each request in flight borrows its own `httpx.AsyncClient` holding one keep-alive connection from a
free list (`ClientPool`): as many connections as requests in flight, at constant cost per request.
Concurrency is bounded by workers (closed loop) or by an `asyncio.Semaphore` (open loop, rate mode).
Every request is timed by `client.stream_chat`; failed requests are counted and reported, never hidden.

`run_load()` is the blocking entry point for the CLI and for Streamlit worker threads.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import httpx

from dashboard.engine.presets import RequestSpec
from dashboard.measure import metrics
from dashboard.measure.client import RequestTiming, auth_headers, stream_chat, tls_context

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


@dataclass(frozen=True)
class LoadPlan:
    """How to send: a fixed number of requests in flight (closed loop), or new requests arriving at a
    Poisson `rate` per second (open loop, with `concurrency` as an optional cap on requests in flight).
    Stops after `requests` requests or `duration_s` seconds, whichever comes first; at least one is needed.
    Requests already sent when time runs out are allowed to finish."""

    concurrency: int | None = 1
    rate: float | None = None
    requests: int | None = 20
    duration_s: float | None = None
    warmup: int = 0  # sequential requests sent first and left out of the results
    seed: int = 0
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.requests is None and self.duration_s is None:
            raise ValueError("a load plan needs a number of requests or a duration")
        if self.requests is not None and self.requests < 1:
            raise ValueError("requests must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if self.rate is None and (self.concurrency is None or self.concurrency < 1):
            raise ValueError("a closed-loop plan needs concurrency >= 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")

    @property
    def mode(self) -> str:
        return "rate" if self.rate is not None else "concurrency"


@dataclass
class LoadResult:
    """One load test: settings, per-request timings and the figures they add up to (JSON-able)."""

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

    def to_dict(self, with_timings: bool = True) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "timings"}
        if with_timings:
            data["timings"] = [t.to_dict() for t in self.timings]
        return data


def summarize(
    timings: Sequence[RequestTiming],
    plan: LoadPlan,
    workload: Workload,
    duration_s: float,
    started_at: float,
    stopped: bool = False,
) -> LoadResult:
    """Add per-request timings up into a LoadResult (pure)."""
    good = [t for t in timings if t.ok]
    bad = [t for t in timings if not t.ok]
    output_tokens = [t.completion_tokens for t in good if t.completion_tokens is not None]
    prompt_tokens = [t.prompt_tokens for t in good if t.prompt_tokens is not None]
    rate_base = duration_s if duration_s > 0 else None
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
        ok=len(good),
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
    )


# ---------------------------------------------------------------------------------------------- the runner


def make_client(timeout_s: float = 120.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout_s), verify=tls_context())


class ClientPool:
    """Idle clients, each keeping one connection alive; a request borrows one and gives it back.
    With a `shared` client (tests inject a fake transport this way) every request uses that one."""

    def __init__(self, timeout_s: float, shared: httpx.AsyncClient | None = None) -> None:
        self.timeout_s = timeout_s
        self.shared = shared
        self._idle: list[httpx.AsyncClient] = []
        self._all: list[httpx.AsyncClient] = []

    def acquire(self) -> httpx.AsyncClient:
        if self.shared is not None:
            return self.shared
        if self._idle:
            return self._idle.pop()
        client = make_client(self.timeout_s)
        self._all.append(client)
        return client

    def release(self, client: httpx.AsyncClient) -> None:
        if client is not self.shared:
            self._idle.append(client)

    @property
    def size(self) -> int:
        return len(self._all)

    async def aclose(self) -> None:
        for client in self._all:
            await client.aclose()
        self._all.clear()
        self._idle.clear()


class _Run:
    """State shared by the coroutines of one load test."""

    def __init__(
        self,
        clients: ClientPool,
        base_url: str,
        model: str,
        workload: Workload,
        plan: LoadPlan,
        api_key: str | None,
        on_progress: ProgressCallback | None,
        stop: threading.Event | None,
    ) -> None:
        self.clients, self.base_url, self.model = clients, base_url, model
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
        client = self.clients.acquire()
        try:
            timing = await stream_chat(
                client, self.base_url, payload, api_key=self.api_key, timeout=self.plan.timeout_s
            )
        finally:
            self.clients.release(client)
        self.timings.append(timing)
        if self.on_progress is not None:
            self.on_progress(len(self.timings), self.plan.requests)
        return timing

    async def closed_loop_worker(self) -> None:
        while (index := self.take_index()) is not None:
            await self.send(index)

    async def open_loop(self) -> None:
        rng = random.Random(self.plan.seed)
        limit = self.plan.concurrency
        gate = asyncio.Semaphore(limit) if limit else None
        tasks: list[asyncio.Task] = []
        next_at = time.perf_counter()
        while (index := self.take_index()) is not None:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._gated_send(gate, index)))
            next_at += rng.expovariate(self.plan.rate or 1.0)
        if tasks:
            await asyncio.gather(*tasks)

    async def _gated_send(self, gate: asyncio.Semaphore | None, index: int) -> None:
        if gate is None:
            await self.send(index)
            return
        async with gate:
            await self.send(index)


async def run_load_async(
    base_url: str,
    model: str,
    workload: Workload,
    plan: LoadPlan,
    api_key: str | None = None,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    client: httpx.AsyncClient | None = None,
) -> LoadResult:
    clients = ClientPool(plan.timeout_s, shared=client)
    try:
        warm = clients.acquire()
        for i in range(plan.warmup):
            payload = workload.payload(model, -1 - i)
            await stream_chat(warm, base_url, payload, api_key=api_key, timeout=plan.timeout_s)
        clients.release(warm)
        run = _Run(clients, base_url, model, workload, plan, api_key, on_progress, stop)
        started_at = time.time()
        start = time.perf_counter()
        if plan.duration_s is not None:
            run.deadline = start + plan.duration_s
        if plan.mode == "rate":
            await run.open_loop()
        else:
            workers = plan.concurrency or 1
            if plan.requests is not None:
                workers = min(workers, plan.requests)
            await asyncio.gather(*(run.closed_loop_worker() for _ in range(workers)))
        duration = time.perf_counter() - start
    finally:
        await clients.aclose()
    return summarize(run.timings, plan, workload, duration, started_at, run.stopped)


def run_load(
    base_url: str,
    model: str,
    workload: Workload,
    plan: LoadPlan,
    api_key: str | None = None,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Run one load test to the end and return its result (blocking; call it from a worker thread)."""
    return asyncio.run(run_load_async(base_url, model, workload, plan, api_key, on_progress, stop))


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
) -> list[LoadResult]:
    """One closed-loop test per concurrency level, in order; each result goes to `on_level` when done."""
    results = []
    for number, level in enumerate(levels):
        plan = LoadPlan(
            concurrency=level,
            requests=requests_per_level,
            duration_s=duration_s,
            warmup=warmup if number == 0 else 0,
        )
        result = run_load(base_url, model, workload, plan, api_key, on_progress, stop)
        results.append(result)
        if on_level is not None:
            on_level(result)
        if result.stopped:
            break
    return results


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
