"""The live factory floor: what the running server is doing right now, read from its own /metrics.

`read_floor(before, after, limits)` turns two scrapes into a `FloorState`: the lanes (requests running
against `max_num_seqs`), the queue at the door (requests waiting), the warehouse (KV-cache use), copied
worksheets (prefix-cache hits over queried tokens between the scrapes), orders sent back to wait
(preemptions between the scrapes), the conveyor's speed (generated tokens per second) and the batch on
the cart (mean tokens per engine step against `max_num_batched_tokens`, from vLLM's
`vllm:iteration_tokens_total` histogram). Every part names the flag that sizes it. A part whose metric
the server does not publish is `not_reported`; a rate before the second scrape is `warming_up`; nothing
is ever filled in.

`FloorSampler` scrapes in a small background thread while someone looks (it stops by itself when
nobody has read it for a few seconds, so a closed floor costs the server nothing) and keeps the last
two minutes, plus the last busy stretch ("the last run") for the replay.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from dashboard.measure import metrics as m

ITERATION_TOKENS = "vllm:iteration_tokens_total"

MEASURED = "measured"
NOT_REPORTED = "not_reported"  # the server publishes no such metric
WARMING_UP = "warming_up"  # a rate needs a second scrape
NOTHING_TO_MEASURE = "nothing_to_measure"  # a ratio over an interval with no work (no prompt, no step)

PART_KEYS = ("lanes", "queue", "warehouse", "worksheets", "preemptions", "conveyor", "cart")

# The flag that sizes each part (catalog names; the warehouse depends on the backend).
PART_FLAGS: dict[str, str] = {
    "lanes": "max_num_seqs",
    "queue": "max_num_seqs",
    "warehouse": "kv_cache_memory_gib",
    "worksheets": "enable_prefix_caching",
    "preemptions": "kv_cache_memory_gib",
    "conveyor": "enforce_eager",
    "cart": "max_num_batched_tokens",
}
PART_METRICS: dict[str, str] = {
    "lanes": m.RUNNING,
    "queue": m.WAITING,
    "warehouse": m.KV_CACHE_USAGE,
    "worksheets": f"{m.PREFIX_HITS} / {m.PREFIX_QUERIES}",
    "preemptions": m.PREEMPTIONS,
    "conveyor": m.GENERATION_TOKENS,
    "cart": ITERATION_TOKENS,
}


def warehouse_flag(backend: str) -> str:
    return "gpu_memory_utilization" if backend == "cuda" else "kv_cache_memory_gib"


@dataclass(frozen=True)
class FloorLimits:
    """The sizes the running server was started with (from its config and its start report)."""

    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None  # None: left to vLLM, which does not publish it
    kv_cache_tokens: int | None = None
    prefix_caching: bool | None = None
    backend: str = "cpu"

    @classmethod
    def from_config(
        cls, values: Mapping[str, Any] | None, kv_cache_tokens: int | None = None, backend: str = "cpu"
    ) -> FloorLimits:
        values = values or {}
        prefix = values.get("enable_prefix_caching")
        return cls(
            max_num_seqs=_int_or_none(values.get("max_num_seqs")),
            max_num_batched_tokens=_int_or_none(values.get("max_num_batched_tokens")),
            kv_cache_tokens=kv_cache_tokens,
            prefix_caching=None if prefix is None else bool(prefix),
            backend=backend,
        )


@dataclass(frozen=True)
class Part:
    """One part of the floor: its number, what bounds it, the flag that sizes it and how sure it is."""

    key: str
    status: str  # MEASURED | NOT_REPORTED | WARMING_UP | NOTHING_TO_MEASURE
    value: float | None = None
    limit: float | None = None
    flag: str = ""
    metric: str = ""
    total: float | None = None  # for counters: the total since the server started

    @property
    def known(self) -> bool:
        return self.status == MEASURED and self.value is not None

    def fill(self) -> float | None:
        """value / limit, clipped to 0-1, or None when either is unknown."""
        if not self.known or not self.limit:
            return None
        return max(0.0, min(1.0, float(self.value) / float(self.limit)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class FloorState:
    taken_at: float
    interval_s: float | None  # seconds since the previous scrape (None for the first)
    parts: Mapping[str, Part] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Part:
        return self.parts[key]

    def amount(self, key: str) -> float:
        """The part's measured value; 0 when it is missing or unknown."""
        part = self.parts.get(key)
        return float(part.value) if part is not None and part.known else 0.0  # type: ignore[arg-type]

    @property
    def busy(self) -> bool:
        """Someone is being served or waits at the door."""
        return self.amount("lanes") > 0 or self.amount("queue") > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "interval_s": self.interval_s,
            "parts": {
                key: {
                    "status": part.status,
                    "value": part.value,
                    "limit": part.limit,
                    "flag": part.flag,
                    "metric": part.metric,
                    "total": part.total,
                }
                for key, part in self.parts.items()
            },
        }


