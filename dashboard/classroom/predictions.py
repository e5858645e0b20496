"""Predict, then observe: each participant answers before the measurement, the answers lock when it
starts, and the reveal puts the measured result beside the class's guesses (no Streamlit here).

A guess has a direction (speed: faster / slower / same; memory: more / less / same) and an amount
(roughly how much: within 10%, up to 1.5x, 1.5x-3x, more than 3x). The measured direction comes from
the ratio after/before of the step's metric, with the same 10% band for "same". A speed difference
that the orders' own spread cannot tell from zero (its 95% interval holds 1) is also "the same": a
lesson must not teach noise as a finding.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboard.classroom.lessons import Lesson, LessonStep, Metric
from dashboard.i18n import N_
from dashboard.measure import stats

SAME_BAND = 0.10  # within 10% counts as "the same"
DIRECTIONS = {"speed": ("faster", "slower", "same"), "memory": ("more", "less", "same")}
AMOUNTS = ("same", "up_to_1_5x", "1_5x_to_3x", "over_3x")
AMOUNT_LABELS = {
    "same": N_("about the same (within 10%)"),
    "up_to_1_5x": N_("a little: up to 1.5 times"),
    "1_5x_to_3x": N_("clearly: 1.5 to 3 times"),
    "over_3x": N_("a lot: more than 3 times"),
}
DIRECTION_LABELS = {
    "faster": N_("faster"),
    "slower": N_("slower"),
    "same": N_("about the same"),
    "more": N_("more memory"),
    "less": N_("less memory"),
}


class PredictionLocked(RuntimeError):
    """The measurement has started: answers cannot change any more."""


@dataclass(frozen=True)
class Guess:
    who: str  # a session id
    label: str  # how the class reads it: "the presenter", "visitor 2"
    direction: str
    amount: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Outcome:
    """What the measurement said: the two figures, their ratio, the direction and the amount bin."""

    before: float
    after: float
    ratio: float  # the larger over the smaller (>= 1)
    direction: str
    amount: str
    within_spread: bool = False  # bigger than 10%, but inside the spread of the orders: "the same"


def amount_of(ratio: float) -> str:
    if ratio < 1 + SAME_BAND:
        return "same"
    if ratio <= 1.5:
        return "up_to_1_5x"
    if ratio <= 3.0:
        return "1_5x_to_3x"
    return "over_3x"


def outcome(
    metric: Metric,
    before: float | None,
    after: float | None,
    before_samples: Sequence[float] = (),
    after_samples: Sequence[float] = (),
) -> Outcome | None:
    """The measured answer to the step's question, or None when either figure is missing. With each
    value's per-order figures, a difference inside their spread is "the same"."""
    if before is None or after is None or before <= 0 or after <= 0:
        return None
    ratio = max(before, after) / min(before, after)
    amount = amount_of(ratio)
    within_spread = amount != "same" and inside_spread(before_samples, after_samples)
    if within_spread:
        amount = "same"
    if amount == "same":
        direction = "same"
    elif metric.ask == "memory":
        direction = "more" if after > before else "less"
    else:
        got_smaller = after < before
        direction = "faster" if got_smaller == metric.lower_is_faster else "slower"
    return Outcome(before, after, ratio, direction, amount, within_spread)


def inside_spread(before_samples: Sequence[float], after_samples: Sequence[float]) -> bool:
    """True when the 95% interval of after/before, from the orders of each value, holds 1."""
    comparison = stats.compare(before_samples, after_samples)
    return comparison.has_interval and stats.effect_of(comparison, stats.NO_NOISE) == stats.UNCLEAR


def row_figure(metric: Metric, row: Mapping[str, Any] | None) -> float | None:
    """The step's figure from one measured sweep row (None when it was not measured)."""
    if not row or not row.get("ok", True):
        return None
    value = row.get(metric.row_key)
    return None if value is None else float(value) * metric.scale


