"""Before and after one Apply: the same small workload measured on the old server just before the switch
and on the new one just after, compared only when workload and load are the same.

The workload is the last playground order (its messages, answer length, temperature, JSON schema) or a
standard short probe. Each side sends one warm-up order (the first order after a start is slow and says
nothing about the settings) and then `orders` orders one after another. The verdict uses the same rule
as the sweeps (dashboard.measure.stats): the ratio of the geometric means with its 95% interval, called
faster or slower only when the whole interval lies outside a small noise band; otherwise "no clear change".
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dashboard.i18n import N_
from dashboard.measure import stats
from dashboard.measure.client import RequestTiming, chat_once

ORDERS = 5
WARMUP = 1
NOISE_BAND = stats.NOISE_FLOOR  # two servers of one machine: at least ±5% is what chance alone can do
STANDARD_MESSAGES = ({"role": "user", "content": "Name three colours of LEGO bricks."},)
STANDARD_MAX_TOKENS = 16
LONGEST_ANSWER = 32  # a playground order's answer is capped so a comparison takes seconds, not minutes

FASTER, SLOWER, UNCLEAR = stats.FASTER, stats.SLOWER, stats.UNCLEAR
NOT_COMPARABLE, NOT_MEASURED = "not_comparable", "not_measured"
VERDICT_TEXTS = {
    FASTER: N_("Faster: the same order took {percent} less time."),
    SLOWER: N_("Slower: the same order took {percent} more time."),
    UNCLEAR: N_("No clear change: the gap is inside the spread of the measurements."),
    NOT_COMPARABLE: N_("Not compared: the two sides did not send the same orders."),
    NOT_MEASURED: N_("Not compared: one side could not be measured."),
}

Send = Callable[..., RequestTiming]


@dataclass(frozen=True)
class Probe:
    """The workload: what is sent, how many times, one at a time. Its key decides what is comparable."""

    messages: tuple[Mapping[str, str], ...] = STANDARD_MESSAGES
    max_tokens: int = STANDARD_MAX_TOKENS
    temperature: float = 0.0
    response_format: Mapping[str, Any] | None = None
    source: str = "standard"  # "standard" or "playground"
    orders: int = ORDERS
    concurrency: int = 1

    @property
    def key(self) -> str:
        content = {
            "messages": [dict(m) for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "response_format": self.response_format,
            "orders": self.orders,
            "concurrency": self.concurrency,
        }
        return hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]

    def payload(self, served_name: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": served_name,
            "messages": [dict(m) for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.response_format is not None:
            body["response_format"] = dict(self.response_format)
        return body

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Probe:
        """The last playground order as a probe (the model name is left out: it may change)."""
        return cls(
            messages=tuple(
                {"role": str(m["role"]), "content": str(m["content"])} for m in payload.get("messages", [])
            ),
            max_tokens=min(int(payload.get("max_tokens") or STANDARD_MAX_TOKENS), LONGEST_ANSWER),
            temperature=float(payload.get("temperature") or 0.0),
            response_format=payload.get("response_format"),
            source="playground",
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["messages"] = [dict(m) for m in self.messages]
        data["key"] = self.key
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Probe:
        return cls(
            messages=tuple(dict(m) for m in data.get("messages", STANDARD_MESSAGES)),
            max_tokens=int(data.get("max_tokens", STANDARD_MAX_TOKENS)),
            temperature=float(data.get("temperature", 0.0)),
            response_format=data.get("response_format"),
            source=str(data.get("source", "standard")),
            orders=int(data.get("orders", ORDERS)),
            concurrency=int(data.get("concurrency", 1)),
        )


@dataclass(frozen=True)
class Side:
    """One side's orders (warm-up excluded): answer times, first-token times, answer lengths, answers."""

    probe_key: str
    e2e_ms: tuple[float, ...] = ()
    ttft_ms: tuple[float, ...] = ()
    tokens: tuple[int, ...] = ()
    answers: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def measured(self) -> bool:
        return len(self.e2e_ms) >= 2

    @property
    def median_e2e_ms(self) -> float | None:
        return _median(self.e2e_ms)

    @property
    def median_ttft_ms(self) -> float | None:
        return _median(self.ttft_ms)

    @property
    def spread_ms(self) -> tuple[float, float] | None:
        return (min(self.e2e_ms), max(self.e2e_ms)) if self.e2e_ms else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["median_e2e_ms"] = self.median_e2e_ms
        data["median_ttft_ms"] = self.median_ttft_ms
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Side:
        return cls(
            probe_key=str(data.get("probe_key", "")),
            e2e_ms=tuple(float(v) for v in data.get("e2e_ms", ())),
            ttft_ms=tuple(float(v) for v in data.get("ttft_ms", ())),
            tokens=tuple(int(v) for v in data.get("tokens", ())),
            answers=tuple(str(v) for v in data.get("answers", ())),
            errors=tuple(str(v) for v in data.get("errors", ())),
        )


