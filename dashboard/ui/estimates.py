"""The sweep's duration as the impact page shows it: a range from this machine's history, every restart
counted (the restore too), warm values of the carousel counted as flips."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import streamlit as st

from dashboard.engine.config import ServerConfig
from dashboard.measure import estimate
from dashboard.measure.estimate import Estimate, MachineTimes
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import state

HISTORY_RUNS = 200
SWEEPS_READ = 5


@st.cache_data(ttl=60, show_spinner=False)
def machine_times(backend: str, _minute: int) -> MachineTimes:
    """Measured start and answer times (read at most once a minute)."""
    store = state.get_store()
    if store is None:
        return MachineTimes()
    runs = store.list_runs(limit=HISTORY_RUNS)
    sweeps = [run.id for run in runs if run.kind == "sweep" and run.status == "done"][:SWEEPS_READ]
    detailed = [store.get_run(run_id) for run_id in sweeps]
    others = [run for run in runs if run.kind != "sweep"]
    return estimate.times_from_history([*detailed, *others], backend)


def sweep_estimate(
    sweeps: Sequence[tuple[str, Sequence[Any]]],
    base: ServerConfig,
    requests: int,
    concurrency: int,
    restore: ServerConfig | None,
) -> Estimate:
    backend = state.backend()
    manager = state.get_manager()
    is_warm = getattr(manager, "is_warm", None)
    times = machine_times(backend, int(time.time() // 60))
    return estimate.estimate_sweep(
        sweeps, base, requests, concurrency, backend, times, restore=restore, is_warm=is_warm
    )


def duration(seconds: float) -> str:
    _ = ui_i18n.translator()
    if seconds < 90:
        return _("{seconds} s").format(seconds=ui_i18n.number(seconds))
    return _("{minutes} min").format(minutes=ui_i18n.number(seconds / 60, 0 if seconds >= 600 else 1))


def caption(result: Estimate) -> str:
    _ = ui_i18n.translator()
    ngettext = ui_i18n.plural_translator()
    starts = ngettext("{n} start of the real server", "{n} starts of the real server", result.starts).format(
        n=ui_i18n.number(result.starts)
    )
    parts = [starts]
    if result.flips:
        parts.append(
            ngettext(
                "{n} switch to a server kept warm", "{n} switches to servers kept warm", result.flips
            ).format(n=ui_i18n.number(result.flips))
        )
    text = _("{parts}: between {low} and {high} in all.").format(
        parts=", ".join(parts), low=duration(result.low_s), high=duration(result.high_s)
    )
    if result.measured:
        return text + " " + _("From the starts and answers measured on this machine.")
    return text + " " + _("Rough: this machine has not measured enough starts yet.")
