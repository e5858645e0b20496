"""Page tests: the real app file run by Streamlit's AppTest, with the server manager swapped for a small
stand-in where the test is about page logic (the real-server tests live in test_real_server.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.engine.config import ServerConfig
from dashboard.engine.report import ServerSnapshot, StartupReport, mask_config
from dashboard.engine.startup_log import Phase
from dashboard.ui import state

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TIMEOUT_S = 60
# A burst runs a load test in a process of its own and waits for the server's request spans: on a busy
# 2-core machine that alone can take longer than a page's usual minute.
BURST_TIMEOUT_S = 300


@pytest.fixture(autouse=True)
def no_starter_for_page_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page test that builds the app's carousel must not prepare a starter: each would import vLLM
    in a process of its own and keep it, for pages that never start a server."""
    monkeypatch.setenv("LEGO_FACTORY_STARTER", "0")


@dataclass
class StandInManager:
    """Answers like ServerManager: a snapshot, apply() that refuses while busy, stop()."""

    snap: ServerSnapshot = field(default_factory=lambda: ServerSnapshot(status="stopped"))
    applied: list[ServerConfig] = field(default_factory=list)
    stops: int = 0
    api_key: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> ServerSnapshot:
        return self.snap

    def is_busy(self) -> bool:
        return self.snap.busy

    def apply(self, config: ServerConfig, timeout: float = 600, on_phase=None) -> bool:
        if self.snap.busy:
            return False
        self.applied.append(config)
        self.snap = ServerSnapshot(
            status="starting",
            config=config,
            phases=(Phase("process_start", 0.0),),
            started_at=time.time(),
        )
        return True

    def stop(self) -> None:
        self.stops += 1
        self.snap = ServerSnapshot(status="stopped")


def ready_snapshot(config: ServerConfig) -> ServerSnapshot:
    report = StartupReport(
        config=mask_config(config),
        command=["python", "-m", "vllm.entrypoints.openai.api_server", "--max-model-len", "2048"],
        started_at=time.time() - 40,
        backend="cpu",
        ready_s=35.2,
        startup=[
            {"phase": "process_start", "seconds": 0.0, "detail": {}},
            {"phase": "ready", "seconds": 35.2, "detail": {}},
        ],
        kv_cache_tokens=46592,
        max_concurrency=22.75,
        kv_cache_gib=1.0,
        weights_gib=0.25,
        base_url="http://127.0.0.1:8449",
        served_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    return ServerSnapshot(
        status="ready",
        config=config,
        phases=(Phase("process_start", 0.0), Phase("ready", 35.2)),
        report=report,
        base_url="http://127.0.0.1:8449",
        served_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        pid=12345,
        started_at=time.time() - 40,
    )


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> StandInManager:
    stand_in = StandInManager()
    monkeypatch.setattr(state, "get_manager", lambda: stand_in)
    monkeypatch.setattr(state, "get_store", lambda: None)
    monkeypatch.setattr(state, "get_sampler", lambda: None)
    return stand_in


def open_app(lang: str = "en", page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.query_params["lang"] = lang
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Everything a reader sees as text on the page (markdown, captions, alerts, titles, labels)."""
    parts: list[str] = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "warning", "error", "success"):
        parts += [str(element.value) for element in getattr(at, kind)]
    parts += [b.label for b in at.button]
    return "\n".join(parts)
