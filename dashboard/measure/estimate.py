"""How long a sweep will take on this machine, as a range: from the start and request times this machine
really measured (the history keeps them), counting every restart, the one that puts the factory back too.

A value the carousel already holds warm costs a flip (a second or two) instead of a start. Without any
measured start the estimate falls back to typical figures and says so (`measured` is False), with a
wider range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dashboard.engine.config import ServerConfig
from dashboard.history.records import RunRecord, flag_values

TYPICAL_START_S = {"cpu": 40.0, "cuda": 90.0}
TYPICAL_COMPILE_S = {"cpu": 70.0, "cuda": 40.0}  # extra when eager mode is off
TYPICAL_REQUEST_S = {"cpu": 1.5, "cuda": 0.2}
FLIP_S = (1.0, 3.0)
WARMUP_ORDERS = 2  # the sweep's own warm-up orders per value
RECENT = 20  # the newest measurements count: the machine's load changes over a day
UNMEASURED_SPREAD = (0.7, 1.5)  # typical figures: a wide range
WARM_KINDS = ("reused", "woken")  # the carousel's server_start kinds that are switches, not starts


@dataclass(frozen=True)
class MachineTimes:
    """Start times (s) by eager mode and one-at-a-time answer times (s) measured here."""

    eager_starts: tuple[float, ...] = ()
    compiled_starts: tuple[float, ...] = ()
    answers: tuple[float, ...] = ()

    def starts(self, eager: bool) -> tuple[float, ...]:
        return self.eager_starts if eager else self.compiled_starts


@dataclass(frozen=True)
class Estimate:
    low_s: float
    high_s: float
    starts: int  # real starts (values not warm, plus the restore when it is not warm)
    flips: int  # values (or the restore) the carousel holds warm
    measured: bool  # from this machine's history (else typical figures)

    @property
    def middle_s(self) -> float:
        return (self.low_s + self.high_s) / 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "low_s": self.low_s,
            "high_s": self.high_s,
            "starts": self.starts,
            "flips": self.flips,
            "measured": self.measured,
        }


def times_from_history(runs: Iterable[RunRecord], backend: str) -> MachineTimes:
    """Start and answer times from finished runs of this backend (newest first in, newest kept)."""
    eager: list[float] = []
    compiled: list[float] = []
    answers: list[float] = []
    for run in runs:
        if run.backend and run.backend != backend or run.status != "done":
            continue
        summary = run.summary or {}
        ready = summary.get("ready_s")
        if run.kind in ("startup", "apply") and _positive(ready):
            is_eager = flag_values(run.config).get("enforce_eager") is not False
            (eager if is_eager else compiled).append(float(ready))
        for row in run.rows:
            _from_row(row.data, flag_values(run.config), eager, compiled, answers)
        e2e = summary.get("e2e_ms")
        if run.kind == "playground" and _positive(e2e):
            answers.append(float(e2e) / 1000)
    return MachineTimes(tuple(eager[:RECENT]), tuple(compiled[:RECENT]), tuple(answers[:RECENT]))


def _from_row(
    row: Mapping[str, Any], config: Mapping[str, Any], eager: list, compiled: list, answers: list
) -> None:
    ready = row.get("ready_s")
    start = row.get("server_start") or {}
    if isinstance(start, Mapping) and start.get("kind") in WARM_KINDS:
        ready = None  # a switch to a warm server, not a start: it says nothing about start times
    if _positive(ready):
        swept_eager = row.get("value") if row.get("flag") == "enforce_eager" else None
        is_eager = swept_eager if isinstance(swept_eager, bool) else config.get("enforce_eager") is not False
        (eager if is_eager else compiled).append(float(ready))
    e2e = row.get("e2e_p50_ms")
    if _positive(e2e) and row.get("concurrency", 1) in (1, None):
        answers.append(float(e2e) / 1000)


def _positive(value: Any) -> bool:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return is_number and math.isfinite(value) and value > 0


def _range(values: Sequence[float]) -> tuple[float, float]:
    """A plain range of what was measured: the lower quarter to the slowest (one value: itself)."""
    ordered = sorted(values)
    low = ordered[max(0, math.floor((len(ordered) - 1) * 0.25))]
    return low, ordered[-1]


def start_range(times: MachineTimes, eager: bool, backend: str) -> tuple[tuple[float, float], bool]:
    measured = times.starts(eager)
    if measured:
        return _range(measured), True
    same_mode_missing = times.starts(not eager)
    if same_mode_missing:  # the other mode was measured: add or remove the compile step
        low, high = _range(same_mode_missing)
        extra = TYPICAL_COMPILE_S.get(backend, 60.0) * (-1 if eager else 1)
        return (max(1.0, low + extra), max(1.0, high + extra)), True
    typical = TYPICAL_START_S.get(backend, 60.0) + (0 if eager else TYPICAL_COMPILE_S.get(backend, 60.0))
    return (typical * UNMEASURED_SPREAD[0], typical * UNMEASURED_SPREAD[1]), False


def answer_range(times: MachineTimes, backend: str) -> tuple[tuple[float, float], bool]:
    if times.answers:
        return _range(times.answers), True
    typical = TYPICAL_REQUEST_S.get(backend, 1.0)
    return (typical * UNMEASURED_SPREAD[0], typical * UNMEASURED_SPREAD[1]), False


def estimate_sweep(
    sweeps: Sequence[tuple[str, Sequence[Any]]],
    base: ServerConfig,
    requests: int,
    concurrency: int,
    backend: str,
    times: MachineTimes,
    restore: ServerConfig | None = None,
    is_warm: Callable[[ServerConfig], bool] | None = None,
) -> Estimate:
    """Every value's start (or flip) and its orders, then the restart that puts `restore` back."""
    low = high = 0.0
    starts = flips = 0
    measured = True
    (answer_low, answer_high), answers_measured = answer_range(times, backend)
    rounds = WARMUP_ORDERS + math.ceil(max(requests, 1) / max(1, min(concurrency, requests)))
    configs = [base.with_values({flag: value}) for flag, values in sweeps for value in values]
    for config in configs:
        (start_low, start_high), was_measured, warm = _start_cost(config, backend, times, is_warm)
        starts, flips = starts + (not warm), flips + warm
        measured = measured and was_measured
        low += start_low + rounds * answer_low
        high += start_high + rounds * answer_high
    if restore is not None and configs:
        (start_low, start_high), was_measured, warm = _start_cost(restore, backend, times, is_warm)
        starts, flips = starts + (not warm), flips + warm
        low, high = low + start_low, high + start_high
        measured = measured and was_measured
    return Estimate(low, high, starts, flips, measured and answers_measured)


def _start_cost(
    config: ServerConfig, backend: str, times: MachineTimes, is_warm: Callable[[ServerConfig], bool] | None
) -> tuple[tuple[float, float], bool, bool]:
    if is_warm is not None:
        try:
            if is_warm(config):
                return FLIP_S, True, True
        except Exception:  # a carousel that cannot tell: count a start
            pass
    span, measured = start_range(times, config.get("enforce_eager") is not False, backend)
    return span, measured, False
