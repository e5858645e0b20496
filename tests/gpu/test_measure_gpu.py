"""The load generator on a real NVIDIA GPU: the Pika JSON burst without client-made pauses, three clocks
that agree on what they can, and a sweep to saturation. One server start with the brief's settings.

Skipped on machines without an NVIDIA GPU. With GPU_RESULTS_DIR set, the figures are written there.
Speed targets (0.5 s for the burst) are printed by benchmarks/burst_clients.py, not asserted here.
"""

from __future__ import annotations

import json

import pytest

from dashboard.engine import hardware, presets
from dashboard.engine.config import default_config
from dashboard.engine.server import ServerManager
from dashboard.measure import loadgen
from dashboard.measure.loadgen import LoadPlan, Workload
from tests.gpu.results import save_result

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(hardware.gpu_count() == 0, reason="needs an NVIDIA GPU"),
]

PORT = 8720
PAUSE_MS = 400.0  # the H100 runs showed 440-520 ms pauses between two tokens; the server's own were far less


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    manager = ServerManager(tmp_path_factory.mktemp("gpu-measure"), backend="cuda")
    config = default_config("cuda").with_values(
        {"dtype": "float16", "gpu_memory_utilization": 0.15, "max_model_len": 2048, "max_num_seqs": 128,
         "enable_prefix_caching": True, "port": PORT}
    )  # fmt: skip
    report = manager.start(config, timeout=900)
    assert report.ok, report.error.to_dict() if report.error else report.log_tail[-10:]
    warm = Workload.from_request(presets.get("pika-json").request)
    loadgen.run_load(manager.base_url, manager.served_name, warm, LoadPlan(concurrency=4, requests=8))
    yield manager
    manager.close()


def _pika() -> Workload:
    return Workload.from_request(presets.get("pika-json").request, label="pika-json")


def test_the_pika_json_burst_of_64_has_no_client_made_pauses(server):
    rounds = []
    for _ in range(3):
        result = loadgen.run_load(
            server.base_url, server.served_name, _pika(), LoadPlan.of_shape("throughput", requests=64),
            watch_metrics=True,
        )  # fmt: skip
        gaps = [gap for t in result.timings if t.ok for gap in t.itl_ms]
        rounds.append(
            {"wall_s": result.duration_s, "max_gap_ms": max(gaps), "e2e_p50_ms": result.e2e_ms.p50,
             "ttft_p50_ms": result.ttft_ms.p50, "errors": result.errors, "clocks": result.clocks}
        )  # fmt: skip
        assert result.errors == 0, result.error_kinds
    save_result("burst_64_pika_json", {"rounds": rounds})
    print(json.dumps(rounds, indent=1))
    assert min(r["max_gap_ms"] for r in rounds) < PAUSE_MS


def test_three_clocks_count_the_same_requests_and_vllms_is_the_shortest(server):
    result = loadgen.run_load(
        server.base_url,
        server.served_name,
        _pika(),
        LoadPlan(concurrency=32, requests=64),
        watch_metrics=True,
    )
    clocks = result.clocks
    save_result("first_token_clocks_c32", clocks or {})
    assert clocks is not None
    assert clocks["server_count"] == clocks["client_count"] == 64
    assert clocks["first_byte_mean_ms"] <= clocks["first_content_mean_ms"]
    assert clocks["server_mean_ms"] <= clocks["first_content_mean_ms"] + 2.0


def test_a_sweep_reaches_saturation_or_the_fastest_rate(server):
    steps = loadgen.run_sweep(server.base_url, server.served_name, _pika(), requests_per_step=64, rates=5)
    save_result("sweep_pika_json", {"steps": [s.to_dict() for s in steps]})
    assert [s.kind for s in steps[:2]] == ["synchronous", "throughput"]
    assert all(s.result.errors == 0 for s in steps)
    assert len(steps) >= 3
