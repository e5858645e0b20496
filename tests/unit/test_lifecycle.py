"""No leftovers: an orphaned server of an earlier app is reaped, the CLI's records are left alone, old
logs rotate, and SIGHUP stops the servers of a process (a real child process stands in for vLLM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dashboard.engine import lifecycle
from dashboard.engine.server import STATE_FILE


def orphan_record(folder: Path) -> subprocess.Popen:
    """A process in its own session, recorded as a server whose owner is gone."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    state = {
        "owner_pid": 999_999_0,  # no such process
        "owner_started": 0.0,
        "pid": proc.pid,
        "started_at": psutil.Process(proc.pid).create_time(),
        "log_path": str(folder / "logs" / "x.log"),
    }
    (folder / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    return proc


def gone(proc: subprocess.Popen, timeout: float = 10.0) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        return False


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LEGO_FACTORY_HOME", str(tmp_path))
    return tmp_path


def test_the_app_reaps_servers_left_by_an_earlier_app(home: Path):
    app_server = orphan_record(home / "runs" / "app")
    slot_server = orphan_record(home / "runs" / "app" / "slots" / "2")
    legacy_server = orphan_record(home / "runs")
    killed = lifecycle.reap_leftovers()
    assert {app_server.pid, slot_server.pid, legacy_server.pid} <= set(killed)
    assert gone(app_server) and gone(slot_server) and gone(legacy_server)
    assert not (home / "runs" / "app" / STATE_FILE).exists()


def test_the_app_never_reaps_the_clis_servers(home: Path):
    cli_server = orphan_record(home / "runs" / "cli")
    try:
        assert lifecycle.reap_leftovers() == []
        assert cli_server.poll() is None
    finally:
        cli_server.kill()
        cli_server.wait()


def test_the_cli_keeps_its_servers_apart_from_the_app(home: Path):
    from dashboard.cli import common

    assert common.data_dir() == home / "runs" / "cli"
    assert lifecycle.app_runs_dir() == home / "runs" / "app"


def test_old_server_logs_rotate_but_a_running_servers_log_stays(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    paths = []
    for index in range(30):
        path = logs / f"server-{index:03d}.log"
        path.write_text("x")
        os.utime(path, (1000 + index, 1000 + index))
        paths.append(path)
    (tmp_path / STATE_FILE).write_text(json.dumps({"log_path": str(paths[0])}), encoding="utf-8")
    removed = lifecycle.rotate_logs(tmp_path, keep=20)
    assert len(removed) == 9
    assert paths[0].exists()  # oldest, but its server still runs
    assert all(path.exists() for path in paths[10:])


def test_sighup_stops_the_servers_of_the_process(tmp_path: Path):
    """A child Python that owns a ServerManager with a running 'server' (sleep) gets SIGHUP."""
    script = f"""
import signal, subprocess, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from dashboard.engine import lifecycle, server
from dashboard.engine.server import ServerManager

manager = ServerManager({str(tmp_path)!r}, backend="cpu")
class Fake:  # the one launch a real start would make
    pass
proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
print(proc.pid, flush=True)
manager.stop = lambda grace=0: (proc.terminate(), proc.wait())
lifecycle.install_hangup_handler()
time.sleep(60)
"""
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    server_pid = int(child.stdout.readline())
    time.sleep(0.5)
    child.send_signal(signal.SIGHUP)
    child.wait(timeout=30)
    assert not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE


def test_the_carousels_starter_of_a_dead_app_is_reaped_too(home: Path):
    folder = home / "runs" / "app"
    folder.mkdir(parents=True)
    waiting = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", "dashboard.engine.starter"],
        start_new_session=True,
    )
    state = {"owner_pid": 999_999_0, "pid": waiting.pid}
    (folder / "starter.json").write_text(json.dumps(state), encoding="utf-8")
    lifecycle.reap_leftovers()
    assert gone(waiting)


def test_stopping_everything_also_ends_the_prepared_starters(tmp_path, monkeypatch) -> None:
    import subprocess
    import weakref

    from dashboard.engine import server as server_mod
    from dashboard.engine import starter as starter_mod

    prepared = starter_mod.Starter(tmp_path)
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)  # stands in for its Python
    prepared._proc = process
    monkeypatch.setattr(server_mod, "_MANAGERS", weakref.WeakSet())  # nobody else's servers
    monkeypatch.setattr(starter_mod, "_LAUNCHED", weakref.WeakSet([prepared]))
    server_mod.stop_all()
    assert process.wait(timeout=10) == -9  # killed, not left behind
