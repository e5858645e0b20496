"""The brief's table, filled honestly: what each flag does to response time, measured on this machine.

`configs/effects.toml` declares, per flag, the figure it acts on (first token, time per token or the
whole answer), the orders that make it show, and the two values compared. A table run:

1. starts the base settings twice and measures every workload on both (the A/A pair): how far apart the
   same settings come out here is the noise band of each figure;
2. for each measured flag, starts the first value and the second value (everything else as the base)
   and sends the flag's orders, adding orders until the ratio is known well enough or the time budget
   is spent;
3. calls a flag faster or slower only when the ratio's confidence interval lies wholly outside the
   noise band (see `dashboard.measure.stats`).

Settings that are not speed settings (trust_remote_code, host) are never turned on: their rows explain
what the flag is for and what it risks. Both the page job and `python -m dashboard table` run this.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from babel.numbers import format_decimal

from dashboard.engine import flags, hardware
from dashboard.engine.config import ServerConfig
from dashboard.engine.report import StartupReport, mask_config
from dashboard.i18n import LANGUAGES, N_, normalize, translate
from dashboard.measure import estimate as estimate_mod
from dashboard.measure import fresh, loadgen, memory, stats
from dashboard.measure.loadgen import LoadPlan, Workload

EFFECTS_PATH = Path(__file__).resolve().parents[2] / "configs" / "effects.toml"
METRICS = ("ttft_ms", "tpot_ms", "e2e_ms")
ALSO = ("ready_s", "memory_gib", "kv_cache_tokens")
REVEALS = ("concurrency_above_smaller", "prompt_above_smaller")
KINDS = ("speed", stats.NOT_A_SPEED_SETTING)
GIB = 1024**3
AA = "aa"  # the event name of the A/A pair

METRIC_NAMES = {
    "ttft_ms": N_("first token"),
    "tpot_ms": N_("time per token"),
    "e2e_ms": N_("whole answer"),
}
# What the two settings that are not speed settings are for, and what they risk (shown instead of a figure).
NOT_SPEED_TEXTS = {
    "trust_remote_code": N_(
        "Not a speed setting. --trust-remote-code lets the model's folder run its own Python code when "
        "it loads; only models with custom code need it (SmolLM2 does not). It risks running code nobody "
        "checked on this machine, so the table never turns it on."
    ),
    "host": N_(
        "Not a speed setting. --host chooses who can reach the factory's door: 127.0.0.1 only this machine, "
        "0.0.0.0 the whole network. Opening it risks strangers placing orders, so the table never opens it "
        "and the factory stays on this machine's own loopback."
    ),
}
GENERIC_NOT_SPEED = N_("Not a speed setting: the table does not measure it for speed.")

START_S = {"cpu": 40.0, "cuda": 90.0}  # one start in eager mode, with some margin
COMPILE_S = {"cpu": 70.0, "cuda": 40.0}  # extra when eager mode is off (torch.compile, graphs)
TOKEN_S = {"cpu": 0.03, "cuda": 0.003}  # one answer token, one order at a time
PREFILL_TOKENS_PER_S = {"cpu": 4000.0, "cuda": 100000.0}
DEFAULT_ORDERS = 5
MAX_ORDERS = 40


# ---------------------------------------------------------------------------------------------- the catalog


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    input_tokens: int
    output_tokens: int
    concurrency: int = 1
    repeat_prompt: bool = False

    def workload(self) -> Workload:
        """Made-up prompts with answers of exactly `output_tokens` tokens (ignore_eos)."""
        return Workload.synthetic(
            self.input_tokens, self.output_tokens, unique_prompts=not self.repeat_prompt, label=self.name
        )

    def batch(self, orders: int) -> int:
        """Orders in one batch: never fewer than the orders in flight at once."""
        return max(orders, self.concurrency)

    def seconds_per_batch(self, orders: int, backend: str) -> float:
        rounds = math.ceil(self.batch(orders) / self.concurrency)
        prefill = self.input_tokens / PREFILL_TOKENS_PER_S.get(backend, 4000.0)
        decode = self.output_tokens * TOKEN_S.get(backend, 0.03) * (1 + 0.1 * (self.concurrency - 1))
        return rounds * (prefill * self.concurrency + decode) + 1.0


@dataclass(frozen=True)
class EffectSpec:
    flag: str
    kind: str
    metric: str | None = None
    workload: str | None = None
    values: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    reveal: str | None = None
    also: tuple[str, ...] = ()

    def values_for(self, backend: str) -> list[Any]:
        choices = self.values.get(backend, self.values.get("*", []))
        return [flags.get(self.flag).coerce(value) for value in choices]


@cache
def _effects_file() -> dict[str, Any]:
    return tomllib.loads(EFFECTS_PATH.read_text(encoding="utf-8"))


@cache
def workloads() -> dict[str, WorkloadSpec]:
    return {name: WorkloadSpec(name=name, **spec) for name, spec in _effects_file()["workload"].items()}


@cache
def effects() -> dict[str, EffectSpec]:
    """Every declared flag, in the table's order (the file's order)."""
    found = {}
    for name, spec in _effects_file()["flag"].items():
        spec = dict(spec)
        spec["also"] = tuple(spec.get("also", ()))
        found[name] = EffectSpec(flag=name, **spec)
    return found


def catalog_problems() -> list[str]:
    """What is wrong in effects.toml (empty when it is sound): unknown flags, metrics or workloads,
    values the flag refuses, and workloads that cannot reveal what the flag changes."""
    problems = []
    for name, spec in effects().items():
        if name not in flags.catalog():
            problems.append(f"{name}: not a flag of configs/flags.toml")
            continue
        if spec.kind not in KINDS:
            problems.append(f"{name}: kind {spec.kind!r} is not one of {KINDS}")
        if spec.kind != "speed":
            continue
        if spec.metric not in METRICS:
            problems.append(f"{name}: metric {spec.metric!r} is not one of {METRICS}")
        if spec.workload not in workloads():
            problems.append(f"{name}: workload {spec.workload!r} is not declared")
            continue
        problems += [f"{name}: unknown figure {extra!r}" for extra in spec.also if extra not in ALSO]
        for backend in flags.BACKENDS:
            try:
                values = spec.values_for(backend)
            except flags.FlagValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if values and len(values) != 2:
                problems.append(f"{name}: {backend} needs exactly two values, not {values}")
            elif values:
                problems += _reveal_problems(spec, workloads()[spec.workload], values)
    return problems


def _reveal_problems(spec: EffectSpec, workload: WorkloadSpec, values: Sequence[Any]) -> list[str]:
    if spec.reveal is None:
        return []
    if spec.reveal not in REVEALS:
        return [f"{spec.flag}: reveal {spec.reveal!r} is not one of {REVEALS}"]
    smaller = min(values)
    if spec.reveal == "concurrency_above_smaller" and workload.concurrency <= smaller:
        return [f"{spec.flag}: {workload.concurrency} orders at once cannot use more than {smaller} lanes"]
    if spec.reveal == "prompt_above_smaller" and workload.input_tokens <= smaller:
        return [f"{spec.flag}: a {workload.input_tokens}-token prompt never fills {smaller} tokens"]
    return []


# ---------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlannedRow:
    flag: str
    kind: str  # "speed", "not_a_speed_setting" or "not_measured_here"
    metric: str | None = None
    workload: WorkloadSpec | None = None
    values: tuple[Any, ...] = ()
    also: tuple[str, ...] = ()

    @property
    def measured(self) -> bool:
        return self.kind == "speed"


@dataclass(frozen=True)
class TablePlan:
    rows: tuple[PlannedRow, ...]
    base: ServerConfig
    backend: str
    orders: int = DEFAULT_ORDERS  # orders per value to begin with
    max_orders: int = MAX_ORDERS
    budget_s: float | None = None  # None: the estimate plus half again
    start_timeout: float = 600.0
    measured_start_s: tuple[float, float] | None = None  # this machine's (eager, compiled) start times

    def with_measured_starts(self, times: Any) -> TablePlan:
        """The plan timed with this machine's measured starts (an estimate.MachineTimes)."""
        eager, _ = estimate_mod.start_range(times, True, self.backend)
        compiled, _ = estimate_mod.start_range(times, False, self.backend)
        return replace(self, measured_start_s=(sum(eager) / 2, sum(compiled) / 2))

    @property
    def measured_rows(self) -> list[PlannedRow]:
        return [row for row in self.rows if row.measured]

    @property
    def aa_workloads(self) -> list[WorkloadSpec]:
        """Every workload a measured row uses (the A/A pair measures each, for its noise)."""
        seen: dict[str, WorkloadSpec] = {}
        for row in self.measured_rows:
            if row.workload is not None:
                seen.setdefault(row.workload.name, row.workload)
        return list(seen.values())

    @property
    def starts(self) -> int:
        """Server starts: two for the A/A pair, two per measured flag."""
        return 2 + 2 * len(self.measured_rows) if self.measured_rows else 0

    def start_seconds(self, config: ServerConfig) -> float:
        if self.measured_start_s is not None:
            return self.measured_start_s[0 if config.get("enforce_eager") is not False else 1]
        seconds = START_S.get(self.backend, 60.0)
        return seconds + (COMPILE_S.get(self.backend, 60.0) if config.get("enforce_eager") is False else 0.0)

    def estimate_seconds(self) -> float:
        """Starts plus the first batch of orders: the least the run takes."""
        if not self.measured_rows:
            return 0.0
        aa = sum(w.seconds_per_batch(self.orders, self.backend) for w in self.aa_workloads)
        total = 2 * (self.start_seconds(self.base) + aa)
        for row in self.measured_rows:
            for value in row.values:
                config = self.base.with_values({row.flag: value})
                total += self.start_seconds(config)
                total += row.workload.seconds_per_batch(self.orders, self.backend)  # type: ignore[union-attr]
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "flags": [row.flag for row in self.rows],
            "measured": [row.flag for row in self.measured_rows],
            "orders": self.orders,
            "max_orders": self.max_orders,
            "budget_s": self.budget_s,
            "estimate_s": self.estimate_seconds(),
            "starts": self.starts,
            "base_config": mask_config(self.base),
            "backend": self.backend,
        }


