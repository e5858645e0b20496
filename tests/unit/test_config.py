"""Server configs: starting values, the command line, checks before launch, and what needs a restart."""

from __future__ import annotations

import socket

import pytest

from dashboard.engine import config as config_mod
from dashboard.engine.config import (
    ModelFacts,
    ServerConfig,
    argv,
    changed_flags,
    default_config,
    needs_restart,
    parse_assignments,
    validate,
)
from dashboard.engine.report import mask_config, mask_secrets

SMOL = ModelFacts(backend="cpu", gpu_count=0, max_model_len=8192)
GPU = ModelFacts(backend="cuda", gpu_count=1, max_model_len=8192)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unchecked(config: ServerConfig, **changes) -> ServerConfig:
    return ServerConfig(config.model, {**config.values, **changes})


def test_cpu_start_values_size_the_kv_cache_directly_and_skip_compiling():
    config = default_config("cpu")
    assert config.get("kv_cache_memory_gib") == 1.0
    assert config.get("enforce_eager") is True
    assert config.get("dtype") == "bfloat16"
    assert config.get("gpu_memory_utilization") is None


def test_gpu_start_values_use_a_share_of_the_card():
    config = default_config("cuda")
    assert config.get("gpu_memory_utilization") == 0.30
    assert config.get("enforce_eager") is False


