"""The impact page's measurements, run in a background thread that outlives the browser tab.

One `SweepJob` per Streamlit server (the vLLM server is shared, so only one measurement runs at a time).
It runs one sweep (one flag, several values) or the whole table (a few values of every flag of the
brief's table), restarting the server through the ServerManager for each value, saving each measured
row to the history the moment it exists, marking restarts and load tests on the memory sampler's
timeline, and at the end putting the server back as it was. Pages read `snapshot()`; nothing here
calls st.* from the worker thread (the module imports Streamlit only for the process-wide getter).
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import streamlit as st

from dashboard.classroom import doors
from dashboard.engine import flags
from dashboard.engine.config import ServerConfig
from dashboard.engine.report import StartupReport, mask_config
from dashboard.i18n import N_
from dashboard.measure import budget as budget_mod
from dashboard.measure import table as table_mod
from dashboard.measure.loadgen import LoadPlan, Workload
from dashboard.measure.sweep import ManagerView, SweepRow, run_sweep, verdict, verdict_message

log = logging.getLogger(__name__)
GIB = 1024**3

# Values tried when the learner does not type their own (per backend where it matters).
DEFAULT_VALUES: dict[str, dict[str, list[Any]]] = {
    "gpu_memory_utilization": {"cuda": [0.15, 0.3, 0.6]},
    "kv_cache_memory_gib": {"cpu": [0.5, 1.0, 2.0], "cuda": [1.0, 4.0, 16.0]},
    "max_model_len": {"*": [512, 1024, 2048]},
    "max_num_batched_tokens": {"*": [512, 2048, 8192]},
    "max_num_seqs": {"*": [4, 16, 64]},
    "tensor_parallel_size": {"cuda": [1, 2]},
    "enable_prefix_caching": {"*": [False, True]},
    "enforce_eager": {"*": [True, False]},
    "enable_chunked_prefill": {"*": [False, True]},
    "optimization_level": {"*": ["0", "2"]},
    "dtype": {"cpu": ["bfloat16", "float32"], "cuda": ["float16", "bfloat16", "float32"]},
    "kv_cache_dtype": {"cuda": ["auto", "fp8"]},
    "quantization": {"cuda": ["none", "fp8"]},
    "seed": {"*": [0, 1]},
    "enable_log_requests": {"*": [False, True]},
}
# Never measured with the door open or a model's own code on (dashboard/classroom/doors.py).
NOT_SWEPT = frozenset({"port", "api_key", "served_model_name"})

# The brief's table, in its order (the CPU build sizes the warehouse in GiB instead of a GPU share),
# with the few values the whole-table run tries for each flag.
TABLE_FLAGS: tuple[str, ...] = (
    "gpu_memory_utilization",
    "kv_cache_memory_gib",
    "max_model_len",
    "max_num_seqs",
    "enable_prefix_caching",
    "dtype",
    "enforce_eager",
    "max_num_batched_tokens",
    "kv_cache_dtype",
    "enable_log_requests",
    "trust_remote_code",
    "host",
)
TABLE_VALUES: dict[str, dict[str, list[Any]]] = {
    "gpu_memory_utilization": {"cuda": [0.15, 0.5]},
    "kv_cache_memory_gib": {"cpu": [0.5, 2.0]},
    "max_model_len": {"*": [512, 2048]},
    "max_num_seqs": {"*": [4, 64]},
    "enable_prefix_caching": {"*": [False, True]},
    "dtype": {"cpu": ["bfloat16", "float32"], "cuda": ["float16", "float32"]},
    "enforce_eager": {"*": [True, False]},
    "max_num_batched_tokens": {"*": [512, 4096]},
    "kv_cache_dtype": {"cuda": ["auto", "fp8"]},
    "enable_log_requests": {"*": [False, True]},
    "trust_remote_code": {"*": [False]},  # never on: it changes no speed and would run the model's code
    "host": {"*": ["127.0.0.1"]},  # loopback only: opening the door changes no speed
}


def _for_backend(table: Mapping[str, Mapping[str, list[Any]]], flag: str, backend: str) -> list[Any]:
    choices = table.get(flag, {})
    return list(choices.get(backend, choices.get("*", [])))


def default_values(flag: str, backend: str) -> list[Any]:
    """The values tried for `flag` unless the learner types others; [] when it means nothing here."""
    return _for_backend(DEFAULT_VALUES, flag, backend)


def sweepable_flags(backend: str) -> list[str]:
    """Flags worth sweeping on this backend, in catalog order."""
    return [
        name
        for name, flag in flags.catalog().items()
        if name not in NOT_SWEPT and flag.has_effect_on(backend) and default_values(name, backend)
    ]


def table_plan(backend: str) -> list[tuple[str, list[Any]]]:
    """(flag, values) for every flag of the brief's table that can be measured on this backend."""
    plan = []
    for name in TABLE_FLAGS:
        values = _for_backend(TABLE_VALUES, name, backend)
        if values and flags.get(name).has_effect_on(backend):
            plan.append((name, values))
    return plan