def table_flags() -> list[str]:
    return list(effects())


def plan_row(flag: str, backend: str) -> PlannedRow:
    spec = effects().get(flag)
    if spec is None:
        raise KeyError(f"{flag} is not in configs/effects.toml")
    if spec.kind != "speed":
        return PlannedRow(flag, stats.NOT_A_SPEED_SETTING)
    values = tuple(spec.values_for(backend))
    if not values or not flags.get(flag).has_effect_on(backend):
        return PlannedRow(flag, stats.NOT_MEASURED_HERE, spec.metric)
    return PlannedRow(flag, "speed", spec.metric, workloads()[spec.workload or ""], values, spec.also)


def table_plan(
    base: ServerConfig,
    backend: str,
    only: Sequence[str] | None = None,
    orders: int = DEFAULT_ORDERS,
    minutes: float | None = None,
    start_timeout: float = 600.0,
) -> TablePlan:
    """The rows of the table for this backend (all declared flags, or `only` those, in table order)."""
    if orders < 2:
        raise ValueError("orders must be at least 2: one order per value gives no interval")
    names = table_flags()
    if only is not None:
        unknown = [name for name in only if name not in names]
        if unknown:
            raise KeyError(", ".join(unknown))
        names = [name for name in names if name in only]
    rows = tuple(plan_row(name, backend) for name in names)
    if base.get("host") not in (None, "127.0.0.1"):  # the table never opens the door to the network
        base = base.with_values({"host": "127.0.0.1"})
    return TablePlan(
        rows=rows,
        base=base,
        backend=backend,
        orders=orders,
        max_orders=max(MAX_ORDERS, orders),
        budget_s=None if minutes is None else minutes * 60.0,
        start_timeout=start_timeout,
    )


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Measured:
    """One start of the server and the orders it answered, per workload."""

    config: dict[str, Any]
    value: Any = None
    ok: bool = False
    error: dict[str, Any] | None = None
    ready_s: float | None = None
    server_start: dict[str, Any] | None = None  # {"kind": cold|forked|reused|woken, "ready_s"} when known
    kv_cache_tokens: int | None = None
    memory_gib: float | None = None
    command: str = ""
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # workload -> metric -> figures
    answer_tokens: dict[str, list[int]] = field(default_factory=dict)  # workload -> tokens per answer
    seconds: float = 0.0

    def figures(self, workload: str, metric: str) -> list[float]:
        return self.samples.get(workload, {}).get(metric, [])

    def orders(self, workload: str) -> int:
        return len(self.figures(workload, "e2e_ms"))

    def to_dict(self) -> dict[str, Any]:
        data = {key: value for key, value in self.__dict__.items()}
        data["figure"] = {
            workload: {metric: stats.geometric_mean(values) for metric, values in by_metric.items()}
            for workload, by_metric in self.samples.items()
        }
        return data


