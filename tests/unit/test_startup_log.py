"""The startup-log reader against logs captured from real vLLM 0.32 (CPU) starts.

Fixtures in fixtures/startup_logs/ are real server logs (paths shortened). How each was made:
- cpu_eager_ready.log: --enforce-eager --dtype bfloat16 --max-model-len 1024 --kv-cache-memory-bytes 1 GiB
- cpu_memory_refused.log: no --kv-cache-memory-bytes (default 0.92 of RAM is refused on CPU)
- kv_cache_too_small.log: --max-model-len 8192 --kv-cache-memory-bytes 64 MiB
- no_kv_cache_memory.log: --kv-cache-memory-bytes 1000
- max_model_len_above_model.log: --max-model-len 100000 (SmolLM2 reads 8192)
- port_busy.log: the port was already bound by another program
GPU-only lines (no GPU here) are written from the format strings in vLLM's source, marked below.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.engine import flags
from dashboard.engine.startup_log import (
    PHASE_LABELS,
    PHASES,
    StartupWatcher,
    classify_failure,
    message_of,
    parse_log,
)

LOGS = Path(__file__).parent / "fixtures" / "startup_logs"


def read(name: str) -> str:
    return (LOGS / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------- phases


def test_ready_log_reaches_every_cpu_phase_in_order():
    watcher = parse_log(read("cpu_eager_ready.log"))
    names = [phase.name for phase in watcher.phases()]
    assert names == ["args_parsed", "engine_init", "weights_loaded", "kv_cache", "engine_ready", "api_ready"]


def test_ready_log_numbers_are_read_with_thousands_commas():
    details = parse_log(read("cpu_eager_ready.log")).details()
    assert details["kv_cache_tokens"] == 46592
    assert details["max_concurrency"] == 45.5
    assert details["concurrency_tokens"] == 1024
    assert details["kv_cache_gib"] == 1.0
    assert details["weights_s"] == 1.33
    assert (
        details["weights_gib"] == 0.25
    )  # from the checkpoint size: the CPU log prints no "Model loading took"
    assert details["engine_init_s"] == 2.6
    assert details["vllm_version"] == "0.32.0"


def test_args_line_is_parsed_into_the_values_the_server_received():
    args = parse_log(read("cpu_eager_ready.log")).phase("args_parsed").detail["non_default_args"]
    assert args["max_model_len"] == 1024
    assert args["kv_cache_memory_bytes"] == 1073741824
    assert args["enforce_eager"] is True


def test_ready_log_has_no_failure():
    assert parse_log(read("cpu_eager_ready.log")).failure is None


def test_phases_record_seconds_since_process_start_when_fed_live():
    watcher = StartupWatcher(started_at=100.0)
    watcher.mark("process_start", 100.0, pid=1)
    assert watcher.feed(
        "(APIServer pid=1) INFO 11-24 08:42:58 [api_utils.py:286] non-default args: {}", 109.5
    )
    reached = watcher.feed(
        "(EngineCore pid=2) INFO 11-24 08:43:20 [kv_cache_utils.py:2327] CPU KV cache size: 46,592 tokens, "
        "Maximum concurrency for 2,048 tokens per request: 22.75x",
        130.25,
    )
    assert [p.name for p in reached] == ["kv_cache"]
    assert reached[0].seconds == pytest.approx(30.25)
    assert watcher.phase("args_parsed").seconds == pytest.approx(9.5)


def test_kv_cache_phase_waits_for_its_size_in_tokens_and_later_lines_add_to_it():
    watcher = StartupWatcher(started_at=0.0)
    prefix = "(EngineCore pid=3) INFO 11-24 08:43:20 [x.py:1] "
    memory = watcher.feed(prefix + "Explicitly set (1.0/8.71) GiB for KV cache on node 0.", 5.0)
    size = watcher.feed(prefix + "CPU KV cache size: 46,592 tokens", 6.0)
    concurrency = watcher.feed(prefix + "Maximum concurrency for 2,048 tokens per request: 22.75x", 6.5)
    assert memory == [] and concurrency == []
    assert [p.name for p in size] == ["kv_cache"]
    phase = watcher.phase("kv_cache")
    assert phase.seconds == 6.0
    assert phase.detail["kv_cache_gib"] == 1.0
    assert phase.detail["kv_cache_tokens"] == 46592
    assert phase.detail["max_concurrency"] == 22.75


def test_a_start_that_fails_at_the_kv_check_never_reaches_the_kv_cache_phase():
    watcher = parse_log(read("kv_cache_too_small.log"))
    assert not watcher.reached("kv_cache")
    assert watcher.details()["kv_cache_gib"] == 0.06  # the memory it had, still reported


# Written from vLLM's format strings (gpu_worker.py, gpu_model_runner.py, compilation/monitor.py,
# kv_cache_utils.py): "Model loading took %s GiB memory and %.6f seconds", "Available KV cache
# memory: %s GiB", "%s KV cache size: %s tokens", "Maximum concurrency for %s tokens per request:
# %.2fx" (a second line in older builds), "%storch.compile took %.2f s in total", "Graph capturing
# finished in %.0f secs, took %.2f GiB".
GPU_PREFIX = "(EngineCore_DP0 pid=311) INFO 11-24 07:10:02 [x.py:1] "
GPU_MESSAGES = [
    "Loading weights took 0.21 seconds",
    "Model loading took 0.2534 GiB memory and 1.043210 seconds",
    "torch.compile took 28.13 s in total",
    "Available KV cache memory: 11.27 GiB",
    "GPU KV cache size: 525,136 tokens",
    "Maximum concurrency for 2,048 tokens per request: 256.41x",
    "Graph capturing finished in 3 secs, took 0.45 GiB",
    "init engine (profile, create kv cache, warmup model) took 33.40 s",
]
GPU_LOG = "\n".join(GPU_PREFIX + m for m in GPU_MESSAGES) + "\nINFO:     Application startup complete.\n"


def test_gpu_lines_fill_compile_graph_and_memory_numbers():
    watcher = parse_log(GPU_LOG, backend="cuda")
    details = watcher.details()
    assert [p.name for p in watcher.phases()] == [
        "weights_loaded",
        "kv_cache",
        "compile",
        "graph_capture",
        "engine_ready",
        "api_ready",
    ]
    assert details["weights_gib"] == 0.2534 and details["weights_s"] == pytest.approx(1.04321)
    assert details["compile_s"] == 28.13
    assert details["kv_cache_gib"] == 11.27
    assert details["kv_cache_tokens"] == 525136
    assert details["max_concurrency"] == 256.41
    assert details["graph_capture_s"] == 3 and details["graph_gib"] == 0.45
    assert details["engine_init_s"] == 33.4


def test_older_compile_wording_is_read():
    watcher = parse_log("INFO 05-01 10:00:00 [monitor.py:33] torch.compile takes 61.07 s in total")
    assert watcher.details()["compile_s"] == 61.07


def test_message_text_is_found_without_the_process_level_and_file_tag():
    line = "(EngineCore pid=5352) ERROR 11-24 08:49:30 [core.py:1510] ValueError: boom"
    assert message_of(line) == "ValueError: boom"
    assert message_of("INFO:     Application startup complete.") == "INFO:     Application startup complete."


def test_every_phase_has_a_label():
    assert set(PHASE_LABELS) == set(PHASES)


# ---------------------------------------------------------------- failures


def test_cpu_memory_refusal_points_at_the_kv_cache_size():
    problem = parse_log(read("cpu_memory_refused.log")).problem(1)
    assert problem.code == "cpu_memory_refused"
    assert problem.flag == "kv_cache_memory_gib"
    assert problem.suggestion == 1.0
    assert problem.params["fraction"] == 0.92
    assert problem.root_cause.startswith("ValueError: Available memory on node 0")
    assert flags.get(problem.flag).coerce(problem.suggestion) == 1.0


def test_kv_cache_too_small_offers_vllms_estimated_length():
    problem = parse_log(read("kv_cache_too_small.log")).problem(1)
    assert problem.code == "kv_cache_too_small"
    assert problem.flag == "max_model_len"
    assert problem.suggestion == 2688
    assert problem.params["max_model_len"] == 8192
    assert "estimated maximum model length is 2688" in problem.root_cause
    assert "See root cause above" not in problem.root_cause
    assert "2688" in problem.text("en")


def test_no_cache_memory_names_the_memory_flag_of_the_backend():
    lines = read("no_kv_cache_memory.log").splitlines()
    cpu = classify_failure(lines, backend="cpu")
    gpu = classify_failure(lines, backend="cuda")
    assert cpu.code == gpu.code == "no_kv_cache_memory"
    assert cpu.flag == "kv_cache_memory_gib" and gpu.flag == "gpu_memory_utilization"
    assert cpu.root_cause.startswith("ValueError: No available memory for the cache blocks")


def test_length_above_the_model_limit_suggests_the_limit():
    problem = parse_log(read("max_model_len_above_model.log")).problem(1)
    assert problem.code == "max_model_len_above_model"
    assert problem.flag == "max_model_len"
    assert problem.params == {"value": 100000, "limit": 8192}
    assert problem.suggestion == 8192


def test_busy_port_names_the_port_the_server_was_given():
    problem = parse_log(read("port_busy.log")).problem(1)
    assert problem.code == "port_busy"
    assert problem.flag == "port"
    assert problem.params["port"] == 8105
    assert "Address already in use" in problem.root_cause


def test_gpu_memory_refusal_suggests_a_fraction_that_fits():
    # Format string of vllm/v1/worker/utils.py (request_memory).
    line = (
        "(EngineCore_DP0 pid=9) ERROR 11-24 07:00:00 [core.py:1510] ValueError: Free memory on device "
        "cuda:0 (20.5/79.19 GiB) on startup is less than desired GPU memory utilization (0.92, 72.85 GiB). "
        "Decrease GPU memory utilization or reduce GPU memory used by other processes."
    )
    problem = classify_failure([line], backend="cuda")
    assert problem.code == "gpu_memory_not_free"
    assert problem.flag == "gpu_memory_utilization"
    assert problem.suggestion == 0.23  # 20.5 / 79.19 = 0.259, less a 0.02 margin, rounded down
    assert flags.get("gpu_memory_utilization").coerce(problem.suggestion) == 0.23


def test_cuda_out_of_memory_is_recognised():
    line = (
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total "
        "capacity of 79.19 GiB of which 3.50 MiB is free."
    )
    problem = classify_failure(["Traceback (most recent call last):", line], backend="cuda")
    assert problem.code == "cuda_out_of_memory"
    assert problem.flag == "gpu_memory_utilization"
    assert problem.root_cause == line


def test_unknown_failure_keeps_the_last_real_error_line_not_the_wrapper():
    lines = [
        "(EngineCore pid=1) ERROR 11-24 08:00:00 [core.py:1510] EngineCore failed to start.",
        "(EngineCore pid=1) ERROR 11-24 08:00:00 [core.py:1510] Traceback (most recent call last):",
        '(EngineCore pid=1) ERROR 11-24 08:00:00 [core.py:1510]   File "x.py", line 1, in f',
        "(EngineCore pid=1) ERROR 11-24 08:00:00 [core.py:1510] KeyError: 'rope_scaling'",
        "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
    ]
    problem = classify_failure(lines)
    assert problem.code == "engine_failed"
    assert problem.root_cause == "KeyError: 'rope_scaling'"
    assert problem.flag is None


def test_a_silent_exit_reports_the_exit_code():
    problem = classify_failure(["INFO 11-24 08:00:00 [x.py:1] hello"], exit_code=-9)
    assert problem.code == "server_exited"
    assert problem.params == {"exit_code": -9}


def test_harmless_warnings_are_not_taken_for_errors():
    watcher = parse_log(read("cpu_eager_ready.log"))
    assert watcher.problem(0).code == "server_exited"  # the ulimit warning mentions OSError, but is no error


@pytest.mark.parametrize(
    "name", sorted(p.name for p in LOGS.glob("*.log") if p.name != "cpu_eager_ready.log")
)
def test_every_captured_failure_has_an_english_and_vietnamese_text(name):
    problem = parse_log(read(name)).problem(1)
    data = problem.to_dict()
    assert data["text_en"] and data["text_vi"]
    assert "{" not in data["text_en"]  # every placeholder was filled


def test_cpu_compile_warm_up_counts_as_the_compile_phase_and_long_waits_are_no_error():
    # The first two lines come from a real compiled (not eager) CPU start, which the machine's load
    # stretched past 6 minutes; "Warming up done." is the message cpu_model_runner.py logs at the end.
    worker = "(Worker pid=27042) INFO 11-24 09:17:04 [cpu_model_runner.py:87] "
    engine = "(EngineCore pid=26831) INFO 11-24 09:18:06 [shm_broadcast.py:871] "
    watcher = StartupWatcher(started_at=0.0)
    watcher.feed(worker + "Warming up model for the compilation...", 40.0)
    watcher.feed(
        engine + "No available shared memory broadcast block found in 60 seconds. This typically happens "
        "when some processes are hanging or doing some time-consuming work (e.g. compilation, "
        "weight/kv cache loading).",
        100.0,
    )
    assert not watcher.reached("compile") and watcher.failure is None
    reached = watcher.feed(worker + "Warming up done.", 430.0)
    assert [p.name for p in reached] == ["compile"] and reached[0].seconds == 430.0
    assert watcher.problem(None).code == "server_exited"
