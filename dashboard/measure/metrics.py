"""What the server says about itself on /metrics (Prometheus text format), read without extra libraries.

`parse()` turns the text into samples; `MetricsSnapshot` answers questions about one scrape (KV cache
usage, requests running/waiting, prefix-cache hit rate); `histogram_delta()` compares two scrapes, so
the server's own latency histograms can be read over exactly the requests sent in between.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from dashboard.measure.client import tls_context

METRICS_PATH = "/metrics"

TTFT = "vllm:time_to_first_token_seconds"
E2E = "vllm:e2e_request_latency_seconds"
ITL = "vllm:inter_token_latency_seconds"
QUEUE = "vllm:request_queue_time_seconds"
PREFILL = "vllm:request_prefill_time_seconds"
DECODE = "vllm:request_decode_time_seconds"
LATENCY_HISTOGRAMS = (TTFT, E2E, ITL, QUEUE, PREFILL, DECODE)

KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
PREFIX_HITS = "vllm:prefix_cache_hits_total"
PREFIX_QUERIES = "vllm:prefix_cache_queries_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
PREEMPTIONS = "vllm:num_preemptions_total"
CACHE_CONFIG = "vllm:cache_config_info"


class MetricsParseError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Histogram:
    """Cumulative buckets (upper bound, count of observations <= bound), their sum and count."""

    name: str
    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float

    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        return bucket_quantile(self.buckets, q)


# ---------------------------------------------------------------------------------------------- parsing


def _parse_labels(text: str, start: int) -> tuple[dict[str, str], int]:
    """Read `{a="x",b="y"}` starting at the `{`; return the labels and the index after `}`."""
    labels: dict[str, str] = {}
    i = start + 1
    while True:
        while i < len(text) and text[i] in " ,":
            i += 1
        if i >= len(text):
            raise MetricsParseError(f"unclosed label set: {text!r}")
        if text[i] == "}":
            return labels, i + 1
        eq = text.find("=", i)
        if eq < 0 or eq + 1 >= len(text) or text[eq + 1] != '"':
            raise MetricsParseError(f"bad label in: {text!r}")
        key = text[i:eq].strip()
        value, i = _parse_quoted(text, eq + 1)
        labels[key] = value


def _parse_quoted(text: str, start: int) -> tuple[str, int]:
    escapes = {"\\": "\\", '"': '"', "n": "\n"}
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(escapes.get(text[i + 1], "\\" + text[i + 1]))
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1
        out.append(char)
        i += 1
    raise MetricsParseError(f"unclosed quote in: {text!r}")


def _parse_value(word: str) -> float:
    lowered = word.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    if lowered == "nan":
        return math.nan
    return float(word)


def parse_line(line: str) -> Sample | None:
    """One sample line, or None for comments and blank lines."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    brace = line.find("{")
    space = line.find(" ")
    if brace >= 0 and (space < 0 or brace < space):
        name = line[:brace]
        labels, end = _parse_labels(line, brace)
        rest = line[end:].split()
    else:
        name, *rest = line.split()
        labels = {}
    if not rest:
        raise MetricsParseError(f"sample without value: {line!r}")
    try:
        value = _parse_value(rest[0])
    except ValueError as exc:
        raise MetricsParseError(f"bad value in: {line!r}") from exc
    return Sample(name=name, labels=labels, value=value)


def parse(text: str) -> list[Sample]:
    """All samples of a Prometheus text exposition, in order. Raises MetricsParseError on garbage."""
    samples = []
    for line in text.splitlines():
        sample = parse_line(line)
        if sample is not None:
            samples.append(sample)
    return samples


def parse_types(text: str) -> dict[str, str]:
    """The `# TYPE name kind` declarations: metric family name -> counter/gauge/histogram/..."""
    types = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "#" and parts[1] == "TYPE":
            types[parts[2]] = parts[3]
    return types


# ---------------------------------------------------------------------------------------------- queries


def _matches(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in wanted.items())


@dataclass
class MetricsSnapshot:
    """One scrape of /metrics."""

    samples: list[Sample]
    taken_at: float = field(default_factory=time.time)  # wall clock
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str, taken_at: float | None = None) -> MetricsSnapshot:
        return cls(parse(text), taken_at if taken_at is not None else time.time(), parse_types(text))

    def find(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name and _matches(s.labels, labels)]

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.samples)

    def value(self, name: str, **labels: str) -> float | None:
        """Sum of the matching samples (several engines add up), or None when the metric is absent."""
        found = self.find(name, **labels)
        return sum(s.value for s in found) if found else None

    def histogram(self, name: str, **labels: str) -> Histogram | None:
        """A histogram family summed over label sets (engines, models), or None when absent."""
        bucket_samples = self.find(name + "_bucket", **labels)
        count = self.value(name + "_count", **labels)
        total = self.value(name + "_sum", **labels)
        if count is None or total is None:
            return None
        by_bound: dict[float, float] = {}
        for sample in bucket_samples:
            bound = _parse_value(sample.labels.get("le", "+Inf"))
            by_bound[bound] = by_bound.get(bound, 0.0) + sample.value
        return Histogram(name, tuple(sorted(by_bound.items())), total, count)

    # Gauges and counters the pages show -------------------------------------------------------------

    def kv_cache_usage(self) -> float | None:
        """Fraction (0-1) of the KV cache in use; the mean when several engines report."""
        found = self.find(KV_CACHE_USAGE)
        return sum(s.value for s in found) / len(found) if found else None

    def requests_running(self) -> float | None:
        return self.value(RUNNING)

    def requests_waiting(self) -> float | None:
        return self.value(WAITING)

    def prefix_cache_hit_rate(self) -> float | None:
        """Hit tokens / queried tokens since the server started; None before any query."""
        return _ratio(self.value(PREFIX_HITS), self.value(PREFIX_QUERIES))

    def kv_cache_tokens(self) -> int | None:
        """The KV cache size in tokens, from the labels of vllm:cache_config_info (vLLM 0.2x+)."""
        return _int_label(self.find(CACHE_CONFIG), "kv_cache_size_tokens")

    def block_size(self) -> int | None:
        return _int_label(self.find(CACHE_CONFIG), "block_size")

    def gauges(self) -> dict[str, float | None]:
        return {
            "kv_cache_usage": self.kv_cache_usage(),
            "running": self.requests_running(),
            "waiting": self.requests_waiting(),
            "prefix_cache_hit_rate": self.prefix_cache_hit_rate(),
        }