@dataclass
class TableRow:
    flag: str
    kind: str
    metric: str | None
    workload: str | None
    values: list[Any]
    effect: str
    comparison: stats.Comparison | None = None
    noise: stats.Noise | None = None
    measured: list[Measured] = field(default_factory=list)
    message: str = ""  # the verdict's English msgid
    params: dict[str, Any] = field(default_factory=dict)
    also: tuple[str, ...] = ()  # figures shown beside the verdict (start time, memory, KV tokens)

    def verdict(self, lang: str) -> str:
        return verdict_text(self, lang)

    def to_dict(self) -> dict[str, Any]:
        comparison = self.comparison
        figures = [
            {**m.to_dict(), "figure": _figure_of(m, self.workload, self.metric)} for m in self.measured
        ]
        return {
            "flag": self.flag,
            "cli": flags.get(self.flag).cli,
            "kind": self.kind,
            "metric": self.metric,
            "workload": self.workload,
            "values": list(self.values),
            "effect": self.effect,
            "ratio": comparison.ratio if comparison else None,
            "interval": [comparison.low, comparison.high] if comparison and comparison.has_interval else None,
            "n": comparison.n if comparison else 0,
            "noise_percent": self.noise.percent if self.noise else None,
            "noise_measured": self.noise.measured if self.noise else False,
            "verdict": {lang: self.verdict(lang) for lang in LANGUAGES},
            "verdict_message": self.message,
            "verdict_params": dict(self.params),
            "figures": figures,
            "start_time_s": [m.ready_s for m in self.measured],
            "memory_gib": [m.memory_gib for m in self.measured],
            "kv_cache_tokens": [m.kv_cache_tokens for m in self.measured],
            "server_start": [m.server_start for m in self.measured if m.server_start],
        }


