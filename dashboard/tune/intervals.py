"""Percentiles with distribution-free confidence intervals, and the tuner's rule for "better".

The interval of a percentile comes from order statistics: with n answers, the number of answers below
the true p-th percentile is Binomial(n, p), so the k-th and m-th fastest answers bracket it with a
probability that the binomial gives exactly; no assumption about the shape of the times. Too few
answers for a 95% bracket leaves that side unknown (None) instead of inventing one: the median needs
6 answers, the 90th percentile 35 for an upper end.

A setting counts as better only when the two intervals do not overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

CONFIDENCE = 0.95


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); q in 0-100."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(min(k, n) + 1))


def rank_bounds(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int | None, int | None]:
    """1-based ranks (l, u) of the sorted values that bracket the q-quantile (0-1) with at least
    `confidence`, each side with at most (1 - confidence) / 2 to miss; None where n is too small."""
    tail = (1 - confidence) / 2
    lower = None
    for rank in range(1, n + 1):  # P(X <= rank - 1) <= tail: the true quantile lies above x_(rank)
        if _binomial_cdf(rank - 1, n, q) <= tail:
            lower = rank
        else:
            break
    upper = None
    for rank in range(n, 0, -1):  # P(X >= rank) <= tail: the true quantile lies below x_(rank)
        if 1 - _binomial_cdf(rank - 1, n, q) <= tail:
            upper = rank
        else:
            break
    return lower, upper


@dataclass(frozen=True)
class Estimate:
    """One figure (a percentile of a latency, or a rate) with its interval; None = not known."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Estimate:
        data = data or {}
        return cls(data.get("value"), data.get("low"), data.get("high"), int(data.get("n", 0)))


def percentile_estimate(values: Sequence[float], q: float, confidence: float = CONFIDENCE) -> Estimate:
    """The q-th percentile (0-100) of the values with its distribution-free interval."""
    clean = sorted(v for v in values if v is not None and math.isfinite(v))
    if not clean:
        return Estimate(None, None, None, 0)
    lower, upper = rank_bounds(len(clean), q / 100.0, confidence)
    return Estimate(
        value=percentile(clean, q),
        low=clean[lower - 1] if lower is not None else None,
        high=clean[upper - 1] if upper is not None else None,
        n=len(clean),
    )


def mean_estimate(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean of a few batch figures (answers per second of each batch) with a t interval."""
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return Estimate(None, None, None, 0)
    mean = sum(clean) / len(clean)
    if len(clean) < 2:
        return Estimate(mean, None, None, len(clean))
    from scipy import stats as scipy_stats  # late: only throughput goals need it

    sd = math.sqrt(sum((v - mean) ** 2 for v in clean) / (len(clean) - 1))
    half = scipy_stats.t.ppf(0.5 + confidence / 2, len(clean) - 1) * sd / math.sqrt(len(clean))
    return Estimate(mean, mean - half, mean + half, len(clean))


def clearly_better(a: Estimate, b: Estimate, lower_is_better: bool = True) -> bool:
    """True only when a's interval lies wholly on the better side of b's (no overlap)."""
    if not (a.has_interval and b.has_interval):
        return False
    assert a.low is not None and a.high is not None and b.low is not None and b.high is not None
    return a.high < b.low if lower_is_better else a.low > b.high


def overlap(a: Estimate, b: Estimate) -> bool:
    """Whether the two intervals share any value (unknown ends count as overlapping)."""
    return not (clearly_better(a, b) or clearly_better(b, a))


def relative_change(new: float | None, old: float | None) -> float | None:
    """(new - old) / old; None when unknown."""
    if new is None or old is None or old == 0:
        return None
    return (new - old) / old