@dataclass(frozen=True)
class BeforeAfter:
    probe: Probe
    before: Side | None
    after: Side | None
    before_config: Mapping[str, Any] = field(default_factory=dict)
    after_config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def comparison(self) -> stats.Comparison | None:
        if not self.comparable:
            return None
        return stats.compare(self.before.e2e_ms, self.after.e2e_ms)  # type: ignore[union-attr]

    @property
    def comparable(self) -> bool:
        return (
            self.before is not None
            and self.after is not None
            and self.before.measured
            and self.after.measured
            and self.before.probe_key == self.after.probe_key == self.probe.key
        )

    @property
    def verdict(self) -> str:
        if self.before is None or self.after is None or not (self.before.measured and self.after.measured):
            return NOT_MEASURED
        if not self.comparable:
            return NOT_COMPARABLE
        noise = stats.Noise(band=math.log1p(NOISE_BAND), measured=False)
        return stats.effect_of(self.comparison, noise)  # type: ignore[arg-type]

    @property
    def same_answer(self) -> bool | None:
        """At temperature 0: did both servers give the same answer? None when it cannot be told."""
        if self.probe.temperature != 0 or not self.before or not self.after:
            return None
        if not self.before.answers or not self.after.answers:
            return None
        return self.before.answers[0] == self.after.answers[0]

    def percent_change(self) -> float | None:
        comparison = self.comparison
        return None if comparison is None or comparison.ratio is None else (comparison.ratio - 1) * 100

    def verdict_text(self) -> tuple[str, dict[str, Any]]:
        """(English msgid, params) for the verdict; `percent` is a float the caller formats."""
        change = self.percent_change()
        return VERDICT_TEXTS[self.verdict], {"percent": abs(change) if change is not None else None}

    def to_dict(self) -> dict[str, Any]:
        comparison = self.comparison
        return {
            "probe": self.probe.to_dict(),
            "before": None if self.before is None else self.before.to_dict(),
            "after": None if self.after is None else self.after.to_dict(),
            "before_config": dict(self.before_config),
            "after_config": dict(self.after_config),
            "verdict": self.verdict,
            "percent_change": self.percent_change(),
            "interval": None if comparison is None else [comparison.low, comparison.high],
            "same_answer": self.same_answer,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BeforeAfter:
        return cls(
            probe=Probe.from_dict(data.get("probe") or {}),
            before=Side.from_dict(data["before"]) if data.get("before") else None,
            after=Side.from_dict(data["after"]) if data.get("after") else None,
            before_config=dict(data.get("before_config") or {}),
            after_config=dict(data.get("after_config") or {}),
        )


def measure_side(
    base_url: str,
    served_name: str,
    probe: Probe,
    api_key: str | None = None,
    send: Send = chat_once,
    timeout: float = 60,
) -> Side:
    """Send the probe's warm-up order, then its orders one after another, on one server."""
    payload = probe.payload(served_name)
    for _ in range(WARMUP):
        send(base_url, payload, api_key=api_key, timeout=timeout)
    timings = [send(base_url, payload, api_key=api_key, timeout=timeout) for _ in range(probe.orders)]
    good = [t for t in timings if t.ok]
    return Side(
        probe_key=probe.key,
        e2e_ms=tuple(round(t.e2e_ms, 2) for t in good),
        ttft_ms=tuple(round(t.ttft_ms, 2) for t in good if t.ttft_ms is not None),
        tokens=tuple(int(t.completion_tokens or 0) for t in good),
        answers=tuple(t.text for t in good[:1]),
        errors=tuple(str(t.error) for t in timings if not t.ok),
    )


def latest_comparable(entries: Sequence[BeforeAfter]) -> BeforeAfter | None:
    return next((entry for entry in reversed(entries) if entry.comparable), None)


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