def _interval(comparison: stats.Comparison | None) -> list[float] | None:
    if comparison is None or not comparison.has_interval:
        return None
    return [comparison.low, comparison.high]  # type: ignore[list-item]


def _figure_of(measured: Measured, workload: str | None, metric: str | None) -> float | None:
    if workload is None or metric is None:
        return None
    return stats.geometric_mean(measured.figures(workload, metric))


@dataclass
class TableResult:
    plan: TablePlan
    started_at: float
    rows: list[TableRow] = field(default_factory=list)
    aa: list[Measured] = field(default_factory=list)
    noise: dict[str, stats.Noise] = field(default_factory=dict)  # "workload.metric" -> band
    duration_s: float = 0.0
    starts: int = 0
    stopped: bool = False
    vllm_version: str = ""
    machine: dict[str, Any] = field(default_factory=dict)

    def noise_for(self, workload: str | None, metric: str | None) -> stats.Noise:
        found = self.noise.get(f"{workload}.{metric}")
        return found if found is not None else stats.noise_from(None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "table",
            "backend": self.plan.backend,
            "machine": dict(self.machine),
            "vllm_version": self.vllm_version,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "starts": self.starts,
            "stopped": self.stopped,
            "command": next((m.command for m in self.aa if m.command), ""),  # the base settings, as they ran
            "plan": self.plan.to_dict(),
            "noise": {
                "config": mask_config(self.plan.base),
                "starts": [m.to_dict() for m in self.aa],
                "figures": [
                    {
                        "workload": key.split(".")[0],
                        "metric": key.split(".")[1],
                        **noise.to_dict(),
                        "ratio": noise.aa.ratio if noise.aa else None,
                        "interval": _interval(noise.aa),
                        "n": noise.aa.n if noise.aa else 0,
                    }
                    for key, noise in self.noise.items()
                ],
            },
            "rows": [row.to_dict() for row in self.rows],
        }


# ---------------------------------------------------------------------------------------------- verdicts


def _number(value: float, lang: str, digits: int = 1) -> str:
    pattern = "#,##0." + "0" * digits if digits else "#,##0"
    return format_decimal(round(value, digits), format=pattern, locale=lang)