def parse_values(flag: str, text: str) -> list[Any]:
    """'4, 16, 64' or 'on, off' into the flag's typed values; ValueError naming the bad item."""
    parsed = []
    for item in (part.strip() for part in text.replace(";", ",").split(",")):
        if not item:
            continue
        try:
            parsed.append(flags.get(flag).coerce(item))
        except flags.FlagValueError as exc:
            raise ValueError(str(exc)) from None
    return parsed


START_S = {"cpu": 40.0, "cuda": 90.0}  # a start in eager mode on a quiet machine, with some margin
COMPILE_S = {"cpu": 70.0, "cuda": 40.0}  # extra when eager mode is off (torch.compile, graphs)
REQUEST_S = {"cpu": 1.5, "cuda": 0.2}  # one short answer, one at a time


def estimate_seconds(
    sweeps: Sequence[tuple[str, Sequence[Any]]],
    base: ServerConfig,
    requests: int,
    concurrency: int,
    backend: str,
) -> float:
    """A rough duration for planning: starts (plus compile when eager mode is off) and the requests."""
    total = 0.0
    for flag, values in sweeps:
        for value in values:
            eager = value if flag == "enforce_eager" else base.get("enforce_eager")
            total += START_S.get(backend, 60.0)
            if eager is False:
                total += COMPILE_S.get(backend, 60.0)
            total += (requests + 2) * REQUEST_S.get(backend, 1.0) / max(1, min(concurrency, requests))
    return total


# ---------------------------------------------------------------------------------------------- rows


def memory_gib(row: Mapping[str, Any]) -> float | None:
    """The memory a sweep row measured: the GPUs' used memory when there are GPUs, else the processes' RAM."""
    gpus = row.get("gpu_used_bytes") or []
    if gpus:
        return sum(gpus) / GIB
    rss = row.get("process_rss_bytes")
    return None if rss is None else rss / GIB


def chart_row(row: Mapping[str, Any], label: str) -> dict[str, Any]:
    """A stored sweep row as the charts read it ({"value": label, metric: number})."""
    return {
        "value": label,
        "ttft_p50_ms": row.get("ttft_p50_ms"),
        "itl_p50_ms": row.get("itl_p50_ms"),
        "e2e_p50_ms": row.get("e2e_p50_ms"),
        "output_tokens_per_s": row.get("output_tokens_per_s"),
        "requests_per_s": row.get("requests_per_s"),
        "ready_s": row.get("ready_s"),
        "memory_gib": memory_gib(row),
    }


def sweep_row(data: Mapping[str, Any]) -> SweepRow:
    """A stored row back as a SweepRow (unknown keys dropped), for the verdict."""
    known = set(SweepRow.__dataclass_fields__)
    return SweepRow(**{k: v for k, v in data.items() if k in known})


