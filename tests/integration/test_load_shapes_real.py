"""Load shapes, goodput, the sweep, the three first-token clocks and attach mode against a real vLLM.

One real server for the whole module (the `real_server` fixture), started with an API key so attach
mode is tested the way an ops team meets a production server: the key only in an environment variable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.engine import models, presets
from dashboard.engine.server import ServerManager
from dashboard.history.store import HistoryStore
from dashboard.measure import loadgen
from dashboard.measure.attach import attach
from dashboard.measure.loadgen import LatencyLimits, LoadPlan, Workload

pytestmark = [pytest.mark.server, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-shapes-test-7d1e"
KEY_ENV = "LEGO_SHAPES_TEST_KEY"
CLOCK_NOISE_MS = 5.0


@pytest.fixture(scope="module")
def server(real_server) -> ServerManager:
    manager = real_server({"max_model_len": 1024, "api_key": KEY})
    warm = Workload.from_request(presets.get("pika-json").request)
    result = loadgen.run_load(
        manager.base_url, manager.served_name, warm, LoadPlan(concurrency=1, requests=1), api_key=KEY
    )
    assert result.ok == 1, result.error_kinds
    return manager


def _pika() -> Workload:
    return Workload.from_request(presets.get("pika-json").request, label="pika-json")


def _run(server: ServerManager, plan: LoadPlan, **kwargs) -> loadgen.LoadResult:
    return loadgen.run_load(server.base_url, server.served_name, _pika(), plan, api_key=KEY, **kwargs)


@pytest.mark.parametrize(
    "plan",
    [
        LoadPlan.of_shape("constant", rate=4.0, requests=3),
        LoadPlan.of_shape("poisson", rate=4.0, requests=3, seed=2),
        LoadPlan.of_shape("throughput", requests=4),
    ],
    ids=["constant", "poisson", "throughput"],
)
def test_every_shape_serves_all_its_requests_on_the_real_server(server, plan):
    result = _run(server, plan)
    assert (result.sent, result.ok, result.errors) == (plan.requests, plan.requests, 0), result.error_kinds
    assert result.shape == plan.shape
    assert all(t.first_byte_ms <= t.ttft_ms <= t.e2e_ms for t in result.timings)


def test_three_clocks_see_the_same_requests_and_vllms_clock_is_the_shortest(server):
    result = _run(server, LoadPlan(concurrency=2, requests=4), watch_metrics=True)
    clocks = result.clocks
    assert clocks is not None, "the real server's /metrics did not answer"
    print(json.dumps(clocks, indent=1))
    assert clocks["server_count"] == clocks["client_count"] == 4
    assert clocks["first_byte_mean_ms"] <= clocks["first_content_mean_ms"]
    # vLLM's clock starts after HTTP, parsing and tokenizing: it never runs longer than ours
    assert clocks["server_mean_ms"] <= clocks["first_content_mean_ms"] + CLOCK_NOISE_MS
    assert clocks["client_over_server_ms"] > -CLOCK_NOISE_MS
    assert clocks["queue_mean_ms"] is not None and clocks["queue_mean_ms"] >= 0
    assert result.waiting, "the waiting queue was never sampled"


def test_goodput_follows_the_users_limits(server):
    generous = _run(server, LoadPlan(concurrency=2, requests=3, limits=LatencyLimits(e2e_ms=600_000)))
    impossible = _run(server, LoadPlan(concurrency=2, requests=3, limits=LatencyLimits(ttft_ms=0.01)))
    assert generous.goodput == 1.0 and generous.goodput_per_s and generous.goodput_per_s > 0
    assert impossible.goodput == 0.0


def test_warmup_seconds_leave_the_first_requests_out(server):
    result = _run(server, LoadPlan.of_shape("constant", rate=3.0, requests=5, warmup_s=0.5))
    assert result.warmup_excluded >= 1
    assert result.measured == result.sent - result.warmup_excluded - result.cooldown_excluded
    assert result.ttft_ms.n == result.measured


def test_a_short_sweep_goes_from_one_at_a_time_to_all_at_once_then_rates(server):
    steps = loadgen.run_sweep(
        server.base_url, server.served_name, _pika(), requests_per_step=4, rates=2, api_key=KEY
    )
    for step in steps:
        print(step.kind, step.rate, step.result.requests_per_s, step.oversaturated, step.reason)
    assert [s.kind for s in steps[:2]] == ["synchronous", "throughput"]
    assert 3 <= len(steps) <= 4 and all(s.kind == "rate" for s in steps[2:])
    slowest, fastest = steps[0].result.requests_per_s, steps[1].result.requests_per_s
    if fastest > slowest:  # batching paid off: the rates lie strictly between the two ends
        assert all(slowest < s.rate < fastest for s in steps[2:])
    else:  # a machine too busy to batch: one rate, the one-at-a-time one
        assert [s.rate for s in steps[2:]] == [slowest]
    assert all(s.result.errors == 0 for s in steps)


# ---------------------------------------------------------------------------------------------- attach


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEGO_FACTORY_HOME": str(home), KEY_ENV: KEY}
    return subprocess.run(
        [sys.executable, "-m", "dashboard", "--lang", "en", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("attach-home")
    shared_models = models.embedded_dir().parent
    if shared_models.exists():
        (folder / "models").symlink_to(shared_models)
    return folder


def test_attach_finds_the_served_model_with_the_key_from_the_environment(server):
    target = attach(server.base_url, KEY_ENV, environ={KEY_ENV: KEY})
    assert target.served_name == server.served_name
    assert target.max_model_len == 1024


def test_cli_bench_measures_a_server_it_did_not_start_and_keeps_it_in_the_history(server, home):
    out = home / "attached.json"
    done = _cli(
        home, "bench", "--url", server.base_url, "--api-key-env", KEY_ENV, "--preset", "pika-json",
        "--shape", "constant", "--rate", "3", "--requests", "3", "--ttft-limit", "60000", "--json", str(out),
    )  # fmt: skip
    print(done.stdout[-3000:], done.stderr[-2000:])
    assert done.returncode == 0, done.stderr[-2000:]
    assert KEY not in done.stdout + done.stderr + out.read_text(encoding="utf-8")
    report = json.loads(out.read_text(encoding="utf-8"))
    (level,) = report["levels"]
    assert (level["shape"], level["rate"], level["ok"], level["errors"]) == ("constant", 3.0, 3, 0)
    assert level["goodput"] == 1.0
    assert level["clocks"]["server_count"] == 3
    assert "vLLM's own" in done.stdout
    assert server.snapshot().status == "ready"  # attach never restarts or stops the server
    run = HistoryStore(home / "history.sqlite3").get_run(report["history_run_id"])
    assert run.backend == "attached" and run.status == "done"
    assert run.config["attached_url"] == server.base_url and KEY not in json.dumps(run.config)


def test_cli_probe_attached_gives_requests_a_latency_budget_and_metrics(server, home):
    out = home / "probe.json"
    done = _cli(
        home, "probe", "--url", server.base_url, "--api-key-env", KEY_ENV, "--preset", "pika-json",
        "--requests", "2", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [r["ok"] for r in report["requests"]] == [True, True]
    assert report["budget"]["client_e2e_ms"] > 0
    assert report["metrics"] is not None
    assert KEY not in out.read_text(encoding="utf-8")