def row_samples(metric: Metric, row: Mapping[str, Any] | None) -> list[float]:
    """The per-order figures behind the step's figure in one sweep row (empty when there are none)."""
    if not row or not row.get("ok", True) or not metric.samples_key:
        return []
    return [float(v) for v in (row.get("samples") or {}).get(metric.samples_key, []) if v is not None]


@dataclass(frozen=True)
class Verdict:
    guess: Guess
    direction_right: bool
    amount_right: bool


@dataclass
class Round:
    """The class's guesses for one step; locked once the measurement starts."""

    lesson_id: str
    step_index: int
    ask: str
    guesses: dict[str, Guess] = field(default_factory=dict)
    locked_at: float | None = None
    outcome: Outcome | None = None

    @property
    def locked(self) -> bool:
        return self.locked_at is not None

    def answer(self, guess: Guess) -> None:
        if self.locked:
            raise PredictionLocked("the measurement has started")
        if guess.direction not in DIRECTIONS[self.ask]:
            raise ValueError(f"direction must be one of {DIRECTIONS[self.ask]}")
        if guess.amount not in AMOUNTS:
            raise ValueError(f"amount must be one of {AMOUNTS}")
        self.guesses[guess.who] = guess

    def lock(self, at: float | None = None) -> None:
        if self.locked_at is None:
            self.locked_at = at if at is not None else time.time()

    def verdicts(self) -> list[Verdict]:
        if self.outcome is None:
            return []
        return [
            Verdict(
                guess,
                direction_right=guess.direction == self.outcome.direction,
                amount_right=guess.amount == self.outcome.amount,
            )
            for guess in sorted(self.guesses.values(), key=lambda g: g.at)
        ]

    def tally(self) -> dict[str, int]:
        """How many guessed each direction (for the presenter's chart)."""
        counts = dict.fromkeys(DIRECTIONS[self.ask], 0)
        for guess in self.guesses.values():
            counts[guess.direction] = counts.get(guess.direction, 0) + 1
        return counts


STAGES = ("asking", "measuring", "revealed")


@dataclass
class LessonRun:
    """One lesson the presenter is running for the class: which step, and each step's round.

    Every browser session of the app reads the same LessonRun (it is kept once per app)."""

    lesson: Lesson
    backend: str
    step_index: int = 0  # into lesson.steps_for(backend)
    stage: str = "asking"
    rounds: dict[int, Round] = field(default_factory=dict)
    error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    visitor_numbers: dict[str, int] = field(default_factory=dict)

    @property
    def steps(self) -> list[tuple[int, LessonStep]]:
        return self.lesson.steps_for(self.backend)

    def current(self) -> tuple[int, LessonStep]:
        return self.steps[self.step_index]

    def round(self) -> Round:
        index, step = self.current()
        with self._lock:
            if index not in self.rounds:
                self.rounds[index] = Round(self.lesson.id, index, step.ask)
            return self.rounds[index]

    def visitor_number(self, who: str) -> int:
        with self._lock:
            if who not in self.visitor_numbers:
                self.visitor_numbers[who] = len(self.visitor_numbers) + 1
            return self.visitor_numbers[who]

    def answer(self, guess: Guess) -> None:
        current = self.round()
        with self._lock:
            if self.stage != "asking":
                raise PredictionLocked("the measurement has started")
            current.answer(guess)

    def start_measuring(self) -> Round:
        current = self.round()
        with self._lock:
            current.lock()
            self.stage = "measuring"
            self.error = ""
        return current

    def reveal(
        self,
        before: float | None,
        after: float | None,
        before_samples: Sequence[float] = (),
        after_samples: Sequence[float] = (),
    ) -> Round:
        current = self.round()
        _index, step = self.current()
        with self._lock:
            current.outcome = outcome(step.measured_by, before, after, before_samples, after_samples)
            self.stage = "revealed"
        return current

    def failed(self, error: str) -> None:
        with self._lock:
            self.stage = "revealed"
            self.error = error

    def next_step(self) -> bool:
        """Go on to the next step (False at the end)."""
        with self._lock:
            if self.step_index + 1 >= len(self.steps):
                return False
            self.step_index += 1
            self.stage = "asking"
            return True