def verdicts(flag: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    objects = [sweep_row(r) for r in rows]
    return {lang: verdict(objects, flag, lang) for lang in ("vi", "en")}


def verdict_summary(flag: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The verdict as a sweep stores it: msgid and numbers (translated when shown) and both sentences."""
    message, params = verdict_message([sweep_row(r) for r in rows], flag)
    texts = verdicts(flag, rows)
    return {
        "verdict_message": message,
        "verdict_params": params,
        "verdict_vi": texts["vi"],
        "verdict_en": texts["en"],
    }


# ---------------------------------------------------------------------------------------------- snapshot

STAGE_WAITING, STAGE_STARTING, STAGE_MEASURING = "waiting", "starting", "measuring"
STAGE_DONE, STAGE_FAILED, STAGE_SKIPPED = "done", "failed", "skipped"


@dataclass(frozen=True)
class ValueState:
    value: Any
    stage: str = STAGE_WAITING
    phase: str = ""  # the startup phase's English msgid while starting
    row: Mapping[str, Any] | None = None
    budget: Mapping[str, Any] | None = None  # LatencyBudget.to_dict() of one request at this value


@dataclass(frozen=True)
class FlagState:
    flag: str
    values: tuple[ValueState, ...]
    run_id: int | None = None
    verdict_vi: str = ""
    verdict_en: str = ""
    finished: bool = False


@dataclass(frozen=True)
class JobSnapshot:
    status: str = "idle"  # idle | running | done | failed | stopped
    mode: str = ""  # "sweep" or "table"
    flags: tuple[FlagState, ...] = ()
    started_at: float | None = None
    finished_at: float | None = None
    restore: str = ""  # "", "restoring", "restored", "restore_failed", "left", "stopped_before"
    error: str = ""
    workload: Mapping[str, Any] = field(default_factory=dict)
    aa: tuple[ValueState, ...] = ()  # the whole table: the same settings started twice (the noise)
    table_run_id: int | None = None
    will_restore: bool = False  # the factory is put back as it was when the measurement ends

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def total_values(self) -> int:
        return len(self.aa) + sum(len(f.values) for f in self.flags)

    @property
    def finished_values(self) -> int:
        states = [*self.aa, *(v for f in self.flags for v in f.values)]
        return sum(1 for v in states if v.stage in (STAGE_DONE, STAGE_FAILED))

    def progress(self) -> float:
        total = self.total_values
        return self.finished_values / total if total else 0.0

    def current(self) -> tuple[str, ValueState] | None:
        for flag_state in self.flags:
            for value in flag_state.values:
                if value.stage in (STAGE_STARTING, STAGE_MEASURING):
                    return flag_state.flag, value
        return None


@dataclass(frozen=True)
class JobRequest:
    """What to measure: (flag, values) pairs, on top of `base`, with this workload and load plan."""

    sweeps: tuple[tuple[str, tuple[Any, ...]], ...]
    base: ServerConfig
    workload: Workload
    plan: LoadPlan
    mode: str = "sweep"
    restore_config: ServerConfig | None = None  # the config to put back at the end; None = leave it
    backend: str = ""
    budget_payload: Mapping[str, Any] | None = None  # one request split into queue/prefill/decode/HTTP
    start_timeout: float = 600.0
    table: table_mod.TablePlan | None = None  # the whole table, run by dashboard.measure.table


# ---------------------------------------------------------------------------------------------- the job


class _WatchedServer(ManagerView):
    """The ServerManager as run_sweep sees it, telling the job when a restart starts, reaches a phase
    and ends (so the page can show it and the memory timeline can mark it)."""

    def __init__(self, manager: Any, job: SweepJob) -> None:
        super().__init__(manager, on_phase=job._on_phase)
        self._job = job

    def restart(
        self, config: ServerConfig, wait: bool = True, timeout: float = 600, fresh: bool = False
    ) -> StartupReport:
        self._job._on_restart(config)
        report = super().restart(config, wait=wait, timeout=timeout, fresh=fresh)
        self._job._on_started(report)
        return report


class SweepJob:
    """At most one measurement at a time; `start()` refuses a second one and says why."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = JobSnapshot()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._manager: Any = None
        self._store: Any = None
        self._sampler: Any = None
        self._flag_index = 0
        self._value_index = 0

    # ------------------------------------------------------------ public

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return self._snapshot

    def is_running(self) -> bool:
        with self._lock:
            return self._snapshot.running

    def start(self, request: JobRequest, manager: Any, store: Any = None, sampler: Any = None) -> str | None:
        """Begin in a daemon thread. None when started, else the reason (an English msgid) it was not."""
        with self._lock:
            if self._snapshot.running:
                return N_("A measurement is already running. Wait for it to finish, or stop it first.")
            if any(doors.unsafe_sweep_values(flag, values) for flag, values in request.sweeps):
                return N_(
                    "A measurement never turns on --trust-remote-code or opens --host 0.0.0.0: they change "
                    "no speed and would run a model's code or open the server to the network."
                )
            if manager.is_busy():
                return N_("The server is being restarted right now. Try again when it is ready.")
            self._manager, self._store, self._sampler = manager, store, sampler
            self._stop = threading.Event()
            self._snapshot = JobSnapshot(
                status="running",
                mode=request.mode,
                flags=tuple(
                    FlagState(flag, tuple(ValueState(v) for v in values)) for flag, values in _steps(request)
                ),
                started_at=time.time(),
                will_restore=request.restore_config is not None,
                workload=request.workload.to_dict(),
                aa=(ValueState(None), ValueState(None))
                if request.table and request.table.measured_rows
                else (),
            )
            self._thread = threading.Thread(
                target=self._run, args=(request,), name="lego-sweep-job", daemon=True
            )
            self._thread.start()
        return None

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> JobSnapshot:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.snapshot()

    # ------------------------------------------------------------ worker

    def _run(self, request: JobRequest) -> None:
        """Own the server for the whole measurement (a claim): meanwhile every other Apply, Stop, model
        change and playground order is refused, so no row is measured on a server someone changed."""
        claim = getattr(self._manager, "claim", None)
        if not callable(claim):  # a plain server manager: nothing to claim
            self._run_measured(request)
            return
        owner = f"measurement-{id(self)}-{time.time():.0f}"
        try:
            with claim(
                owner=owner, what=_claim_what(request), who="presenter", until=_claim_until(request)
            ) as view:
                plain, self._manager = self._manager, view
                try:
                    self._run_measured(request)
                finally:
                    self._manager = plain
        except Exception as exc:  # refused: someone else's measurement holds the server
            if self.snapshot().status != "running":
                raise
            log.warning("measurement could not claim the server: %s", exc)
            self._update(status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=time.time())

    def _run_measured(self, request: JobRequest) -> None:
        status, error = "done", ""
        try:
            if request.table is not None:
                self._run_table(request, request.table)
            for index, (flag, values) in enumerate(() if request.table is not None else request.sweeps):
                if self._stop.is_set():
                    break
                self._flag_index, self._value_index = index, 0
                self._run_one(request, flag, list(values))
        except Exception as exc:  # the page must learn what broke; the thread must not die silently
            log.exception("sweep job failed")
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        if self._stop.is_set() and status == "done":
            status = "stopped"
        self._finish_restore(request)
        self._update(status=status, error=error, finished_at=time.time())

    def _run_one(self, request: JobRequest, flag: str, values: list[Any]) -> None:
        base = _base_for(flag, request.base)
        run_id = self._create_run(request, flag, values, base)
        self._update_flag(run_id=run_id)
        rows: list[dict[str, Any]] = []

        def on_row(row: SweepRow) -> None:
            data = row.to_dict()
            rows.append(data)
            self._mark("load_end", _value_label(row.value))
            budget = self._measure_budget(request) if row.ok else None
            if budget is not None:
                data["budget"] = budget
            self._save_row(run_id, data)
            self._update_value(stage=STAGE_DONE if row.measured else STAGE_FAILED, row=data, budget=budget)
            self._value_index += 1

        try:
            result = run_sweep(
                flag,
                values,
                base,
                request.workload,
                _WatchedServer(self._manager, self),
                on_row=on_row,
                plan=request.plan,
                warmup=1,
                start_timeout=request.start_timeout,
                stop=self._stop,
                noise_pair=True,
            )
        except Exception:
            self._finish_run(run_id, flag, values, rows, "failed")
            raise
        texts = {lang: result.verdict(lang) for lang in ("vi", "en")}
        self._update_flag(verdict_vi=texts["vi"], verdict_en=texts["en"], finished=True)
        measured = any(r.measured for r in result.rows)
        status = "interrupted" if result.stopped else ("done" if measured else "failed")
        self._finish_run(
            run_id, flag, values, rows, status, result.duration_s, result.plan, result.noise, texts
        )

    # ------------------------------------------------------------ the whole table

    def _run_table(self, request: JobRequest, plan: table_mod.TablePlan) -> None:
        run_id = self._create_table_run(plan)
        self._update(table_run_id=run_id)
        self._step: tuple[str, int] = (table_mod.AA, 0)

        def on_event(event: table_mod.TableEvent) -> None:
            self._table_event(event, run_id)

        def on_phase(phase: Any) -> None:
            with contextlib.suppress(Exception):
                self._set_step_state(*self._step, phase=phase.label)

        result = table_mod.run_table(
            plan, self._manager, on_event=on_event, stop=self._stop, on_phase=on_phase
        )
        data = result.to_dict()
        if self._store is not None and run_id is not None:
            summary = {key: value for key, value in data.items() if key != "rows"}
            summary["effects"] = {row["flag"]: row["effect"] for row in data["rows"]}
            with contextlib.suppress(Exception):
                self._store.finish_run(
                    run_id, _finite(summary), status="interrupted" if result.stopped else "done"
                )

    def _table_event(self, event: table_mod.TableEvent, run_id: int | None) -> None:
        if event.stage == "row" and event.row is not None:
            data = event.row.to_dict()
            self._save_row(run_id, _finite(data))
            names = [state.flag for state in self.snapshot().flags]
            if event.step in names:
                self._flag_index = names.index(event.step)
                self._update_flag(
                    verdict_vi=data["verdict"]["vi"], verdict_en=data["verdict"]["en"], finished=True
                )
            return
        self._step = (event.step, event.index)
        if event.stage == "starting":
            label = N_("same settings") if event.step == table_mod.AA else flags.get(event.step).cli
            self._mark(
                "restart", f"{label} {_value_label(event.value)}" if event.value is not None else label
            )
            self._set_step_state(event.step, event.index, stage=STAGE_STARTING, phase="")
        elif event.stage == "measuring":
            self._mark("ready")
            self._mark("load_start")
            self._set_step_state(event.step, event.index, stage=STAGE_MEASURING, phase="")
        elif event.stage in ("done", "failed") and event.measured is not None:
            self._mark("load_end" if event.measured.ok else "stopped")
            row = {"ok": event.measured.ok, "ready_s": event.measured.ready_s, "error": event.measured.error}
            stage = STAGE_DONE if event.measured.ok else STAGE_FAILED
            self._set_step_state(event.step, event.index, stage=stage, row=row)

    def _set_step_state(self, step: str, index: int, **changes: Any) -> None:
        with self._lock:
            snapshot = self._snapshot
            if step == table_mod.AA:
                if index < len(snapshot.aa):
                    states = list(snapshot.aa)
                    states[index] = replace(states[index], **changes)
                    self._snapshot = replace(snapshot, aa=tuple(states))
                return
            flag_states = list(snapshot.flags)
            for number, state in enumerate(flag_states):
                if state.flag == step and index < len(state.values):
                    values = list(state.values)
                    values[index] = replace(values[index], **changes)
                    flag_states[number] = replace(state, values=tuple(values))
                    self._snapshot = replace(snapshot, flags=tuple(flag_states))
                    return

    def _create_table_run(self, plan: table_mod.TablePlan) -> int | None:
        if self._store is None:
            return None
        config = mask_config(plan.base)
        config["table"] = plan.to_dict()
        try:
            return self._store.create_run("table", config, label="table", backend=plan.backend)
        except Exception:
            log.exception("could not create the table run")
            return None

    def _finish_restore(self, request: JobRequest) -> None:
        if request.restore_config is None:
            self._update(restore="left")
            return
        self._update(restore="restoring")
        self._mark("restart", N_("back as before"))
        try:
            report = self._manager.restart(request.restore_config, wait=True, timeout=request.start_timeout)
        except Exception:
            log.exception("could not restore the server")
            self._update(restore="restore_failed")
            return
        self._mark("ready" if report.ok else "stopped")
        self._update(restore="restored" if report.ok else "restore_failed")

    # ------------------------------------------------------------ callbacks from the sweep

    def _on_restart(self, config: ServerConfig) -> None:
        flag = self.snapshot().flags[self._flag_index].flag
        self._mark("restart", f"{flags.get(flag).cli} {_value_label(config.get(flag))}")
        self._update_value(stage=STAGE_STARTING, phase="")

    def _on_phase(self, phase: Any) -> None:
        with contextlib.suppress(Exception):
            self._update_value(phase=phase.label)

    def _on_started(self, report: StartupReport) -> None:
        if report.ok:
            self._mark("ready")
            self._mark("load_start")
            self._update_value(stage=STAGE_MEASURING, phase="")
        else:
            self._mark("stopped")

    def _measure_budget(self, request: JobRequest) -> dict[str, Any] | None:
        if request.budget_payload is None or self._stop.is_set():
            return None
        try:
            payload = {**request.budget_payload, "model": self._manager.served_name}
            result, timing = budget_mod.measure_budget(
                self._manager.base_url, payload, api_key=self._manager.api_key
            )
        except Exception:  # the budget is extra: never lose the row because of it
            log.exception("latency budget failed")
            return None
        return result.to_dict() if timing.ok else None

    # ------------------------------------------------------------ history and marks

    def _create_run(
        self, request: JobRequest, flag: str, values: list[Any], base: ServerConfig
    ) -> int | None:
        if self._store is None:
            return None
        label = f"{flags.get(flag).cli}: " + ", ".join(_value_label(v) for v in values)
        config = mask_config(base)
        config["sweep"] = {"flag": flag, "values": values, "workload": request.workload.to_dict()}
        try:
            return self._store.create_run("sweep", config, label=label, backend=request.backend)
        except Exception:
            log.exception("could not create the sweep run")
            return None

    def _save_row(self, run_id: int | None, data: dict[str, Any]) -> None:
        if self._store is None or run_id is None:
            return
        try:
            self._store.add_row(run_id, data)
        except Exception:
            log.exception("could not save a sweep row")

    def _finish_run(
        self,
        run_id: int | None,
        flag: str,
        values: list[Any],
        rows: list[dict[str, Any]],
        status: str,
        duration_s: float | None = None,
        plan: Mapping[str, Any] | None = None,
        noise: Mapping[str, Any] | None = None,
        texts: Mapping[str, str] | None = None,
    ) -> None:
        if self._store is None or run_id is None:
            return
        summary = {
            "flag": flag,
            "values": values,
            **verdict_summary(flag, rows),
            "duration_s": duration_s,
            "plan": dict(plan or {}),
            "measured": sum(1 for r in rows if r.get("ok") and r.get("e2e_p50_ms") is not None),
        }
        if noise is not None and texts:  # judged against this sweep's own A/A pair
            summary.update(noise=_finite(dict(noise)), verdict_vi=texts["vi"], verdict_en=texts["en"])
        try:
            self._store.finish_run(run_id, summary, status=status)
        except Exception:
            log.exception("could not finish the sweep run")

    def _mark(self, kind: str, label: str = "") -> None:
        if self._sampler is None:
            return
        with contextlib.suppress(Exception):
            self._sampler.mark(kind, label)

    # ------------------------------------------------------------ snapshot updates

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._snapshot = replace(self._snapshot, **changes)

    def _update_flag(self, **changes: Any) -> None:
        with self._lock:
            states = list(self._snapshot.flags)
            states[self._flag_index] = replace(states[self._flag_index], **changes)
            self._snapshot = replace(self._snapshot, flags=tuple(states))

    def _update_value(self, **changes: Any) -> None:
        with self._lock:
            states = list(self._snapshot.flags)
            flag_state = states[self._flag_index]
            if self._value_index >= len(flag_state.values):
                return
            values = list(flag_state.values)
            values[self._value_index] = replace(values[self._value_index], **changes)
            states[self._flag_index] = replace(flag_state, values=tuple(values))
            self._snapshot = replace(self._snapshot, flags=tuple(states))


def _steps(request: JobRequest) -> list[tuple[str, Sequence[Any]]]:
    """(flag, values) shown while the job runs: the sweeps, or the measured rows of the whole table."""
    if request.table is not None:
        return [(row.flag, row.values) for row in request.table.measured_rows]
    return list(request.sweeps)


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, Mapping):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(item) for item in data]
    return data


