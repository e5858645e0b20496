"""A one-part Streamlit page for benchmarks/live_floor.py: the live floor of a server the benchmark
started, with the fragment's own run time written to a log (one line per re-run: epoch, ms, drawn?).

It draws exactly what the product's floor draws (dashboard.ui.floor.floor_body, on the same timer);
only the server comes from the benchmark instead of the app's carousel."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st  # noqa: E402

from dashboard.engine.config import ServerConfig  # noqa: E402
from dashboard.engine.report import ServerSnapshot, StartupReport  # noqa: E402
from dashboard.ui import floor as floor_ui  # noqa: E402
from dashboard.ui import i18n as ui_i18n  # noqa: E402
from dashboard.ui import state  # noqa: E402

SETTINGS = json.loads(os.environ["LEGO_FLOOR_BENCH"])
CONFIG = ServerConfig.from_dict(SETTINGS["config"])
REPORT = StartupReport(
    config=SETTINGS["config"],
    command=[],
    started_at=time.time(),
    backend="cpu",
    kv_cache_tokens=SETTINGS.get("kv_cache_tokens"),
)


class AttachedServer:
    def snapshot(self) -> ServerSnapshot:
        return ServerSnapshot(status="ready", config=CONFIG, base_url=SETTINGS["base_url"], report=REPORT)


state.get_manager = AttachedServer  # type: ignore[assignment]
ui_i18n.setup_language()


@st.fragment(run_every=floor_ui.REFRESH_S)
def timed_floor() -> None:
    started = time.perf_counter()
    floor_ui.floor_body("bench")
    took_ms = (time.perf_counter() - started) * 1000
    latest = floor_ui.get_sampler().latest()
    with open(SETTINGS["log"], "a", encoding="utf-8") as log:
        log.write(f"{time.time():.3f} {took_ms:.2f} {latest.taken_at if latest else 0:.3f}\n")


st.title("Live floor benchmark")
timed_floor()
