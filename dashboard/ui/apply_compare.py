"""Apply with a before/after: the same small workload on the old server just before the switch and on the
new one once it is ready, kept for the factory page and the history (kind "apply").

The "before" side runs in the click (a few short orders, about a second or two on a small model), so it
is measured while the old server is alone on the machine; the "after" side runs in a background thread
that waits until the factory serves the new settings. One tracker per app: every session sees it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import streamlit as st

from dashboard.engine import flags
from dashboard.engine.carousel import config_key
from dashboard.engine.config import ServerConfig
from dashboard.engine.report import mask_config
from dashboard.history.records import flag_values
from dashboard.measure import compare
from dashboard.measure.compare import BeforeAfter, Probe, Side
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import state

log = logging.getLogger(__name__)
AFTER_TIMEOUT_S = 900.0
POLL_S = 0.5
SETTLE_GRACE_S = 5.0  # a background start may take a moment to show as busy


@dataclass
class Tracker:
    """The latest Apply's comparison as it goes: measuring_before, waiting, measuring_after, done, failed."""

    stage: str = "idle"
    requested_at: float = 0.0
    manager_id: int = 0  # which manager the Apply went to
    entry: BeforeAfter | None = None
    last_order: dict[str, Any] | None = None  # the last playground payload, the next probe
    lock: threading.Lock = field(default_factory=threading.Lock)


@st.cache_resource(show_spinner=False)
def tracker() -> Tracker:
    return Tracker()


def remember_order(payload: dict[str, Any]) -> None:
    """The playground's last order becomes the workload of the next comparison."""
    with tracker().lock:
        tracker().last_order = dict(payload)


def next_probe() -> Probe:
    order = tracker().last_order
    return Probe.from_payload(order) if order else Probe()


def apply(manager: Any, config: ServerConfig) -> bool:
    """Ask for the switch; the old server is measured first in the background, then the Apply goes
    through. False when a start (or another Apply's measurement) is already under way."""
    if manager.is_busy() or in_flight(manager):
        return False
    snap = manager.snapshot()
    if snap.status != "ready" or snap.config is None:
        return _start_without_comparison(manager, config)  # nothing runs yet: nothing to compare with
    entry = BeforeAfter(next_probe(), None, None, mask_config(snap.config), mask_config(config))
    with tracker().lock:
        tracker().entry = entry
        tracker().stage = "measuring_before"
        tracker().requested_at = time.time()
        tracker().manager_id = id(manager)
    threading.Thread(
        target=_before_then_apply, args=(manager, config, snap, entry), name="lego-apply", daemon=True
    ).start()
    return True


def _start_without_comparison(manager: Any, config: ServerConfig) -> bool:
    if not manager.apply(config):
        return False
    with tracker().lock:
        tracker().entry = None
        tracker().stage = "waiting"
        tracker().requested_at = time.time()
        tracker().manager_id = id(manager)
    return True


def _before_then_apply(manager: Any, config: ServerConfig, snap: Any, entry: BeforeAfter) -> None:
    before: Side | None = None
    if snap.status == "ready":
        try:
            before = compare.measure_side(
                snap.base_url, snap.served_name, entry.probe, api_key=manager.api_key
            )
        except Exception:  # a comparison is a bonus: never block the Apply because of it
            log.exception("before-side measurement failed")
    entry = BeforeAfter(entry.probe, before, None, entry.before_config, entry.after_config)
    accepted = manager.apply(config)
    with tracker().lock:
        tracker().entry = entry
        tracker().stage = "waiting" if accepted else "refused"
        tracker().requested_at = time.time()
    if accepted:
        _measure_after(manager, config, entry)


def _measure_after(manager: Any, config: ServerConfig, entry: BeforeAfter) -> None:
    started = time.monotonic()
    deadline = started + AFTER_TIMEOUT_S
    snap = manager.snapshot()
    seen_busy = False
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        snap = manager.snapshot()
        busy = manager.is_busy()
        seen_busy = seen_busy or busy
        serves_new = same_server(snap.config, config)
        if snap.status == "ready" and serves_new and not busy:
            break
        settled = not busy and (seen_busy or time.monotonic() - started > SETTLE_GRACE_S)
        if settled and (snap.status in ("failed", "stopped") or not serves_new):
            _finish(entry, None, "failed", snap)  # the new start failed (the old server may keep serving)
            return
    else:
        _finish(entry, None, "failed", snap)
        return
    with tracker().lock:
        tracker().stage = "measuring_after"
    try:
        after = compare.measure_side(snap.base_url, snap.served_name, entry.probe, api_key=manager.api_key)
    except Exception:
        log.exception("after-side measurement failed")
        after = None
    _finish(entry, after, "done", snap)


