"""Plain records of the history: what a run was, what it measured, and how two runs differ.

Everything here is JSON-able data; nothing knows about the engine, the measurements or the UI.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

RUN_KINDS = ("startup", "probe", "load", "sweep", "playground", "apply", "table", "tune")
RUN_STATUSES = ("running", "done", "failed", "interrupted")
FINAL_STATUSES = ("done", "failed", "interrupted")
SECRET_FLAGS = frozenset({"api_key"})
HIDDEN = "***"


@dataclass(frozen=True)
class RowRecord:
    """One measured item of a run (one request, one sweep row, one load level)."""

    seq: int
    created_at: str  # ISO 8601, UTC
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "created_at": self.created_at, "data": dict(self.data)}


@dataclass(frozen=True)
class RunRecord:
    id: int
    kind: str
    created_at: str  # ISO 8601, UTC
    status: str
    config: Mapping[str, Any]
    label: str = ""
    backend: str = ""
    summary: Mapping[str, Any] | None = None
    finished_at: str | None = None
    row_count: int = 0
    rows: tuple[RowRecord, ...] = ()  # filled by HistoryStore.get_run, empty in list_runs
    startup: Mapping[str, Any] | None = None  # the startup report, when the run has one

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "label": self.label,
            "backend": self.backend,
            "config": dict(self.config),
            "summary": None if self.summary is None else dict(self.summary),
            "startup": None if self.startup is None else dict(self.startup),
            "row_count": self.row_count,
            "rows": [row.to_dict() for row in self.rows],
        }


@dataclass(frozen=True)
class FlagDifference:
    name: str
    a: Any
    b: Any


@dataclass(frozen=True)
class MetricDelta:
    name: str
    a: float
    b: float
    delta: float  # b - a
    ratio: float | None  # b / a, None when a is 0
    percent: float | None  # (b - a) / a * 100, None when a is 0


@dataclass(frozen=True)
class RunComparison:
    run_a: int
    run_b: int
    flag_differences: tuple[FlagDifference, ...] = field(default_factory=tuple)
    metric_deltas: tuple[MetricDelta, ...] = field(default_factory=tuple)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys: {"ttft": {"p50": 1}} -> {"ttft.p50": 1}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def flag_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """Flag name -> value of a stored config: either flat, or shaped {"model": ..., "values": {...}}."""
    values = config.get("values")
    if isinstance(values, Mapping):
        model = {"model": config["model"]} if "model" in config else {}
        return {**model, **values}
    return dict(config)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def compare_runs(a: RunRecord, b: RunRecord) -> RunComparison:
    return RunComparison(
        run_a=a.id,
        run_b=b.id,
        flag_differences=tuple(_flag_differences(flag_values(a.config), flag_values(b.config))),
        metric_deltas=tuple(_metric_deltas(flatten(a.summary or {}), flatten(b.summary or {}))),
    )


def _flag_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> Iterator[FlagDifference]:
    for name in sorted(a.keys() | b.keys()):
        if a.get(name) != b.get(name):
            yield FlagDifference(name, _shown(name, a.get(name)), _shown(name, b.get(name)))


def _shown(name: str, value: Any) -> Any:
    return HIDDEN if name in SECRET_FLAGS and value not in (None, "") else value


def _metric_deltas(a: Mapping[str, Any], b: Mapping[str, Any]) -> Iterator[MetricDelta]:
    for name in a:
        if name in b and is_number(a[name]) and is_number(b[name]):
            va, vb = float(a[name]), float(b[name])
            ratio = vb / va if va else None
            percent = (vb - va) / va * 100 if va else None
            yield MetricDelta(name, va, vb, vb - va, ratio, percent)
