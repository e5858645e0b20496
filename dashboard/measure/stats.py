"""Ratios with confidence intervals, the machine's own noise, and the rule that turns them into a verdict.

Why a t interval on logarithms (and not a bootstrap): response times are positive and skewed, and a
setting changes them by a factor, so the figures are compared on a log scale, where a factor becomes a
difference. The ratio is then the ratio of geometric means, and Welch's t interval on the difference of
the log means (unequal spreads allowed) gives its confidence interval. It is exact for log-normal
times, behaves well from three or four orders per value, and is deterministic: a bootstrap with five
orders would resample only a handful of distinct sets, give a too-narrow interval, and change from one
run to the next.

Noise: a within-server interval only knows how much orders to the same server differ. A new start
of the same settings can also land on a busier or quieter machine, which shifts every order of that
start. So every table run measures an A/A pair (the same settings started twice): the difference it
shows, plus one standard error of that difference (its own orders were few too), is the noise band
("±X% here"). A setting is called faster or slower only when its whole interval lies outside that band;
otherwise the verdict is "no clear change". The row's own t interval already carries the caution that few
orders call for; a 95% t interval on the A/A pair as well would count that caution twice (with three
orders a start, its quantile is 4.3 and the band would swallow a fivefold effect).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats as scipy_stats

CONFIDENCE = 0.95
NOISE_FLOOR = 0.05  # a lucky A/A pair that agrees to 1% still does not prove the machine is that steady
UNKNOWN_NOISE = 0.30  # when no A/A pair could be measured: the spread seen between starts on a busy CPU
TARGET_HALF_WIDTH = 0.08  # stop adding orders when the ratio is known to about ±8%

FASTER, SLOWER, UNCLEAR = "faster", "slower", "unclear"
NOT_A_SPEED_SETTING, NOT_MEASURED_HERE = "not_a_speed_setting", "not_measured_here"
EFFECTS = (FASTER, SLOWER, UNCLEAR, NOT_A_SPEED_SETTING, NOT_MEASURED_HERE)


def _logs(values: Sequence[float | None]) -> list[float]:
    return [math.log(v) for v in values if v is not None and v > 0 and math.isfinite(v)]


def _mean_var(logs: Sequence[float]) -> tuple[float, float]:
    mean = sum(logs) / len(logs)
    var = sum((x - mean) ** 2 for x in logs) / (len(logs) - 1) if len(logs) > 1 else 0.0
    return mean, var


@dataclass(frozen=True)
class Comparison:
    """Figure at the second value / figure at the first (geometric means), with its interval.

    `low`/`high` are None when either side has fewer than two orders: one order per value gives a
    ratio but no way to tell it from chance."""

    ratio: float | None
    low: float | None
    high: float | None
    n_first: int
    n_second: int
    confidence: float = CONFIDENCE
    se: float | None = None  # standard error of the log ratio

    @property
    def n(self) -> int:
        """Orders per value (the smaller side)."""
        return min(self.n_first, self.n_second)

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def half_width(self) -> float | None:
        """Half the interval's width on the log scale (0.08 = known to about ±8%)."""
        if not self.has_interval:
            return None
        return (math.log(self.high) - math.log(self.low)) / 2  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["n"] = self.n
        data["interval"] = [self.low, self.high] if self.has_interval else None
        return data


def compare(
    first: Sequence[float | None], second: Sequence[float | None], confidence: float = CONFIDENCE
) -> Comparison:
    """Welch's t interval on log figures, returned as a ratio interval (second / first)."""
    a, b = _logs(first), _logs(second)
    if not a or not b:
        return Comparison(None, None, None, len(a), len(b), confidence)
    mean_a, var_a = _mean_var(a)
    mean_b, var_b = _mean_var(b)
    diff = mean_b - mean_a
    ratio = math.exp(diff)
    if len(a) < 2 or len(b) < 2:
        return Comparison(ratio, None, None, len(a), len(b), confidence)
    se2 = var_a / len(a) + var_b / len(b)
    if se2 <= 0:  # every order gave the same figure (a deterministic figure): the interval is the point
        return Comparison(ratio, ratio, ratio, len(a), len(b), confidence, 0.0)
    df = se2**2 / ((var_a / len(a)) ** 2 / (len(a) - 1) + (var_b / len(b)) ** 2 / (len(b) - 1))
    t = float(scipy_stats.t.ppf(0.5 + confidence / 2, df))
    half = t * math.sqrt(se2)
    low, high = math.exp(diff - half), math.exp(diff + half)
    return Comparison(ratio, low, high, len(a), len(b), confidence, math.sqrt(se2))