def _finish(entry: BeforeAfter, after: Side | None, stage: str, snap: Any) -> None:
    done = BeforeAfter(entry.probe, entry.before, after, entry.before_config, entry.after_config)
    with tracker().lock:
        tracker().entry = done
        tracker().stage = stage
    _record(done, snap if stage == "done" else None)


def _record(entry: BeforeAfter, snap: Any) -> None:
    """One history run of kind apply: the new settings, their start, and the comparison."""
    store = state.get_store()
    if store is None:
        return
    try:
        report = getattr(snap, "report", None)
        served = getattr(snap, "config", None)  # with the port it really got (the carousel may move it)
        after = mask_config(served) if served is not None else dict(entry.after_config)
        config = {**after, "before": dict(entry.before_config)}
        run_id = store.create_run("apply", config, label=_label(entry), backend=state.backend())
        if report is not None:
            store.set_startup(run_id, report.to_dict())
        summary = {
            "ready_s": getattr(report, "ready_s", None),
            "kv_cache_tokens": getattr(report, "kv_cache_tokens", None),
            "max_concurrency": getattr(report, "max_concurrency", None),
            "comparison": entry.to_dict(),
        }
        store.finish_run(run_id, summary, status="done" if entry.after is not None else "failed")
    except Exception:
        log.exception("could not record the comparison")


def _label(entry: BeforeAfter) -> str:
    """The change in the settings' own words, the same in every language: "--max-num-seqs 16"."""
    before, after = flag_values(entry.before_config), flag_values(entry.after_config)
    parts = []
    for name in sorted(after.keys() | before.keys()):
        if name in ("api_key", "before") or before.get(name) == after.get(name):
            continue
        cli = flags.get(name).cli if name in flags.catalog() else name
        parts.append(f"{cli} {after.get(name)}")
    return ", ".join(parts)[:120]


def same_server(served: ServerConfig | None, asked: ServerConfig) -> bool:
    """The server serves what was asked: every setting but the port, which the carousel moves to the
    next free one when a warm server already holds the asked port."""
    return served is not None and config_key(served) == config_key(asked)


def _same_masked(served: dict[str, Any], asked: dict[str, Any]) -> bool:
    def without_port(data: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        values = {k: v for k, v in (data.get("values") or {}).items() if k != "port" and v is not None}
        return data.get("model"), values

    return without_port(served) == without_port(asked)


def in_flight(manager: Any) -> bool:
    """An Apply was just accepted but the server does not show its start yet (the background start
    takes a moment to begin): the page must not show the old state as if nothing happened."""
    t = tracker()
    if t.manager_id != id(manager):
        return False
    return t.stage == "measuring_before" or (
        t.stage == "waiting" and time.time() - t.requested_at < SETTLE_GRACE_S
    )


def as_seen(manager: Any) -> Any:
    """The manager's snapshot as the page should show it: "starting" (no phases yet) in the moment
    between an accepted Apply and the first sign of its start, instead of the old server's ready or
    stopped state."""
    snap = manager.snapshot()
    if snap.busy or not in_flight(manager):
        return snap
    target = tracker().entry.after_config if tracker().entry is not None else None
    if snap.status == "ready" and target and _same_masked(mask_config(snap.config), dict(target)):
        return snap  # already there (a switch to a warm server is that quick)
    return replace(snap, status="starting", phases=(), started_at=tracker().requested_at)


def stage_text(stage: str) -> str:
    _ = ui_i18n.translator()
    return {
        "measuring_before": _("Measuring the current factory before the switch…"),
        "waiting": _("Waiting for the new factory to be ready, to measure the same order on it…"),
        "measuring_after": _("Measuring the same order on the new factory…"),
        "refused": _(
            "A restart is already under way, so this one was not started. "
            "Your settings are kept here: press the button again once the factory is ready."
        ),
    }.get(stage, "")