# ------------------------------------------------------------------------------------------ reading


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _part(key: str, limits: FloorLimits, **kwargs: Any) -> Part:
    flag = warehouse_flag(limits.backend) if key in ("warehouse", "preemptions") else PART_FLAGS[key]
    return Part(key=key, flag=flag, metric=PART_METRICS[key], **kwargs)


def _gauge(key: str, value: float | None, limit: float | None, limits: FloorLimits) -> Part:
    if value is None:
        return _part(key, limits, status=NOT_REPORTED, limit=limit)
    return _part(key, limits, status=MEASURED, value=value, limit=limit)


def _worksheets(before: m.MetricsSnapshot | None, after: m.MetricsSnapshot, limits: FloorLimits) -> Part:
    if not (after.has(m.PREFIX_HITS) and after.has(m.PREFIX_QUERIES)):
        return _part("worksheets", limits, status=NOT_REPORTED)
    total = after.prefix_cache_hit_rate()
    if before is None:
        return _part("worksheets", limits, status=WARMING_UP, limit=1.0, total=total)
    queried = m.counter_delta(before, after, m.PREFIX_QUERIES) or 0.0
    if queried <= 0:
        return _part("worksheets", limits, status=NOTHING_TO_MEASURE, limit=1.0, total=total)
    rate = m.prefix_hit_rate_between(before, after)
    return _part("worksheets", limits, status=MEASURED, value=rate, limit=1.0, total=total)


def _preemptions(before: m.MetricsSnapshot | None, after: m.MetricsSnapshot, limits: FloorLimits) -> Part:
    total = after.value(m.PREEMPTIONS)
    if total is None:
        return _part("preemptions", limits, status=NOT_REPORTED)
    if before is None:
        return _part("preemptions", limits, status=WARMING_UP, total=total)
    delta = m.counter_delta(before, after, m.PREEMPTIONS)
    return _part("preemptions", limits, status=MEASURED, value=delta, total=total)


def _conveyor(
    before: m.MetricsSnapshot | None, after: m.MetricsSnapshot, interval: float | None, limits: FloorLimits
) -> Part:
    total = after.value(m.GENERATION_TOKENS)
    if total is None:
        return _part("conveyor", limits, status=NOT_REPORTED)
    if before is None or not interval or interval <= 0:
        return _part("conveyor", limits, status=WARMING_UP, total=total)
    delta = m.counter_delta(before, after, m.GENERATION_TOKENS) or 0.0
    return _part("conveyor", limits, status=MEASURED, value=delta / interval, total=total)


def _cart(before: m.MetricsSnapshot | None, after: m.MetricsSnapshot, limits: FloorLimits) -> Part:
    limit = limits.max_num_batched_tokens
    if after.histogram(ITERATION_TOKENS) is None:
        return _part("cart", limits, status=NOT_REPORTED, limit=limit)
    if before is None:
        return _part("cart", limits, status=WARMING_UP, limit=limit)
    steps = m.histogram_delta(before, after, ITERATION_TOKENS)
    if steps is None or steps.count <= 0:
        return _part("cart", limits, status=NOTHING_TO_MEASURE, limit=limit)
    return _part("cart", limits, status=MEASURED, value=steps.mean(), limit=limit, total=steps.count)


