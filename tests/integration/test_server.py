"""ServerManager against real vLLM servers: refusals, phases, restart, crash, failed start, cleanup.

One server per module (started at max-model-len 1024, restarted at 2048, then killed); one
deliberately failing start. Ports 8120-8129.
"""

from __future__ import annotations

import os
import signal
import socket

import httpx
import pytest

from dashboard.engine.config import ServerConfig, default_config
from dashboard.engine.server import ServerManager
from tests.conftest import SERVER_START_TIMEOUT_S, alive, server_processes_in, wait_for
from tests.integration.backend import ON_CPU, kv_tokens_hold

pytestmark = [pytest.mark.server, pytest.mark.timeout(1200)]

PORT = 8120
REFUSED_PORT = 8121
BUSY_PORT = 8122
FAILING_PORT = 8123


def served_max_model_len(manager: ServerManager) -> int:
    response = httpx.get(manager.base_url + "/v1/models", timeout=10, trust_env=False)
    response.raise_for_status()
    return int(response.json()["data"][0]["max_model_len"])


def raw_config(manager: ServerManager, **changes) -> ServerConfig:
    """A config with values written as-is (not checked by with_values), as a stale session might hold."""
    base = default_config(manager.backend).with_values({"port": REFUSED_PORT})
    return ServerConfig(base.model, {**base.values, **changes})


def assert_nothing_launched(manager: ServerManager, tmp_path) -> None:
    snapshot = manager.snapshot()
    assert snapshot.status == "stopped"
    assert snapshot.pid is None
    assert not list(tmp_path.glob("logs/*.log"))
    assert server_processes_in(tmp_path) == []


@pytest.mark.parametrize(
    ("changes", "flag", "code"),
    [
        ({"max_num_seqs": 0}, "max_num_seqs", "out_of_range"),
        ({"max_model_len": 16384}, "max_model_len", "max_model_len_above_model"),
        ({"gpu_memory_utilization": 0.5}, "gpu_memory_utilization", "no_gpu_memory"),
    ],
)
def test_impossible_config_is_refused_with_its_flag_and_nothing_is_launched(tmp_path, changes, flag, code):
    manager = ServerManager(tmp_path, backend="cpu")
    report = manager.start(raw_config(manager, **changes))
    assert report.error is not None
    assert (report.error.code, report.error.flag) == (code, flag)
    assert report.ready_s is None
    assert manager.snapshot().problem == report.error
    assert_nothing_launched(manager, tmp_path)


def test_busy_port_is_refused_with_a_free_port_suggested_and_nothing_is_launched(tmp_path):
    manager = ServerManager(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", BUSY_PORT))
        taken.listen()
        report = manager.start(default_config(manager.backend).with_values({"port": BUSY_PORT}))
    assert (report.error.code, report.error.flag) == ("port_busy", "port")
    assert report.error.params["port"] == BUSY_PORT
    assert isinstance(report.error.suggestion, int) and report.error.suggestion != BUSY_PORT
    assert_nothing_launched(manager, tmp_path)


def test_real_start_reports_its_phases_numbers_and_serves_its_max_model_len(real_server):
    manager = real_server({"max_model_len": 1024}, port=PORT)
    snapshot = manager.snapshot()
    report = snapshot.report
    assert snapshot.status == "ready" and report.ok
    phases = [entry["phase"] for entry in report.startup]
    assert phases[0] == "process_start" and phases[-1] == "ready"
    for expected in ("args_parsed", "engine_init", "weights_loaded", "kv_cache", "engine_ready", "api_ready"):
        assert expected in phases
    seconds = [entry["seconds"] for entry in report.startup]
    assert seconds == sorted(seconds)
    assert report.ready_s == pytest.approx(seconds[-1], abs=0.01)
    assert kv_tokens_hold(report.kv_cache_tokens, 1024)
    assert report.max_concurrency == pytest.approx(report.kv_cache_tokens / 1024, abs=0.01)
    if ON_CPU:
        assert report.kv_cache_gib == 1.0  # VLLM_CPU_KVCACHE_SPACE
    assert "--max-model-len 1024" in report.command_text
    assert served_max_model_len(manager) == 1024
    assert snapshot.pid is not None and os.path.exists(snapshot.log_path)


def test_apply_while_busy_is_refused_and_a_restart_serves_the_new_length(real_server):
    manager = real_server({"max_model_len": 1024}, port=PORT)
    old_processes = manager.process_tree()
    assert len(old_processes) >= 2  # the API server and the engine core at least
    new_config = manager.snapshot().config.with_values({"max_model_len": 2048})

    assert manager.apply(new_config) is True
    assert manager.apply(new_config) is False
    assert manager.is_busy()
    assert wait_for(lambda: not manager.is_busy(), SERVER_START_TIMEOUT_S, every=0.5)

    snapshot = manager.snapshot()
    assert snapshot.status == "ready", snapshot.problem
    assert snapshot.config.get("max_model_len") == 2048
    assert served_max_model_len(manager) == 2048
    assert alive(old_processes) == []  # the restart stopped every process of the old server


def test_killed_api_server_is_reported_as_a_crash_and_leaves_no_process(real_server, tmp_path):
    manager = real_server({"max_model_len": 2048}, port=PORT)
    processes = manager.process_tree()
    api_server = manager.snapshot().pid
    assert len(processes) >= 2

    os.kill(api_server, signal.SIGKILL)  # the engine core would live on if nobody cleaned up

    assert wait_for(lambda: manager.snapshot().status == "failed", 60)
    snapshot = manager.snapshot()
    assert snapshot.problem is not None and snapshot.problem.code == "server_crashed"
    assert snapshot.problem.params["exit_code"] == -signal.SIGKILL
    assert wait_for(lambda: not manager.is_busy(), 60)
    assert alive(processes) == []
    manager.stop()
    assert manager.snapshot().status == "stopped"


def test_start_that_fails_for_real_gives_the_root_cause_the_flag_and_vllms_length(tmp_path):
    manager = ServerManager(tmp_path)
    config = default_config(manager.backend).with_values(
        {"port": FAILING_PORT, "kv_cache_memory_gib": 0.0625, "max_model_len": 8192}
    )
    report = manager.start(config, timeout=SERVER_START_TIMEOUT_S)

    problem = report.error
    assert not report.ok and problem is not None
    assert problem.code == "kv_cache_too_small"
    assert problem.flag == "max_model_len"
    assert isinstance(problem.suggestion, int) and 0 < problem.suggestion < 8192
    assert f"estimated maximum model length is {problem.suggestion}" in problem.root_cause
    assert "See root cause above" not in problem.root_cause
    assert manager.snapshot().status == "failed"
    assert report.log_tail and os.path.exists(report.log_path)
    assert wait_for(lambda: server_processes_in(tmp_path) == [], 30)
    manager.stop()