def _claim_what(request: JobRequest) -> str:
    """What the claim says is running, in words any session can read."""
    if request.table is not None or request.mode == "table":
        return "table"  # each page says it in its reader's language (dashboard/ui/roles.py)
    return ", ".join(flags.get(flag).cli for flag, _values in request.sweeps) or "measurement"


def _claim_until(request: JobRequest) -> float | None:
    """About when the measurement ends (epoch seconds), from the same estimate the page shows."""
    if request.table is not None or not request.sweeps:
        return None
    try:
        seconds = estimate_seconds(
            request.sweeps, request.base, request.plan.requests, request.plan.concurrency, request.backend
        )
    except Exception:
        return None
    return time.time() + seconds if seconds else None


def _base_for(flag: str, base: ServerConfig) -> ServerConfig:
    """An open door (host 0.0.0.0) needs a key: the host sweep gets a one-off key of its own."""
    if flag == "host" and not base.get("api_key"):
        return base.with_values({"api_key": secrets.token_urlsafe(16)})
    return base


def _value_label(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


# ------------------------------------------------------------------------------------------ Streamlit glue


@st.cache_resource(show_spinner=False)
def get_job() -> SweepJob:
    """The one measurement job of this Streamlit server."""
    return SweepJob()


def bind_sampler(sampler: Any, manager: Any) -> None:
    """Point the memory sampler at the server's process tree and its /metrics (both change at restarts)."""
    if sampler is None:
        return

    def root_pid() -> int | None:
        return manager.snapshot().pid

    def metrics_base() -> str | None:
        snap = manager.snapshot()
        return snap.base_url if snap.status == "ready" else None

    with contextlib.suppress(Exception):
        sampler.set_root_pid(root_pid)
        sampler.set_metrics_url(metrics_base)
