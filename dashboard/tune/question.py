"""The tuner's question: the goal to minimise (or maximise), an optional limit, the load and the budgets.

Goals are written like the CLI's `--goal`: `p50-e2e` (median whole answer), `p90-ttft` (first token,
90th percentile), `p50-itl` (time per output token after the first), or `throughput` (answers per
second, with a limit such as `p90-ttft=50ms` that every answer must keep).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from dashboard.i18n import N_

METRICS = ("e2e", "ttft", "itl")
PERCENTILES = (50, 90, 99)
THROUGHPUT = "throughput"
METRIC_ALIASES = {"tpot": "itl", "token": "itl", "answer": "e2e", "first-token": "ttft"}
_GOAL = re.compile(r"^p(\d{2})-([a-z0-9-]+)$")
_LIMIT = re.compile(r"^p(\d{2})-([a-z0-9-]+)\s*(<=|=)\s*([0-9.]+)\s*(ms|s)?$")


class QuestionError(ValueError):
    """A goal, limit or budget the tuner cannot work with; `message` is an English msgid."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message.format(**params))
        self.message = message
        self.params = params


@dataclass(frozen=True)
class Goal:
    metric: str  # "e2e", "ttft", "itl" or "throughput"
    percentile: int | None = 50  # None for throughput

    @property
    def lower_is_better(self) -> bool:
        return self.metric != THROUGHPUT

    @property
    def key(self) -> str:
        return THROUGHPUT if self.metric == THROUGHPUT else f"p{self.percentile}-{self.metric}"

    @property
    def unit(self) -> str:
        return "req/s" if self.metric == THROUGHPUT else "ms"


@dataclass(frozen=True)
class Limit:
    metric: str
    percentile: int
    max_ms: float

    @property
    def key(self) -> str:
        return f"p{self.percentile}-{self.metric}"

    def text(self) -> str:
        return f"{self.key} <= {self.max_ms:g} ms"


def _metric(word: str) -> str:
    word = METRIC_ALIASES.get(word, word)
    if word not in METRICS:
        raise QuestionError(
            N_("Unknown measure {word}: use e2e (whole answer), ttft (first token) or itl (time per token)."),
            word=word,
        )
    return word


def _percentile(text: str) -> int:
    value = int(text)
    if value not in PERCENTILES:
        raise QuestionError(N_("Use p50, p90 or p99, not p{value}."), value=value)
    return value


def parse_goal(text: str) -> Goal:
    """'p50-e2e' -> Goal('e2e', 50); 'throughput' -> Goal('throughput', None)."""
    text = text.strip().lower()
    if text in (THROUGHPUT, "answers-per-s", "rps"):
        return Goal(THROUGHPUT, None)
    match = _GOAL.match(text)
    if not match:
        raise QuestionError(
            N_("The goal {text} is not understood. Write it like p50-e2e, p90-ttft, p50-itl or throughput."),
            text=text,
        )
    return Goal(_metric(match.group(2)), _percentile(match.group(1)))


def parse_limit(text: str) -> Limit:
    """'p90-ttft=50ms' (or '<=', or seconds with 's') -> Limit('ttft', 90, 50.0)."""
    match = _LIMIT.match(text.strip().lower())
    if not match:
        raise QuestionError(
            N_("The limit {text} is not understood. Write it like p90-ttft=50ms."), text=text.strip()
        )
    value = float(match.group(4)) * (1000.0 if match.group(5) == "s" else 1.0)
    if value <= 0:
        raise QuestionError(N_("A limit must be more than 0 ms."))
    return Limit(_metric(match.group(2)), _percentile(match.group(1)), value)


@dataclass(frozen=True)
class Load:
    concurrency: int | None = 1
    rate: float | None = None  # requests per second (Poisson arrivals); then concurrency is a cap

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise QuestionError(N_("The request rate must be more than 0 per second."))
        if self.rate is None and (self.concurrency is None or self.concurrency < 1):
            raise QuestionError(N_("The number of requests at once must be at least 1."))

    def text(self) -> str:
        if self.rate is not None:
            return f"{self.rate:g} req/s"
        return f"{self.concurrency} at once"


@dataclass(frozen=True)
class TuneQuestion:
    """Everything that defines one tuning study; the same question resumes the same study."""

    workload: dict[str, Any]  # Workload.to_dict() of the request asked
    goal: Goal
    load: Load = field(default_factory=Load)
    limit: Limit | None = None
    memory_gib: float | None = None
    minutes: float = 10.0
    allow_request_changes: bool = True  # smaller max_tokens, compact JSON
    allow_changed_answers: bool = False  # may the best settings answer differently?
    backend: str = "cpu"
    model: str = "embedded"
    preset: str = ""

    def __post_init__(self) -> None:
        if self.goal.metric == THROUGHPUT and self.limit is None:
            raise QuestionError(
                N_("The throughput goal needs a latency limit to keep, for example --limit p90-ttft=50ms.")
            )
        if self.minutes <= 0:
            raise QuestionError(N_("The time budget must be more than 0 minutes."))
        if self.memory_gib is not None and self.memory_gib <= 0:
            raise QuestionError(N_("The memory budget must be more than 0 GiB."))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["goal"] = self.goal.key
        data["limit"] = self.limit.text() if self.limit else None
        return data

    def study_name(self) -> str:
        """The same question (time budget aside) names the same study, so a second run resumes it."""
        data = self.to_dict()
        data.pop("minutes")
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"tune-{self.preset or 'custom'}-{self.goal.key}-{digest}"
