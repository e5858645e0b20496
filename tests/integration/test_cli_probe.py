"""`python -m dashboard probe` end to end: a real server for the pika-json preset, real requests,
a JSON report, and no process left behind. Ports 8130-8139."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.engine import hardware, presets
from dashboard.engine.carousel import Carousel
from tests.conftest import server_processes_in, wait_for
from tests.integration.backend import kv_tokens_hold

REPO = Path(__file__).resolve().parents[2]
PORT = 8130


def run_cli(*words: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dashboard", *words],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.server
@pytest.mark.timeout(700)
def test_pika_json_probe_answers_with_a_known_emotion_and_a_boolean_learn_score(tmp_path):
    report_path = tmp_path / "probe.json"
    workdir = tmp_path / "runs"
    result = run_cli(
        "--lang", "en", "probe", "--preset", "pika-json", "--set", f"port={PORT}", "--requests", "2",
        "--json", str(report_path), "--workdir", str(workdir),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["error"] is None
    assert f"--port {PORT}" in report["command_text"]
    assert "--max-model-len 2048" in report["command_text"]
    assert report["ready_s"] > 0
    assert report["server_start"] == {"kind": "cold", "ready_s": report["ready_s"]}
    assert [entry["phase"] for entry in report["startup"]][-1] == "ready"
    assert kv_tokens_hold(report["kv_cache_tokens"], 2048)
    assert report["max_concurrency"] == pytest.approx(report["kv_cache_tokens"] / 2048, abs=0.01)
    assert len(report["requests"]) == 2
    for request in report["requests"]:
        assert request["ok"], request["error"]
        answer = json.loads(request["text"])
        assert answer["emotion"] in presets.pika_emotions()
        assert isinstance(answer["learn_score"], bool)
        assert request["prompt_tokens"] > 400  # the seed's long system prompt
        assert request["ttft_ms"] > 0 and request["e2e_ms"] >= request["ttft_ms"]
        assert request["itl_ms"] is not None and request["completion_tokens"] > 1

    machine = report["environment"]  # the figures hold for this machine: the report names it
    assert machine["vllm_version"] == hardware.vllm_version() and machine["backend"] == report["backend"]
    assert machine["hardware"]["cpu"] == hardware.cpu_model() and machine["hardware"]["cpu_cores"] >= 1

    assert "Ready for orders" in result.stdout  # phases were printed as they happened
    assert "Median" in result.stdout
    assert server_processes_in(workdir) == []


def test_probe_of_a_refused_config_exits_non_zero_with_the_flag_in_the_report(tmp_path):
    report_path = tmp_path / "probe.json"
    workdir = tmp_path / "runs"
    result = run_cli(
        "--lang", "en", "probe", "--preset", "pika", "--set", "max_model_len=100000",
        "--json", str(report_path), "--workdir", str(workdir),
    )  # fmt: skip
    assert result.returncode == 1
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["error"]["code"] == "max_model_len_above_model"
    assert report["error"]["flag"] == "max_model_len"
    assert report["error"]["suggestion"] == 8192
    assert report["requests"] == []
    assert not list(workdir.glob("logs/*.log"))  # nothing was launched


def test_unknown_flag_in_set_is_a_usage_error(tmp_path):
    result = run_cli(
        "--lang", "en", "probe", "--preset", "pika", "--set", "warp_speed=9", "--json", str(tmp_path / "x")
    )
    assert result.returncode == 2
    assert "warp_speed" in result.stderr
    assert not (tmp_path / "x").exists()


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("prepare-model", "serve", "probe"):
        assert command in result.stdout


def start_serve(workdir: Path, port: int) -> subprocess.Popen:
    """`serve` in the background, returned once vLLM's engine core process exists."""
    words = [
        "--lang",
        "en",
        "serve",
        "--preset",
        "classroom",
        "--set",
        f"port={port}",
        "--workdir",
        str(workdir),
    ]
    cli = subprocess.Popen(
        [sys.executable, "-m", "dashboard", *words],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if not wait_for(lambda: any(p.name().startswith("VLLM") for p in server_processes_in(workdir)), 180):
        cli.kill()
        pytest.fail("the engine core never appeared: " + cli.communicate(timeout=30)[0][-2000:])
    return cli


@pytest.mark.server
@pytest.mark.timeout(300)
def test_serve_terminated_while_starting_leaves_no_process(tmp_path):
    workdir = tmp_path / "runs"
    cli = start_serve(workdir, PORT + 1)
    try:
        cli.send_signal(signal.SIGTERM)
        output, _ = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode != 0  # stopped by a signal, not a finished run
    assert "Process started" in output
    assert server_processes_in(workdir) == []


@pytest.mark.server
@pytest.mark.timeout(300)
def test_server_orphaned_by_a_killed_app_is_reaped_by_the_next_manager(tmp_path):
    workdir = tmp_path / "runs"
    cli = start_serve(workdir, PORT + 2)
    cli.kill()  # SIGKILL: no exit hook runs, the server (its own session) lives on
    cli.communicate(timeout=30)
    assert server_processes_in(workdir)  # orphaned for real

    Carousel(workdir, use_starter=False)  # a new carousel on the same folder reaps what the dead app left
    assert wait_for(lambda: server_processes_in(workdir) == [], 30)
    assert not list(workdir.glob("slots/*/server.json")) and not (workdir / "starter.json").exists()