def mean_half_width(values: Sequence[float | None], confidence: float = CONFIDENCE) -> float | None:
    """How precisely one value's geometric mean is known (log-scale half-width); None below 2 orders."""
    logs = _logs(values)
    if len(logs) < 2:
        return None
    _mean, var = _mean_var(logs)
    t = float(scipy_stats.t.ppf(0.5 + confidence / 2, len(logs) - 1))
    return t * math.sqrt(var / len(logs))


def geometric_mean(values: Sequence[float | None]) -> float | None:
    logs = _logs(values)
    return math.exp(sum(logs) / len(logs)) if logs else None


# ---------------------------------------------------------------------------------------------- noise


@dataclass(frozen=True)
class Noise:
    """How far apart the same settings, started twice, came out here (for one figure)."""

    band: float  # log scale: ratios within [exp(-band), exp(band)] are what noise alone can do
    measured: bool  # False: no A/A pair, the conservative UNKNOWN_NOISE is used
    aa: Comparison | None = None

    @property
    def percent(self) -> float:
        """The band as ±X%."""
        return (math.exp(self.band) - 1) * 100

    def to_dict(self) -> dict[str, Any]:
        return {
            "band": self.band,
            "percent": self.percent,
            "measured": self.measured,
            "aa": None if self.aa is None else self.aa.to_dict(),
        }


NO_NOISE = Noise(band=0.0, measured=True)  # judge by the orders' own spread alone


def noise_from(aa: Comparison | None, floor: float = NOISE_FLOOR) -> Noise:
    """The noise band from an A/A pair: its difference plus one standard error, on the log scale (at
    least `floor`). Without an interval (missing pair, one order per start) the band is UNKNOWN_NOISE."""
    if aa is None or not aa.has_interval or aa.ratio is None:
        return Noise(band=math.log1p(UNKNOWN_NOISE), measured=False, aa=aa)
    se = aa.se
    if se is None:  # an interval given without its standard error: read it back as a normal one
        se = (math.log(aa.high) - math.log(aa.low)) / (2 * 1.96)  # type: ignore[arg-type]
    reach = abs(math.log(aa.ratio)) + se
    return Noise(band=max(reach, math.log1p(floor)), measured=True, aa=aa)


# ---------------------------------------------------------------------------------------------- verdict


def effect_of(comparison: Comparison, noise: Noise, lower_is_better: bool = True) -> str:
    """faster / slower only when the whole interval lies outside the noise band; else unclear."""
    if not comparison.has_interval:
        return UNCLEAR
    low, high = math.log(comparison.low), math.log(comparison.high)  # type: ignore[arg-type]
    if high < -noise.band:
        return FASTER if lower_is_better else SLOWER
    if low > noise.band:
        return SLOWER if lower_is_better else FASTER
    return UNCLEAR


def settled(comparison: Comparison, noise: Noise, target: float = TARGET_HALF_WIDTH) -> bool:
    """True when more orders would not change the verdict much: a clear effect, an interval wholly
    inside the noise band (no effect bigger than the noise), or an interval already narrow."""
    if not comparison.has_interval:
        return False
    if effect_of(comparison, noise) != UNCLEAR:
        return True
    low, high = math.log(comparison.low), math.log(comparison.high)  # type: ignore[arg-type]
    if -noise.band <= low and high <= noise.band:
        return True
    return (comparison.half_width or 0.0) <= target


def precise_enough(values: Sequence[float | None], target: float = TARGET_HALF_WIDTH) -> bool:
    """One value's own figures are known well enough that the ratio's half-width can reach `target`
    (each side contributes about 1/sqrt(2) of it)."""
    half = mean_half_width(values)
    return half is not None and half <= target / math.sqrt(2)