def read_floor(
    before: m.MetricsSnapshot | None, after: m.MetricsSnapshot, limits: FloorLimits | None = None
) -> FloorState:
    """The floor at the moment of `after`; rates and counters over the time since `before`."""
    limits = limits or FloorLimits()
    interval = after.taken_at - before.taken_at if before is not None else None
    lanes_limit = float(limits.max_num_seqs) if limits.max_num_seqs else None
    parts = {
        "lanes": _gauge("lanes", after.requests_running(), lanes_limit, limits),
        "queue": _gauge("queue", after.requests_waiting(), None, limits),
        "warehouse": _gauge("warehouse", after.kv_cache_usage(), 1.0, limits),
        "worksheets": _worksheets(before, after, limits),
        "preemptions": _preemptions(before, after, limits),
        "conveyor": _conveyor(before, after, interval, limits),
        "cart": _cart(before, after, limits),
    }
    return FloorState(taken_at=after.taken_at, interval_s=interval, parts=parts)


def warehouse_tokens(state: FloorState, limits: FloorLimits) -> float | None:
    """KV-cache tokens in use, when both the use and the size are known."""
    part = state.parts.get("warehouse")
    if part is None or not part.known or not limits.kv_cache_tokens:
        return None
    return float(part.value or 0.0) * limits.kv_cache_tokens


# ------------------------------------------------------------------------------------------ replay


def last_run(states: list[FloorState], margin: int = 2) -> list[FloorState]:
    """The newest busy stretch of `states` with `margin` quiet snapshots on each side (empty if none)."""
    busy = [index for index, state in enumerate(states) if state.busy]
    if not busy:
        return []
    end = busy[-1]
    start = end
    quiet_in_row = 0
    for index in range(end - 1, -1, -1):  # walk back until a long quiet gap ends the run
        if states[index].busy:
            start, quiet_in_row = index, 0
        else:
            quiet_in_row += 1
            if quiet_in_row > 2 * margin + 4:
                break
    return states[max(0, start - margin) : end + margin + 1]


def busiest(states: list[FloorState]) -> int:
    """The index of the look with the most lanes busy (the first of equals; waiting orders break ties),
    where a replay opens: the moment worth seeing first. 0 for no states."""

    def load(index: int) -> tuple[float, float, int]:
        return states[index].amount("lanes"), states[index].amount("queue"), -index

    return max(range(len(states)), key=load) if states else 0


# ------------------------------------------------------------------------------------------ sampler

RUN_MARGIN = 2  # quiet snapshots kept on each side of a run
RUN_GAP = 8  # this many quiet snapshots in a row end a run
RUN_LIMIT = 3000  # the newest snapshots of a very long run

Scraper = Callable[[str], m.MetricsSnapshot]


FLOOR_FAMILIES = (
    m.RUNNING,
    m.WAITING,
    m.KV_CACHE_USAGE,
    m.PREFIX_HITS,
    m.PREFIX_QUERIES,
    m.PREEMPTIONS,
    m.GENERATION_TOKENS,
    ITERATION_TOKENS + "_sum",
    ITERATION_TOKENS + "_count",
    ITERATION_TOKENS + "_bucket",
)
_FLOOR_PREFIXES = tuple(name + end for name in FLOOR_FAMILIES for end in ("{", " "))


def floor_lines(text: str) -> str:
    """Only the samples the floor reads: vLLM's /metrics is ~60 KB, mostly histograms the floor does not
    need; reading ~3 KB instead keeps each look at about 2 ms of Python instead of ~30 ms."""
    return "\n".join(line for line in text.splitlines() if line.startswith(_FLOOR_PREFIXES))


def http_scraper(timeout: float = 2.0) -> Scraper:
    client = httpx.Client(trust_env=False, timeout=timeout)

    def scrape(base_url: str) -> m.MetricsSnapshot:
        response = client.get(m.metrics_url(base_url), timeout=timeout)
        response.raise_for_status()
        return m.MetricsSnapshot.from_text(floor_lines(response.text))

    return scrape


