"""Fixtures shared by every test folder.

`real_server` starts ONE real vLLM server per test module and hands back its ServerManager:

    pytestmark = pytest.mark.server

    def test_something(real_server):
        manager = real_server({"max_model_len": 1024}, port=8150)   # ready, or the test fails
        httpx.get(manager.base_url + "/v1/models")

Calling it again in the same module with the same config returns the running server as it is;
a different config restarts it. The server is stopped when the module ends, and the fixture checks
that no process of it survived. Pick the port from your own range; without one a free port is used.

Every ServerManager made in a test marked `server` forks its server from one prepared starter shared
by the whole session (as the app's carousel does), so the suite's many starts skip vLLM's imports.
LEGO_TEST_STARTER=0 turns that off: each start is then a cold one.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from dashboard.engine import presets
from dashboard.engine.config import default_config
from dashboard.engine.server import ServerManager
from dashboard.engine.starter import Starter

SERVER_START_TIMEOUT_S = 300.0  # a 2-core machine shared with other servers can take minutes

RealServer = Callable[..., ServerManager]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie waiting for its parent does not count)."""
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.Error:
            continue
    return running


def server_processes_in(workdir: Path) -> list[psutil.Process]:
    """Live processes running in `workdir` or below it: a ServerManager starts its server there (a
    carousel in one folder per server inside its own), and every process of the server (API server,
    engine core, workers) inherits that folder."""
    target = Path(workdir).resolve()
    found = []
    for process in psutil.process_iter(["pid"]):
        if process.pid == os.getpid():
            continue
        try:
            if Path(process.cwd()).resolve().is_relative_to(target):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return alive(found)


def wait_for(condition: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    workdir = tmp_path_factory.mktemp("server")
    state: dict[str, Any] = {}

    def start(
        overrides: Mapping[str, Any] | None = None,
        *,
        port: int | None = None,
        preset: str | None = None,
        timeout: float = SERVER_START_TIMEOUT_S,
    ) -> ServerManager:
        manager = state.get("manager") or ServerManager(workdir)
        state["manager"] = manager
        state["port"] = port or state.get("port") or free_port()
        config = default_config(manager.backend)
        if preset:
            config = config.with_values(presets.get(preset).flags)
        config = config.with_values({"port": state["port"], **dict(overrides or {})})
        snapshot = manager.snapshot()
        if snapshot.status == "ready" and snapshot.config == config:
            return manager
        report = manager.start(config, timeout=timeout)
        if not report.ok:
            problem = report.error.text("en") if report.error else "not ready"
            pytest.fail(f"the real server did not start: {problem}\n" + "\n".join(report.log_tail[-20:]))
        return manager

    yield start
    manager = state.get("manager")
    if manager is not None:
        manager.stop()
        assert server_processes_in(workdir) == [], "a server process survived stop()"


@pytest.fixture(scope="session", autouse=True)
def prepared_starter(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Starter | None]:
    """One prepared starter for the session, launched at once when real-server tests were collected
    (it imports vLLM in the background while the first tests run); every ServerManager made after
    this forks its server from it."""
    wanted = any(item.get_closest_marker("server") for item in request.session.items)
    if not wanted or os.environ.get("LEGO_TEST_STARTER", "1").strip() in ("0", "false", "no"):
        yield None
        return
    starter = Starter(tmp_path_factory.mktemp("starter"))
    starter.launch(dict(os.environ, VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1"))
    ServerManager.shared_starter = starter
    try:
        yield starter
    finally:
        ServerManager.shared_starter = None
        starter.close()