def shown_value(flag: str, value: Any, lang: str) -> str:
    if isinstance(value, bool):
        return translate(N_("on") if value else N_("off"), lang)
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def decide(row: TableRow) -> None:
    """Fill the row's effect and verdict (msgid and params) from its measurements."""
    if row.kind == stats.NOT_A_SPEED_SETTING:
        row.effect = stats.NOT_A_SPEED_SETTING
        row.message = NOT_SPEED_TEXTS.get(row.flag, GENERIC_NOT_SPEED)
        return
    if row.kind == stats.NOT_MEASURED_HERE:
        row.effect = stats.NOT_MEASURED_HERE
        row.message = N_("Only matters on an NVIDIA GPU: not measured on this machine.")
        return
    params: dict[str, Any] = {"flag": flags.get(row.flag).cli, "figure": row.metric}
    failed = next((m for m in row.measured if not m.ok), None)
    if failed is not None or len(row.measured) < 2:
        row.effect = stats.UNCLEAR
        row.message = N_("Not measured: {flag} {value} did not start or did not answer ({error}).")
        missing = failed.value if failed is not None else row.values[len(row.measured)]
        error = (failed.error or {}) if failed is not None else {"message": "stopped"}
        row.params = {**params, "value": missing, "error": error.get("message") or error.get("code") or "?"}
        return
    comparison = stats.compare(
        row.measured[0].figures(row.workload or "", row.metric or ""),
        row.measured[1].figures(row.workload or "", row.metric or ""),
    )
    row.comparison = comparison
    noise = row.noise or stats.noise_from(None)
    row.effect = stats.effect_of(comparison, noise)
    params.update(first=row.values[0], second=row.values[1], n=comparison.n, noise=noise.percent)
    if comparison.has_interval:
        params.update(ratio=comparison.ratio, low=comparison.low, high=comparison.high)
    if row.effect == stats.FASTER:
        row.message = N_(
            "Faster: the {figure} took {times}x less time with {flag} {second} than with {first} "
            "(interval {times_low} to {times_high}x, {n} orders each; noise here ±{noise}%)."
        )
    elif row.effect == stats.SLOWER:
        row.message = N_(
            "Slower: the {figure} took {times}x more time with {flag} {second} than with {first} "
            "(interval {times_low} to {times_high}x, {n} orders each; noise here ±{noise}%)."
        )
    elif comparison.has_interval:
        row.message = N_(
            "No clear change (noise here ±{noise}%): the {figure} with {flag} {second} was {ratio}x that "
            "with {first} (interval {low} to {high}x, {n} orders each)."
        )
    else:
        row.message = N_(
            "No clear change (noise here ±{noise}%): {n} order per value cannot tell an effect from chance."
        )
    row.params = params


def verdict_text(row: TableRow, lang: str | None) -> str:
    """The row's verdict in one language, with the start-time and memory differences where declared."""
    lang = normalize(lang)
    params = _formatted(row, lang) if row.params else {}
    text = translate(row.message, lang, **params)
    extras = also_sentences(row, lang)
    return " ".join([text, *extras])


def _formatted(row: TableRow, lang: str) -> dict[str, Any]:
    params = dict(row.params)
    if "figure" in params and params["figure"] in METRIC_NAMES:
        params["figure"] = translate(METRIC_NAMES[params["figure"]], lang)
    for key in ("first", "second", "value"):
        if key in params:
            params[key] = shown_value(row.flag, params[key], lang)
    for key in ("ratio", "low", "high"):
        if key in params:
            params[key] = _number(params[key], lang, 2)
    if "ratio" in params:  # "N times less/more time": the factor away from 1, and its interval the same way
        ratio, low, high = row.params["ratio"], row.params["low"], row.params["high"]
        if ratio < 1:
            params.update(times=1 / ratio, times_low=1 / high, times_high=1 / low)
        else:
            params.update(times=ratio, times_low=low, times_high=high)
        for key in ("times", "times_low", "times_high"):
            params[key] = _number(params[key], lang, 2)
    if "noise" in params:
        params["noise"] = _number(params["noise"], lang, 0)
    return params


