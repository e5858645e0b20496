"""A real server's startup report and a real request, stored in the history and exported."""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path

import httpx
import pytest

from dashboard.engine.config import default_config
from dashboard.engine.server import ServerManager
from dashboard.history import export
from dashboard.history.store import HistoryStore
from tests.integration.backend import BACKEND

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

SECRET = "history-test-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory):
    """One real server for the module: its config, its startup report and the manager."""
    workdir = tmp_path_factory.mktemp("server")
    config = default_config(BACKEND).with_values(
        {"port": _free_port(), "max_model_len": 512, "kv_cache_memory_gib": 0.25, "api_key": SECRET}
    )
    manager = ServerManager(workdir, backend=BACKEND)
    try:
        report = manager.start(config, timeout=300)
        assert report.ok, report.error.to_dict() if report.error else report.log_tail
        yield config, report, manager
    finally:
        manager.close()


@pytest.fixture(scope="module")
def stored(started, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The start and one real request, written as the app would write them; the file and the run id."""
    config, report, manager = started
    path = tmp_path_factory.mktemp("history") / "history.sqlite3"
    with HistoryStore(path) as store:
        run_id = store.create_run("startup", config.to_dict(), label="real start", backend=BACKEND)
        store.set_startup(run_id, report)
        store.add_row(run_id, _one_request(manager))
        store.finish_run(run_id, {"ready_s": report.ready_s, "kv_cache_tokens": report.kv_cache_tokens})
    return path, run_id


def _one_request(manager: ServerManager) -> dict:
    payload = {
        "model": manager.served_name,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 5,
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {SECRET}"}
    response = httpx.post(
        f"{manager.base_url}/v1/chat/completions", json=payload, headers=headers, timeout=120
    )
    response.raise_for_status()
    usage = response.json()["usage"]
    return {"status": response.status_code, "seconds": response.elapsed.total_seconds(), "usage": usage}


def test_the_startup_report_reads_back_as_the_server_wrote_it(started, stored) -> None:
    _, report, _ = started
    path, run_id = stored
    with HistoryStore(path) as reopened:
        run = reopened.get_run(run_id)

    assert run.status == "done"
    assert run.startup == json.loads(json.dumps(report.to_dict()))
    assert run.summary["kv_cache_tokens"] == report.kv_cache_tokens > 0
    assert run.rows[0].data["status"] == 200
    assert run.rows[0].data["usage"]["completion_tokens"] > 0


def test_exports_of_a_real_start_carry_its_command_and_phases_without_the_key(started, stored) -> None:
    _, report, _ = started
    path, run_id = stored
    with HistoryStore(path) as reopened:
        run = reopened.get_run(run_id)

    command = export.as_command(run)
    markdown = export.as_markdown(run)
    everything = command + markdown + export.as_json(run) + export.as_csv(run)

    words = shlex.split(command)
    assert words[0] == "VLLM_API_KEY=<your-key>"  # the key travels in the environment, as a placeholder
    assert words[1:4] == report.command[:3]
    assert "--max-model-len 512" in command
    assert SECRET not in everything
    assert markdown.count("| ready |") + markdown.count("| Ready for orders |") == 2  # once per language
    assert len(export.as_csv(run).splitlines()) == 2
    print("\n" + command)
    print(f"ready after {report.ready_s:.1f} s, KV cache {report.kv_cache_tokens} tokens")
