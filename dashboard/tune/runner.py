"""One tuning run from start to report, shared by the CLI and the page: the space is built and pruned,
a history run is opened, the tuner runs (stoppable), and the history run is closed with the summary."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from dashboard.engine import hardware, models
from dashboard.engine.config import ServerConfig
from dashboard.engine.report import mask_config
from dashboard.history import store as history_store
from dashboard.measure.cards import environment
from dashboard.measure.loadgen import Workload
from dashboard.measure.sweep import ManagerView
from dashboard.tune.question import TuneQuestion
from dashboard.tune.report import build_report
from dashboard.tune.search import EventCallback, Measure, ServerLike, Tuner, TuneSettings, measure_load
from dashboard.tune.space import SearchSpace, build_space

STUDIES_FILE = "tune-studies.sqlite3"


class WarmAwareView(ManagerView):
    """A server manager as the tuner drives it: startup phases go to `on_phase`, and the carousel's
    `is_warm` is passed on (a plain ServerManager has none: nothing is warm then)."""

    def is_warm(self, config: ServerConfig) -> bool:
        check = getattr(self._manager, "is_warm", None)
        return bool(check(config)) if callable(check) else False

    @property
    def keeps_warm(self) -> bool:
        """Whether going back to an earlier config can be a flip (the carousel) rather than a start."""
        return callable(getattr(self._manager, "is_warm", None))


def studies_path(store: Any = None) -> Path:
    """Optuna's SQLite file, beside the history database."""
    folder = Path(store.path).parent if store is not None else history_store.default_path().parent
    return folder / STUDIES_FILE


def model_knowledge(base: ServerConfig, backend: str) -> tuple[Any, Any]:
    """(ModelFacts, ModelShape or None) for the checks and the memory arithmetic."""
    try:
        resolved = models.resolve(base.model)
        shape = models.shape(resolved)
    except Exception:  # an unknown model still gets the rules that do not need its shape
        resolved, shape = None, None
    facts = hardware.model_facts(base, backend, resolved=resolved) if resolved else None
    if facts is None:
        from dashboard.engine.config import ModelFacts

        facts = ModelFacts(backend=backend, gpu_count=hardware.gpu_count())
    return facts, shape


def plan_space(
    question: TuneQuestion, base: ServerConfig, workload: Workload
) -> tuple[SearchSpace, Any, Any]:
    facts, shape = model_knowledge(base, question.backend)
    space = build_space(
        base,
        question.backend,
        workload.request,
        facts,
        memory_gib=question.memory_gib,
        minutes=question.minutes,
        concurrency=question.load.concurrency,
        allow_request_changes=question.allow_request_changes,
        shape=shape,
    )
    return space, facts, shape


def run_tune(
    question: TuneQuestion,
    base: ServerConfig,
    workload: Workload,
    server: ServerLike,
    *,
    store: Any = None,
    settings: TuneSettings | None = None,
    stop: threading.Event | None = None,
    on_event: EventCallback | None = None,
    on_tuner: Any = None,  # called with the Tuner before it runs (the page reads its progress)
    storage_path: Path | None = None,
    measure: Measure = measure_load,
) -> dict[str, Any]:
    """Tune and return the report; a KeyboardInterrupt or `stop` ends it early with what was measured."""
    space, facts, shape = plan_space(question, base, workload)
    run_id = None
    if store is not None:
        config = mask_config(space.base) | {"tune": question.to_dict()}
        label = f"tune {question.preset or 'custom'}: {question.goal.key}, {question.load.text()}"
        run_id = store.create_run("tune", config, label=label, backend=question.backend)
    tuner = Tuner(
        question,
        space,
        server,
        workload,
        facts=facts,
        shape=shape,
        storage_path=storage_path or studies_path(store),
        settings=settings,
        store=store,
        run_id=run_id,
        stop=stop,
        on_event=on_event,
        measure=measure,
    )
    if on_tuner is not None:
        on_tuner(tuner)
    started = time.monotonic()
    report: dict[str, Any] | None = None
    try:
        report = tuner.run()
    except KeyboardInterrupt:
        tuner.stop.set()
        report = build_report(tuner, stopped=True, duration_s=time.monotonic() - started)
    finally:
        if store is not None and run_id is not None:
            status = "done" if report and report.get("best") else ("interrupted" if report else "failed")
            summary = _summary(report) if report else {}
            with contextlib.suppress(Exception):
                store.finish_run(run_id, summary, status=status)
    report["history_run_id"] = run_id
    report["environment"] = environment(question.backend, base.model)  # figures hold for this machine
    return report


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    best, base = report.get("best") or {}, report.get("baseline") or {}
    return {
        "goal": report["question"]["goal"],
        "best_changes": best.get("changes"),
        "best_goal": best.get("goal"),
        "baseline_goal": base.get("goal"),
        "clearly_better": best.get("clearly_better"),
        "trials": len(report.get("trials") or []),
        "verdict_vi": report["verdict"]["vi"],
        "verdict_en": report["verdict"]["en"],
        "stopped": report.get("stopped"),
        "duration_s": report.get("duration_s"),
        "study": report.get("study"),
        "report": {k: v for k, v in report.items() if k != "history_run_id"},
    }


def fresh_probe(
    best: dict[str, Any],
    workload: Workload,
    workdir: Path,
    backend: str,
    requests: int = 20,
    timeout: float = 600.0,
    port: int | None = None,
) -> dict[str, Any]:
    """Start the recommended settings on a new server (a cold start, nothing reused from the tuning),
    send the request with the recommended request fields, stop, and return the figures with intervals."""
    from dashboard.engine.server import ServerManager
    from dashboard.tune.search import figures_of, measure_load
    from dashboard.tune.space import TunedWorkload

    values = dict(best["config"].get("values") or {})
    if values.get("api_key") == "***":
        values.pop("api_key")
    if port is not None:
        values["port"] = port
    config = ServerConfig.from_dict({"model": best["config"].get("model", "embedded"), "values": values})
    fields = best.get("request_fields") or {}
    probe_workload = workload
    if fields and workload.request is not None:
        import json

        probe_workload = TunedWorkload(
            request=workload.request, json_mode=workload.json_mode, extra_fields_json=json.dumps(fields)
        )
    manager = ServerManager(Path(workdir), backend=backend)
    try:
        report = manager.start(config, wait=True, timeout=timeout)
        if not report.ok:
            error = report.error.text("en") if report.error else "not ready"
            return {"ok": False, "error": error, "command": list(report.command)}
        from dashboard.measure.loadgen import LoadPlan

        batch = measure_load(
            manager, probe_workload, LoadPlan(concurrency=1, requests=requests, warmup=3), None
        )
        return {
            "environment": environment(backend, config.model, report.vllm_version or None),
            "ok": bool(batch.e2e_ms),
            "error": batch.error_text or None,
            "command": list(report.command),
            "ready_s": report.ready_s,
            "figures": figures_of(batch),
            "answers": sorted(set(batch.texts))[:5],
        }
    finally:
        manager.close()