def also_sentences(row: TableRow, lang: str) -> list[str]:
    """Start time, memory and KV tokens of the two values, where the flag declares they matter."""
    if len(row.measured) < 2 or not all(m.ok for m in row.measured):
        return []
    first, second = row.measured[0], row.measured[1]
    sentences = []
    if "ready_s" in row.also and first.ready_s and second.ready_s:
        sentences.append(
            translate(
                N_("Start: {first} s with {a}, {second} s with {b}."),
                lang,
                first=_number(first.ready_s, lang, 0),
                second=_number(second.ready_s, lang, 0),
                a=shown_value(row.flag, row.values[0], lang),
                b=shown_value(row.flag, row.values[1], lang),
            )
        )
    if "memory_gib" in row.also and first.memory_gib and second.memory_gib:
        sentences.append(
            translate(
                N_("Memory: {first} GiB against {second} GiB."),
                lang,
                first=_number(first.memory_gib, lang, 2),
                second=_number(second.memory_gib, lang, 2),
            )
        )
    if "kv_cache_tokens" in row.also and first.kv_cache_tokens and second.kv_cache_tokens:
        sentences.append(
            translate(
                N_("KV cache: {first} tokens against {second}."),
                lang,
                first=_number(first.kv_cache_tokens, lang, 0),
                second=_number(second.kv_cache_tokens, lang, 0),
            )
        )
    return sentences


# ---------------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class TableEvent:
    """Progress: `step` is "aa" or a flag name, `index` the value (0 or 1), stage starting/measuring/done/
    failed; `measured` is set when a value is done."""

    step: str
    index: int
    stage: str
    value: Any = None
    measured: Measured | None = None
    row: TableRow | None = None  # set when a flag's row is decided (stage "row")


class _Clock:
    """The time budget: extra orders are sent only while the rest of the plan still fits."""

    def __init__(self, plan: TablePlan) -> None:
        self.plan = plan
        self.start = time.monotonic()
        budget = plan.budget_s if plan.budget_s is not None else plan.estimate_seconds() * 1.5
        self.deadline = self.start + budget

    def may_add(self, batch_s: float, reserve_s: float) -> bool:
        return time.monotonic() + batch_s + reserve_s <= self.deadline