def _ratio(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None or whole <= 0:
        return None
    return part / whole


def _int_label(samples: list[Sample], key: str) -> int | None:
    for sample in samples:
        raw = sample.labels.get(key)
        if raw is not None:
            try:
                return int(float(raw))
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------------------------------------- deltas


def bucket_quantile(buckets: Iterable[tuple[float, float]], q: float) -> float | None:
    """Estimate a quantile from cumulative buckets the way Prometheus' histogram_quantile does:
    find the bucket holding rank q x total and interpolate linearly inside it (from 0 for the first).
    A rank in the +Inf bucket answers the highest finite bound."""
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be between 0 and 1")
    ordered = sorted(buckets)
    if not ordered:
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = (bound if not math.isinf(bound) else lower_bound), count
    return lower_bound


@dataclass(frozen=True)
class HistogramDelta:
    """What a histogram gained between two scrapes: the observations of the requests in between."""

    name: str
    count: float
    sum: float
    buckets: tuple[tuple[float, float], ...]

    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None

    def mean_ms(self) -> float | None:
        mean = self.mean()
        return None if mean is None else mean * 1000.0

    def quantile(self, q: float) -> float | None:
        return bucket_quantile(self.buckets, q)

    def quantile_ms(self, q: float) -> float | None:
        value = self.quantile(q)
        return None if value is None else value * 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "sum": self.sum,
            "mean_ms": self.mean_ms(),
            "p50_ms": self.quantile_ms(0.5),
            "p90_ms": self.quantile_ms(0.9),
            "p99_ms": self.quantile_ms(0.99),
        }


def histogram_delta(before: MetricsSnapshot, after: MetricsSnapshot, name: str) -> HistogramDelta | None:
    """`after - before` for one histogram; None when `after` lacks it. A counter that went down means
    the server restarted in between: then `after` alone is the delta."""
    new = after.histogram(name)
    if new is None:
        return None
    old = before.histogram(name)
    if old is None or new.count < old.count:
        return HistogramDelta(name, new.count, new.sum, new.buckets)
    old_by_bound = dict(old.buckets)
    buckets = tuple((bound, count - old_by_bound.get(bound, 0.0)) for bound, count in new.buckets)
    return HistogramDelta(name, new.count - old.count, new.sum - old.sum, buckets)


def latency_deltas(before: MetricsSnapshot, after: MetricsSnapshot) -> dict[str, HistogramDelta]:
    """The six request-latency histograms over the requests finished between two scrapes."""
    deltas = {}
    for name in LATENCY_HISTOGRAMS:
        delta = histogram_delta(before, after, name)
        if delta is not None:
            deltas[name] = delta
    return deltas


def counter_delta(before: MetricsSnapshot, after: MetricsSnapshot, name: str) -> float | None:
    new = after.value(name)
    if new is None:
        return None
    old = before.value(name)
    return new if old is None or new < old else new - old


def prefix_hit_rate_between(before: MetricsSnapshot, after: MetricsSnapshot) -> float | None:
    """Prefix-cache hit rate over the requests between two scrapes."""
    return _ratio(counter_delta(before, after, PREFIX_HITS), counter_delta(before, after, PREFIX_QUERIES))


# ---------------------------------------------------------------------------------------------- scraping


def metrics_url(base_url: str) -> str:
    return base_url.rstrip("/") + METRICS_PATH


def scrape(base_url: str, timeout: float = 5.0, client: httpx.Client | None = None) -> MetricsSnapshot:
    """GET /metrics and parse it. Raises httpx.HTTPError when the server does not answer."""
    if client is not None:
        response = client.get(metrics_url(base_url), timeout=timeout)
    else:
        response = httpx.get(metrics_url(base_url), timeout=timeout, verify=tls_context())
    response.raise_for_status()
    return MetricsSnapshot.from_text(response.text)


async def ascrape(client: httpx.AsyncClient, base_url: str, timeout: float = 5.0) -> MetricsSnapshot:
    response = await client.get(metrics_url(base_url), timeout=timeout)
    response.raise_for_status()
    return MetricsSnapshot.from_text(response.text)


def try_scrape(base_url: str, timeout: float = 5.0) -> MetricsSnapshot | None:
    """Like `scrape`, but None when the server is down or the text is not Prometheus."""
    try:
        return scrape(base_url, timeout)
    except (httpx.HTTPError, MetricsParseError):
        return None
