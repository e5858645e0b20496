"""Process-wide singletons (one per Streamlit server, shared by every browser session) and small
helpers around them. Worker threads live in the core; pages only read their snapshots.

- get_manager(): the carousel of warm servers, its runs under models.cache_root()/"runs"/"app"
- get_store(): the history store, or None when it cannot be opened
- get_sampler(): the memory sampler, or None while dashboard.measure.memory is not there
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from dashboard.engine import hardware, models
from dashboard.engine.config import ModelFacts, ServerConfig, default_config
from dashboard.engine.models import ModelShape, ModelUnavailable
from dashboard.engine.problems import Problem

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def get_manager():
    """The app's carousel of warm servers (its own folder: the CLI keeps its servers elsewhere). Its
    servers send their request spans to this process's X-ray receiver (when the X-ray is on)."""
    from dashboard.engine.carousel import Carousel
    from dashboard.measure import xray

    receiver = xray.shared_receiver()
    extras = {"extra_argv": receiver.server_args(), "extra_env": receiver.server_env()} if receiver else {}
    return Carousel(models.cache_root() / "runs" / "app", **extras)


@st.cache_resource(show_spinner=False)
def get_store():
    try:
        from dashboard.history.store import HistoryStore

        return HistoryStore()
    except Exception as exc:  # a missing module or an unreadable file must not take the pages down
        history_failed("open", exc)
        return None


@dataclass
class _HistoryHealth:
    """The last time the history could not be written (shown on every page, never swallowed)."""

    what: str = ""
    error: str = ""
    at: float = 0.0


@st.cache_resource(show_spinner=False)
def _history_health() -> _HistoryHealth:
    return _HistoryHealth()


def history_failed(what: str, exc: BaseException) -> None:
    """Remember (and log) that the history could not be written: disk full, database locked or damaged."""
    log.error("history write failed (%s)", what, exc_info=exc)
    health = _history_health()
    health.what, health.error, health.at = what, f"{type(exc).__name__}: {exc}", time.time()


def history_problem() -> _HistoryHealth | None:
    health = _history_health()
    return health if health.at else None


@st.cache_resource(show_spinner=False)
def get_sampler():
    try:
        from dashboard.measure import memory
    except ImportError:
        return None
    factory = getattr(memory, "get_sampler", None) or getattr(memory, "MemorySampler", None)
    if factory is None:
        return None
    try:
        sampler = factory()
        start = getattr(sampler, "start", None)
        if callable(start):
            start()
        return sampler
    except Exception:
        log.exception("memory sampler unavailable")
        return None


def backend() -> str:
    return hardware.detect_backend()


def machine() -> hardware.Hardware:
    return hardware.detect()


def starting_config() -> ServerConfig:
    return default_config(backend())


@st.cache_resource(show_spinner=False, max_entries=16, ttl=120)
def model_facts(model: str) -> tuple[ModelFacts, ModelShape | None, Problem | None]:
    """The facts validate() needs, the model's shape, and the problem when the model cannot be found."""
    try:
        resolved = models.resolve(model)
    except ModelUnavailable as exc:
        return hardware.facts_for_shape(model, None, backend()), None, exc.problem
    shape = models.shape(resolved)
    return hardware.facts_for_shape(model, shape, backend()), shape, None


@dataclass
class _FinishedStarts:
    seen: set[tuple[float, str | None]] = field(default_factory=set)  # (start, error code)
    last: Any = None  # the newest finished StartupReport, shown as "previous start" during a restart
    lock: threading.Lock = field(default_factory=threading.Lock)


@st.cache_resource(show_spinner=False)
def _finished_starts() -> _FinishedStarts:
    return _FinishedStarts()


def last_finished_report() -> Any:
    """The newest start that reached ready or failed (any session saw it), or None."""
    return _finished_starts().last


def record_finished_start(snapshot: Any) -> None:
    """Keep a finished start (ready or failed) in the history, once per start, whoever sees it first."""
    report = getattr(snapshot, "report", None)
    if report is None or snapshot.status not in ("ready", "failed"):
        return
    finished = _finished_starts()
    mark = (report.started_at, report.error.code if report.error else None)  # a crash after ready: new
    with finished.lock:
        if mark in finished.seen:
            return
        finished.seen.add(mark)
        finished.last = report
    store = get_store()
    if store is None:
        return
    try:
        # Every start (a sweep's too) is a "startup"; the user's Apply is recorded with its before/after.
        run_id = store.create_run("startup", report.config, label=report.served_name, backend=report.backend)
        store.set_startup(run_id, report.to_dict())
        summary = {
            "ready_s": report.ready_s,
            "kv_cache_tokens": report.kv_cache_tokens,
            "max_concurrency": report.max_concurrency,
            "error": report.error.code if report.error else None,
        }
        store.finish_run(run_id, summary, status="done" if report.ok else "failed")
    except Exception as exc:
        history_failed("startup", exc)