class TableRunner:
    def __init__(
        self,
        plan: TablePlan,
        server: Any,
        on_event: Callable[[TableEvent], None] | None = None,
        stop: threading.Event | None = None,
        on_phase: Callable[[Any], None] | None = None,
    ) -> None:
        self.plan = plan
        self.server = server
        self.on_event = on_event
        self.stop = stop or threading.Event()
        self.on_phase = on_phase
        self.clock = _Clock(plan)
        self.result = TableResult(plan=plan, started_at=time.time())
        self._left: list[tuple[ServerConfig, WorkloadSpec]] = []  # starts still to come, for the reserve
        self._step: tuple[str, int] = (AA, 0)

    # ------------------------------------------------------------ the whole run

    def run(self) -> TableResult:
        plan = self.plan
        self._left = [(plan.base, w) for w in plan.aa_workloads[:1]] * 2
        for row in plan.measured_rows:
            self._left += [(plan.base.with_values({row.flag: v}), row.workload) for v in row.values]  # type: ignore[misc]
        if plan.measured_rows:
            self._measure_aa()
        for planned in plan.rows:
            row = TableRow(
                planned.flag,
                planned.kind,
                planned.metric,
                planned.workload.name if planned.workload else None,
                list(planned.values),
                effect=stats.UNCLEAR,
                also=planned.also,
            )
            if planned.measured and not self.stop.is_set():
                row.noise = self.result.noise_for(row.workload, row.metric)
                self._measure_row(planned, row)
            elif planned.measured:
                self.result.stopped = True
            elif planned.kind == stats.NOT_A_SPEED_SETTING:
                row.noise = self._machine_noise()  # what the same settings did here: a lesson too
            decide(row)
            self.result.rows.append(row)
            self._emit(TableEvent(planned.flag, len(row.measured), "row", row=row))
        self.result.stopped = self.result.stopped or self.stop.is_set()
        self.result.duration_s = time.time() - self.result.started_at
        return self.result

    def _measure_aa(self) -> None:
        workloads_aa = self.plan.aa_workloads
        for index in (0, 1):
            if self.stop.is_set():
                return
            self._step = (AA, index)
            self._emit(TableEvent(AA, index, "starting"))
            measured = self._measure_start(self.plan.base, None, workloads_aa, metric_of=self._aa_metrics)
            self.result.aa.append(measured)
            self._emit(TableEvent(AA, index, "done" if measured.ok else "failed", measured=measured))
        if len(self.result.aa) == 2 and all(m.ok for m in self.result.aa):
            first, second = self.result.aa
            for workload in workloads_aa:
                for metric in METRICS:
                    name = workload.name
                    aa = stats.compare(first.figures(name, metric), second.figures(name, metric))
                    self.result.noise[f"{workload.name}.{metric}"] = stats.noise_from(aa)

    def _machine_noise(self) -> stats.Noise | None:
        """The whole answer's noise of the first workload the A/A pair measured (None without one)."""
        found = [noise for key, noise in self.result.noise.items() if key.endswith(".e2e_ms")]
        return found[0] if found else None

    def _aa_metrics(self, workload: WorkloadSpec) -> list[str]:
        return sorted({row.metric for row in self.plan.measured_rows if row.workload == workload} - {None})  # type: ignore[arg-type]

    def _measure_row(self, planned: PlannedRow, row: TableRow) -> None:
        workload = planned.workload
        assert workload is not None and planned.metric is not None
        for index, value in enumerate(planned.values):
            if self.stop.is_set():
                self.result.stopped = True
                return
            config = self.plan.base.with_values({planned.flag: value})
            self._step = (planned.flag, index)
            self._emit(TableEvent(planned.flag, index, "starting", value=value))
            if index == 0:
                done = _precise(planned.metric)
            else:
                first = row.measured[0]
                done = _settled(first, workload.name, planned.metric, row.noise)
            measured = self._measure_start(config, value, [workload], metric_of=None, done=done)
            row.measured.append(measured)
            self._emit(
                TableEvent(planned.flag, index, "done" if measured.ok else "failed", value, measured=measured)
            )
            if not measured.ok:
                return

    # ------------------------------------------------------------ one start

    def _measure_start(
        self,
        config: ServerConfig,
        value: Any,
        workload_specs: Sequence[WorkloadSpec],
        metric_of: Callable[[WorkloadSpec], list[str]] | None = None,
        done: Callable[[Measured, WorkloadSpec], bool] | None = None,
    ) -> Measured:
        began = time.monotonic()
        if self._left:
            self._left.pop(0)
        report = fresh.restart(
            self.server, config, self.plan.start_timeout, fresh=True, on_phase=self.on_phase
        )
        self.result.starts += 1
        measured = _from_report(config, value, report)
        if not measured.ok:
            return measured
        self._emit(TableEvent(self._step[0], self._step[1], "measuring", value=value))
        pid = getattr(self.server.snapshot(), "pid", None)
        rss = [memory.process_tree_rss(pid)]
        try:
            for spec in workload_specs:
                metrics_wanted = metric_of(spec) if metric_of else []
                check = done or (lambda m, w, wanted=metrics_wanted: _all_precise(m, w, wanted))
                self._send_orders(measured, spec, check)
        except Exception as exc:  # the orders broke (not one request failing): keep what was measured
            measured.ok = False
            measured.error = {"message": f"{type(exc).__name__}: {exc}"}
        rss.append(memory.process_tree_rss(pid))
        measured.memory_gib = _memory_gib([v for v in rss if v is not None])
        measured.seconds = time.monotonic() - began
        return measured

    def _send_orders(
        self, measured: Measured, spec: WorkloadSpec, done: Callable[[Measured, WorkloadSpec], bool]
    ) -> None:
        server = self.server
        workload = spec.workload().calibrated(server.base_url, server.served_name, server.api_key)
        first = True
        while not self.stop.is_set():
            orders = self.plan.orders if first else max(2, spec.concurrency)
            batch_began = time.monotonic()
            load = loadgen.run_load(
                self.server.base_url,
                self.server.served_name,
                workload,
                LoadPlan(
                    concurrency=spec.concurrency,
                    requests=spec.batch(orders),
                    warmup=1 if first else 0,
                    timeout_s=300,
                    seed=measured.orders(spec.name),
                ),
                self.server.api_key,
                stop=self.stop,
            )
            _add_samples(measured, spec, load)
            if load.ok == 0:
                measured.ok = False
                measured.error = {"message": "; ".join(load.error_kinds) or "no answer"}
                return
            first = False
            batch_s = time.monotonic() - batch_began
            if measured.orders(spec.name) >= self.plan.max_orders or done(measured, spec):
                return
            if not self.clock.may_add(batch_s, self._reserve_s()):
                return
            workload = replace(workload, salt=workload.salt + "x") if not spec.repeat_prompt else workload

    def _reserve_s(self) -> float:
        """Seconds the starts still to come need (each with its first batch of orders)."""
        return sum(
            self.plan.start_seconds(config) + spec.seconds_per_batch(self.plan.orders, self.plan.backend)
            for config, spec in self._left
        )

    def _emit(self, event: TableEvent) -> None:
        if self.on_event is not None:
            with contextlib.suppress(Exception):  # a broken progress display must not end the run
                self.on_event(event)