def test_argv_is_the_exact_command_that_starts_vllm():
    config = default_config("cpu").with_values({"port": 8123, "max_model_len": 1024})
    words = argv(config, "/models/smol", "HuggingFaceTB/SmolLM2-135M-Instruct", python="py")
    assert words[:5] == ["py", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/smol"]
    text = " ".join(words)
    for expected in (
        "--kv-cache-memory-bytes 1073741824",
        "--max-model-len 1024",
        "--enforce-eager",
        "--dtype bfloat16",
        "--port 8123",
        "--served-model-name HuggingFaceTB/SmolLM2-135M-Instruct",
    ):
        assert expected in text
    assert "--gpu-memory-utilization" not in text
    assert "--api-key" not in text


def test_a_chosen_served_name_wins_over_the_models_own():
    config = default_config("cpu").with_values({"served_model_name": "pika"})
    words = argv(config, "/models/smol", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert words[words.index("--served-model-name") + 1] == "pika"


def test_the_default_config_passes_every_check():
    config = default_config("cpu").with_values({"port": free_port()})
    assert validate(config, SMOL) == []


def test_out_of_range_value_is_refused_with_its_flag_and_the_nearest_allowed_value():
    problems = validate(unchecked(default_config("cpu"), max_num_seqs=5000), SMOL, check_port=False)
    assert [(p.code, p.flag, p.suggestion) for p in problems] == [("out_of_range", "max_num_seqs", 1024)]
    assert "5,000" in problems[0].text("en")
    assert "5.000" in problems[0].text("vi")


def test_unknown_choice_is_refused_with_the_choices_listed():
    problems = validate(unchecked(default_config("cpu"), dtype="int3"), SMOL, check_port=False)
    assert problems[0].code == "bad_choice" and problems[0].flag == "dtype"
    assert "bfloat16" in problems[0].text("en")


def test_length_above_what_the_model_reads_is_refused_with_the_limit_suggested():
    config = default_config("cpu").with_values({"max_model_len": 16384})
    problems = validate(config, SMOL, check_port=False)
    assert [(p.code, p.flag, p.suggestion) for p in problems] == [
        ("max_model_len_above_model", "max_model_len", 8192)
    ]


def test_unknown_model_limit_lets_any_length_through():
    config = default_config("cpu").with_values({"max_model_len": 16384})
    assert validate(config, ModelFacts(backend="cpu"), check_port=False) == []


def test_gpu_share_is_refused_on_a_machine_without_gpu():
    config = default_config("cpu").with_values({"gpu_memory_utilization": 0.5})
    problems = validate(config, SMOL, check_port=False)
    assert [p.flag for p in problems] == ["gpu_memory_utilization"]
    assert validate(default_config("cuda"), GPU, check_port=False) == []


def test_more_gpus_than_the_machine_has_are_refused():
    config = default_config("cuda").with_values({"tensor_parallel_size": 2})
    problems = validate(config, GPU, check_port=False)
    assert [(p.code, p.suggestion) for p in problems] == [("tensor_parallel_too_big", 1)]


def test_open_door_without_key_is_refused_and_a_key_makes_it_fine():
    open_door = default_config("cpu").with_values({"host": "0.0.0.0"})
    assert [p.flag for p in validate(open_door, SMOL, check_port=False)] == ["api_key"]
    assert validate(open_door.with_values({"api_key": "k"}), SMOL, check_port=False) == []


def test_busy_port_is_refused_with_a_free_port_suggested():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        problems = validate(default_config("cpu").with_values({"port": port}), SMOL)
    assert [(p.code, p.flag) for p in problems] == [("port_busy", "port")]
    suggestion = problems[0].suggestion
    assert suggestion is not None and suggestion > port and config_mod.port_is_free(suggestion)


def test_parse_assignments_reads_names_options_and_human_numbers():
    values = parse_assignments(
        ["max_model_len=2k", "--max-num-seqs=64", "enforce-eager=false", "dtype = float16"]
    )
    assert values == {"max_model_len": 2000, "max_num_seqs": 64, "enforce_eager": False, "dtype": "float16"}


def test_parse_assignments_refuses_unknown_flags_and_missing_values():
    with pytest.raises(KeyError):
        parse_assignments(["--no-such-flag=1"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_assignments(["max_model_len"])
    with pytest.raises(ValueError):
        parse_assignments(["max_model_len=-1"])


def test_changed_flags_and_restart_need():
    running = default_config("cpu")
    assert changed_flags(running, running) == []
    assert not needs_restart(running, running)
    longer = running.with_values({"max_model_len": 4096})
    assert changed_flags(running, longer) == ["max_model_len"]
    assert needs_restart(running, longer)
    assert needs_restart(None, running)
    other_model = ServerConfig("HuggingFaceTB/SmolLM2-360M-Instruct", running.values)
    assert changed_flags(running, other_model) == ["model"]


def test_config_survives_a_round_trip_through_a_dict():
    config = default_config("cpu").with_values({"max_model_len": 1024})
    assert ServerConfig.from_dict(config.to_dict()) == config


def test_secrets_are_masked_in_commands_and_configs():
    words = ["py", "--api-key", "hunter2", "--port", "1", "--api-key=hunter3"]
    assert mask_secrets(words) == ["py", "--api-key", "***", "--port", "1", "--api-key=***"]
    masked = mask_config(default_config("cpu").with_values({"api_key": "hunter2"}))
    assert masked["values"]["api_key"] == "***"


def test_model_facts_carry_the_backend_and_the_models_own_length_limit():
    from dashboard.engine import hardware, models

    if not models.embedded_ready():
        pytest.skip("the built-in model is not prepared on this machine")
    facts = hardware.model_facts(default_config("cpu"), backend="cpu")
    assert (facts.backend, facts.gpu_count, facts.max_model_len) == ("cpu", hardware.gpu_count(), 8192)
    assert facts.model == "embedded"
    assert 0.2 * 1024**3 < facts.weights_bytes < 0.3 * 1024**3  # 135 M parameters in 16-bit
    assert facts.memory_bytes == hardware.total_memory_bytes()


def test_machine_without_nvml_gpu_is_a_cpu_backend_with_its_ram(monkeypatch):
    from dashboard.engine import hardware

    monkeypatch.setattr(hardware, "_nvml_gpus", lambda: [])
    monkeypatch.delenv(hardware.BACKEND_ENV, raising=False)
    hardware.detect.cache_clear()
    try:
        machine = hardware.detect()
        assert machine.backend == "cpu" and machine.gpu_count == 0
        assert machine.total_memory_bytes > 1024**3
    finally:
        hardware.detect.cache_clear()


def test_machine_with_gpus_is_cuda_with_their_memory_added_up(monkeypatch):
    from dashboard.engine import hardware

    monkeypatch.setattr(hardware, "_nvml_gpus", lambda: [("H100", 80 * 1024**3), ("H100", 80 * 1024**3)])
    monkeypatch.delenv(hardware.BACKEND_ENV, raising=False)
    hardware.detect.cache_clear()
    try:
        machine = hardware.detect()
        assert (machine.backend, machine.gpu_count, machine.total_memory_gib) == ("cuda", 2, 160.0)
        assert machine.device_names == ("H100", "H100")
    finally:
        hardware.detect.cache_clear()


def test_startup_report_turns_into_plain_json_with_the_problem_in_both_languages():
    import json

    from dashboard.engine.problems import Problem
    from dashboard.engine.report import StartupReport

    problem = Problem(
        "port_busy",
        "Port {port} is already taken by another program. Pick another port.",
        "port",
        {"port": 1},
    )
    report = StartupReport(
        config=mask_config(default_config("cpu")),
        command=mask_secrets(["py", "--api-key", "k"]),
        started_at=1.0,
        backend="cpu",
        error=problem,
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["command_text"] == "py --api-key '***'"
    assert data["error"]["flag"] == "port" and data["error"]["text_en"].startswith("Port 1")
    assert not report.ok


def test_the_brief_s_config_is_the_pika_json_preset_with_float16_and_a_small_share_on_a_gpu():
    from dashboard.engine import presets

    flags = presets.get("pika-json").flags
    gpu, cpu = presets.brief_config("cuda", port=8999), presets.brief_config("cpu")
    assert flags and all(gpu.get(name) == value for name, value in flags.items() if name != "dtype")
    assert (gpu.get("dtype"), gpu.get("gpu_memory_utilization"), gpu.get("port")) == ("float16", 0.15, 8999)
    assert cpu.get("dtype") != "float16" and cpu.get("port") != 8999
