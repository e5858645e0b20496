"""The memory sampler runs from the app's first page (so "the last 5 minutes" is really 5 minutes), and a
watcher marks every restart, switch and ready moment of the server on it, whoever caused them."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import streamlit as st

from dashboard.ui import state

WATCH_EVERY_S = 0.5


class RestartMarker:
    """Polls the server's snapshot and puts a mark on the sampler when the server changes or gets ready."""

    def __init__(self, sampler: Any, manager: Any) -> None:
        self.sampler = sampler
        self.manager = manager
        self._seen_start: float | None = None
        self._seen_ready: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lego-restart-marks", daemon=True)

    def start(self) -> RestartMarker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(WATCH_EVERY_S):
            with contextlib.suppress(Exception):  # a mark is a bonus: the watcher never dies of it
                self.check(self.manager.snapshot())

    def check(self, snap: Any, now: float | None = None) -> None:
        now = time.time() if now is None else now
        started = getattr(snap, "started_at", None)
        if started and started != self._seen_start:
            first = self._seen_start is None
            self._seen_start, self._seen_ready = started, None
            if not (first and snap.status == "ready"):  # the server found at app start is not a restart
                fresh = snap.status == "starting" or now - started < 5
                if fresh:
                    self.sampler.mark("restart", t=started)
                else:  # a server started earlier is now in use: the carousel switched to a warm one
                    self.sampler.mark("switch", t=now)
        report = getattr(snap, "report", None)
        ready_s = getattr(report, "ready_s", None) if report is not None else None
        if snap.status == "ready" and ready_s is not None and self._seen_ready != started:
            self._seen_ready = started
            if getattr(report, "started_at", None) == started and now - (started + ready_s) < 600:
                self.sampler.mark("ready", t=started + ready_s)


@st.cache_resource(show_spinner=False)
def _marker() -> RestartMarker | None:
    sampler = state.get_sampler()
    if sampler is None:
        return None
    from dashboard.ui.measure_jobs import bind_sampler

    manager = state.get_manager()
    bind_sampler(sampler, manager)
    return RestartMarker(sampler, manager).start()


def ensure_started() -> None:
    """Start the sampler and the restart watcher once per app (call from every page)."""
    _marker()