def _precise(metric: str) -> Callable[[Measured, WorkloadSpec], bool]:
    return lambda measured, spec: stats.precise_enough(measured.figures(spec.name, metric))


def _all_precise(measured: Measured, spec: WorkloadSpec, wanted: Sequence[str]) -> bool:
    return all(stats.precise_enough(measured.figures(spec.name, metric)) for metric in wanted)


def _settled(
    first: Measured, workload: str, metric: str, noise: stats.Noise | None
) -> Callable[[Measured, WorkloadSpec], bool]:
    band = noise or stats.noise_from(None)

    def check(measured: Measured, spec: WorkloadSpec) -> bool:
        comparison = stats.compare(first.figures(workload, metric), measured.figures(workload, metric))
        return stats.settled(comparison, band)

    return check


def _from_report(config: ServerConfig, value: Any, report: StartupReport) -> Measured:
    server_start = getattr(report, "server_start", None)
    return Measured(
        config=mask_config(config),
        value=value,
        ok=report.ok,
        error=report.error.to_dict() if report.error else None,
        ready_s=report.ready_s,
        server_start=dict(server_start) if isinstance(server_start, Mapping) else None,
        kv_cache_tokens=report.kv_cache_tokens,
        command=report.command_text,
    )


def _add_samples(measured: Measured, spec: WorkloadSpec, load: loadgen.LoadResult) -> None:
    by_metric = measured.samples.setdefault(spec.name, {metric: [] for metric in METRICS})
    tokens = measured.answer_tokens.setdefault(spec.name, [])
    for timing in load.timings:
        if not timing.ok or timing.ttft_ms is None:
            continue
        by_metric["ttft_ms"].append(timing.ttft_ms)
        by_metric["e2e_ms"].append(timing.e2e_ms)
        tpot = timing.mean_itl_ms()
        if tpot is not None:
            by_metric["tpot_ms"].append(tpot)
        if timing.completion_tokens is not None:
            tokens.append(timing.completion_tokens)


def _memory_gib(rss: Sequence[int]) -> float | None:
    nvml = memory.load_nvml()
    if nvml is not None:
        with contextlib.suppress(Exception):
            gpus = memory.sample_gpus(nvml, set())
            if gpus:
                return sum(gpu.used_bytes for gpu in gpus) / GIB
    return max(rss) / GIB if rss else None


def run_table(
    plan: TablePlan,
    server: Any,
    on_event: Callable[[TableEvent], None] | None = None,
    stop: threading.Event | None = None,
    on_phase: Callable[[Any], None] | None = None,
    restore: ServerConfig | None = None,
) -> TableResult:
    """Run the whole table on `server` (a ServerManager or the carousel); with `restore`, start that
    config again at the end."""
    runner = TableRunner(plan, server, on_event, stop, on_phase)
    try:
        result = runner.run()
    finally:
        if restore is not None:
            with contextlib.suppress(Exception):
                fresh.restart(server, restore, plan.start_timeout)
    result.vllm_version = hardware.vllm_version()
    with contextlib.suppress(Exception):
        found = hardware.detect()
        result.machine = {
            "backend": found.backend,
            "devices": list(found.device_names),
            "memory_gib": round(found.total_memory_gib, 1),
            "cpu_cores": os.cpu_count(),
            "cpu": hardware.cpu_model(),
        }
    return result
