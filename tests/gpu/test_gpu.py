"""What the factory claims about GPUs, checked on a real NVIDIA GPU with official vLLM.

Skipped on machines without an NVIDIA GPU; never part of CI. When GPU_RESULTS_DIR is set, each test
also writes the figures it measured there (JSON), for the results report.
"""

from __future__ import annotations

import json
import time

import pytest

from dashboard.engine import hardware, presets
from dashboard.engine.config import ServerConfig, default_config
from dashboard.engine.server import ServerManager
from dashboard.measure import memory, metrics
from dashboard.measure.loadgen import LoadPlan, Workload, run_load
from tests.gpu.results import save_result

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(hardware.gpu_count() == 0, reason="needs an NVIDIA GPU"),
]

GIB = 1024**3
PORT = 8700


def brief_config(**values) -> ServerConfig:
    """The seed's settings: float16, prefix caching, 2,048-token conveyor, 128 lanes."""
    base = {
        "dtype": "float16",
        "gpu_memory_utilization": 0.15,
        "max_model_len": 2048,
        "max_num_seqs": 128,
        "enable_prefix_caching": True,
        "port": PORT,
    }
    return default_config("cuda").with_values(base | values)


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    manager = ServerManager(tmp_path_factory.mktemp("gpu-runs"), backend="cuda")
    yield manager
    manager.close()


def started(manager: ServerManager, config: ServerConfig):
    report = manager.restart(config, timeout=600)
    assert report.ok, report.error.to_dict() if report.error else report.log_tail[-10:]
    return report


def nvml_used_bytes() -> int:
    nvml = memory.load_nvml()
    assert nvml is not None
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    used, _total = memory.nvml_memory(nvml, handle)
    return used


def pika_load(manager: ServerManager, requests: int = 10, json_mode: bool = True, concurrency: int = 1):
    workload = Workload.from_request(presets.get("pika-json").request, json_mode=json_mode)
    plan = LoadPlan(concurrency=concurrency, requests=requests, warmup=3)
    return run_load(manager.base_url, manager.served_name, workload, plan)


def test_nvml_sees_the_memory_of_the_vllm_process_tree(manager):
    report = started(manager, brief_config(enforce_eager=True))
    sampler = memory.MemorySampler(root_pid=manager.snapshot().pid, backend="nvml")
    sample = sampler.sample_once()
    gpu = sample.gpus[0]
    save_result(
        "nvml_process_tree",
        {
            "gpu": gpu.name,
            "used": gpu.used_bytes,
            "total": gpu.total_bytes,
            "process": gpu.process_bytes,
            "weights_gib": report.weights_gib,
            "kv_cache_gib": report.kv_cache_gib,
        },
    )
    assert gpu.total_bytes > 10 * GIB
    assert gpu.process_bytes is not None, "NVML did not attribute GPU memory to the vLLM processes"
    assert gpu.process_bytes > 0.25 * GIB  # at least the weights
    assert gpu.process_bytes <= gpu.used_bytes


def test_memory_utilization_reserves_that_fraction_of_total_memory(manager):
    manager.stop()
    time.sleep(2)
    idle = nvml_used_bytes()
    total = hardware.total_memory_bytes()
    rows = []
    for fraction in (0.10, 0.20, 0.40):
        report = started(manager, brief_config(enforce_eager=True, gpu_memory_utilization=fraction))
        held = nvml_used_bytes() - idle
        rows.append(
            {
                "fraction": fraction,
                "held_bytes": held,
                "held_fraction": held / total,
                "kv_cache_tokens": report.kv_cache_tokens,
                "kv_cache_gib": report.kv_cache_gib,
                "ready_s": report.ready_s,
            }
        )
    save_result("memory_utilization", {"total_bytes": total, "idle_bytes": idle, "rows": rows})
    for row in rows:
        assert abs(row["held_fraction"] - row["fraction"]) <= 0.02, row
    tokens = [row["kv_cache_tokens"] for row in rows]
    assert tokens[0] < tokens[1] < tokens[2]
    # KV cache = fraction x total - a fixed part (weights, activations): the step from 0.20 to 0.40 is
    # twice the step from 0.10 to 0.20.
    step_ratio = (tokens[2] - tokens[1]) / (tokens[1] - tokens[0])
    assert 1.8 <= step_ratio <= 2.2, step_ratio


def test_cuda_graphs_are_captured_without_eager_mode_and_speed_up_each_token(manager):
    results = {}
    for eager in (False, True):
        report = started(manager, brief_config(enforce_eager=eager))
        load = pika_load(manager, requests=10)
        results[eager] = {
            "graph_capture_s": report.phase_seconds("graph_capture"),
            "compile_s": report.phase_seconds("compile"),
            "ready_s": report.ready_s,
            "itl_p50_ms": load.itl_ms.p50,
            "ttft_p50_ms": load.ttft_ms.p50,
            "e2e_p50_ms": load.e2e_ms.p50,
            "errors": load.errors,
        }
    save_result("eager", {"graphs": results[False], "eager": results[True]})
    assert results[False]["graph_capture_s"] is not None
    assert results[True]["graph_capture_s"] is None
    assert results[False]["errors"] == results[True]["errors"] == 0
    assert results[True]["itl_p50_ms"] > results[False]["itl_p50_ms"]


def test_prefix_caching_reuses_the_pika_system_prompt(manager):
    results = {}
    for caching in (True, False):
        started(manager, brief_config(enable_prefix_caching=caching))
        before = metrics.scrape(manager.base_url)
        load = pika_load(manager, requests=10)
        after = metrics.scrape(manager.base_url)
        results[caching] = {
            "hit_rate": metrics.prefix_hit_rate_between(before, after),
            "ttft_p50_ms": load.ttft_ms.p50,
            "e2e_p50_ms": load.e2e_ms.p50,
        }
    save_result("prefix_caching", {"on": results[True], "off": results[False]})
    assert results[True]["hit_rate"] is not None and results[True]["hit_rate"] > 0.5
    assert not results[False]["hit_rate"]


def test_a_start_that_cannot_fit_shows_vllms_largest_length(manager):
    config = brief_config(enforce_eager=True, max_model_len=8192).with_values({"kv_cache_memory_gib": 0.0625})
    report = manager.restart(config, timeout=600)
    save_result("cannot_fit", {"error": report.error.to_dict() if report.error else None})
    assert report.error is not None
    assert report.error.flag == "max_model_len"
    assert isinstance(report.error.suggestion, int) and 0 < report.error.suggestion < 8192
    assert manager.process_tree() == []


def test_pika_json_latency_with_the_briefs_settings_and_cuda_graphs(manager):
    report = started(manager, brief_config())
    load = pika_load(manager, requests=30)
    answers = [json.loads(t.text) for t in load.timings if t.ok]
    save_result(
        "pika_json_brief",
        {
            "ready_s": report.ready_s,
            "startup": report.startup,
            "load": load.to_dict(with_timings=False),
            "answers": answers[:3],
        },
    )
    assert load.errors == 0
    assert all(a["emotion"] in presets.pika_emotions() for a in answers)