@dataclass
class _Watch:
    base_url: str = ""
    limits: FloorLimits = field(default_factory=FloorLimits)


class FloorSampler:
    """Scrapes the watched server every `interval_s` while someone reads it; keeps `keep_s` of states."""

    def __init__(
        self,
        interval_s: float = 0.25,
        keep_s: float = 120.0,
        idle_stop_s: float = 8.0,
        scraper: Scraper | None = None,
        threaded: bool = True,
    ) -> None:
        """`threaded=False`: nothing scrapes by itself; `sample_once()` is called by hand (tests)."""
        self.interval_s = interval_s
        self.keep_s = keep_s
        self.idle_stop_s = idle_stop_s
        self._scraper = scraper
        self.threaded = threaded
        self._lock = threading.Lock()
        self._watch = _Watch()
        self._states: deque[FloorState] = deque()
        self._run: list[FloorState] = []
        self._quiet_after = 0
        self._previous: m.MetricsSnapshot | None = None
        self._last_read = 0.0
        self._thread: threading.Thread | None = None
        self.scrapes = 0
        self.failures = 0
        self.last_error = ""

    # reading side ---------------------------------------------------------------------------------

    def watch(self, base_url: str, limits: FloorLimits) -> None:
        """Look at this server (a new one clears the floor); starts the thread if it is not running."""
        with self._lock:
            if base_url != self._watch.base_url:
                self._states.clear()
                self._run = []
                self._previous = None
            self._watch = _Watch(base_url, limits)
            self._last_read = time.monotonic()
            if self.threaded and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._loop, name="floor-sampler", daemon=True)
                self._thread.start()

    def states(self) -> list[FloorState]:
        with self._lock:
            self._last_read = time.monotonic()
            return list(self._states)

    def latest(self) -> FloorState | None:
        with self._lock:
            self._last_read = time.monotonic()
            return self._states[-1] if self._states else None

    def last_run(self) -> list[FloorState]:
        """The newest busy stretch, kept even after it leaves the two-minute window."""
        with self._lock:
            extra_quiet = max(0, self._quiet_after - RUN_MARGIN)
            return list(self._run[: len(self._run) - extra_quiet])

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # sampling side --------------------------------------------------------------------------------

    def sample_once(self) -> FloorState | None:
        """One scrape of the watched server, added to the replay; None when it did not answer."""
        with self._lock:
            watch = self._watch
        if not watch.base_url:
            return None
        scraper = self._scraper or http_scraper()
        self._scraper = scraper
        try:
            snapshot = scraper(watch.base_url)
        except (httpx.HTTPError, m.MetricsParseError, OSError) as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        with self._lock:
            if watch.base_url != self._watch.base_url:
                return None
            state = read_floor(self._previous, snapshot, watch.limits)
            self._previous = snapshot
            self._add(state)
            self.scrapes += 1
        return state

    def _add(self, state: FloorState) -> None:
        self._states.append(state)
        while self._states and state.taken_at - self._states[0].taken_at > self.keep_s:
            self._states.popleft()
        self._follow_run(state)

    def _follow_run(self, state: FloorState) -> None:
        """Grow the current run, or start a new one (with a few quiet states before it)."""
        ongoing = bool(self._run) and self._quiet_after <= RUN_GAP
        if state.busy:
            if not ongoing:
                before = list(self._states)[-RUN_MARGIN - 1 : -1]
                self._run = before
            self._run.append(state)
            self._quiet_after = 0
        elif ongoing:
            self._run.append(state)
            self._quiet_after += 1
        if len(self._run) > RUN_LIMIT:
            del self._run[: len(self._run) - RUN_LIMIT]

    def _loop(self) -> None:
        while True:
            with self._lock:
                idle = time.monotonic() - self._last_read
            if idle > self.idle_stop_s:
                with self._lock:
                    self._thread = None
                    self._previous = None  # the next look starts a fresh interval
                return
            started = time.monotonic()
            self.sample_once()
            time.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
