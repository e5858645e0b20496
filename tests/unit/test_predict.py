"""Memory arithmetic before a restart, checked against what real vLLM starts reported."""

from __future__ import annotations

import json

import pytest

from dashboard.engine.config import ServerConfig, default_config
from dashboard.engine.models import ModelShape
from dashboard.measure import predict
from dashboard.measure.predict import GIB

# SmolLM2-135M-Instruct as models.shape() reads it from the embedded model's files.
SMOL = ModelShape(layers=30, kv_heads=3, head_dim=64, max_position_embeddings=8192, parameters=134_515_008)
H100_BYTES = 81_559 * 1024**2  # what NVML reports for an H100 80GB HBM3
RAM_24_GIB = 24 * GIB


def _cpu(**values) -> ServerConfig:
    return default_config("cpu").with_values(values)


def _cuda(**values) -> ServerConfig:
    base = {"dtype": "float16", "max_model_len": 2048}
    return ServerConfig(model="embedded").with_values({**base, **values})


def test_kv_bytes_per_token_of_smollm2_in_16_bit():
    assert predict.kv_bytes_per_token(SMOL, 2) == 23_040


def test_kv_bytes_per_token_follows_the_kv_dtype():
    prediction = predict.predict(_cuda(kv_cache_dtype="fp8"), SMOL, "cuda", H100_BYTES)
    assert prediction.kv_bytes_per_token == 11_520


def test_one_gib_on_cpu_gives_the_tokens_vllm_reported():
    prediction = predict.predict(_cpu(kv_cache_memory_gib=1.0, max_model_len=2048), SMOL, "cpu", RAM_24_GIB)
    assert prediction.kv_tokens == 46_592  # vLLM 0.32 CPU: "CPU KV cache size: 46,592 tokens"
    assert prediction.max_concurrency == pytest.approx(22.75)  # "Maximum concurrency ... 22.75x"
    assert prediction.block_size == 128
    assert prediction.will_start


def test_h100_at_015_predicts_the_reported_tokens_within_one_percent():
    prediction = predict.predict(_cuda(gpu_memory_utilization=0.15), SMOL, "cuda", H100_BYTES)
    assert prediction.kv_tokens == pytest.approx(525_136, rel=0.01)  # vLLM 0.24 on H100 reported 525,136
    assert prediction.kv_tokens % 16 == 0
    assert prediction.max_concurrency == pytest.approx(256, rel=0.01)
    assert prediction.devices[0].reserved_bytes == int(0.15 * H100_BYTES)


def test_weights_are_parameters_times_dtype_bytes():
    assert predict.predict(_cuda(), SMOL, "cuda", H100_BYTES).weights_bytes == 2 * 134_515_008
    assert predict.predict(_cuda(dtype="float32"), SMOL, "cuda", H100_BYTES).weights_bytes == 4 * 134_515_008
    assert predict.predict(_cuda(quantization="fp8"), SMOL, "cuda", H100_BYTES).weights_bytes == 134_515_008


def test_auto_dtype_serves_a_float32_checkpoint_in_16_bit():
    assert predict.dtype_bytes("auto", "float32") == 2
    assert predict.dtype_bytes("auto", "bfloat16") == 2
    assert predict.dtype_bytes("float32") == 4


def test_explicit_kv_size_wins_on_gpu_too():
    prediction = predict.predict(_cuda(kv_cache_memory_gib=2.0), SMOL, "cuda", H100_BYTES)
    assert prediction.kv_cache_bytes == 2 * GIB
    assert prediction.kv_tokens == (2 * GIB // 23_040) // 16 * 16


def test_tensor_parallel_splits_weights_and_kv_heads_per_gpu():
    shape = ModelShape(
        layers=32, kv_heads=8, head_dim=128, max_position_embeddings=8192, parameters=8_000_000_000
    )
    one = predict.predict(_cuda(gpu_memory_utilization=0.9), shape, "cuda", 2 * H100_BYTES, gpu_count=2)
    two = predict.predict(
        _cuda(gpu_memory_utilization=0.9, tensor_parallel_size=2), shape, "cuda", 2 * H100_BYTES, gpu_count=2
    )
    assert len(two.devices) == 2
    assert two.devices[0].weights_bytes == one.devices[0].weights_bytes // 2
    # each GPU stores half the heads, so the same bytes hold twice the tokens, plus the freed weight room
    assert two.kv_tokens > 2 * one.kv_tokens
    assert two.kv_cache_bytes == sum(d.kv_cache_bytes for d in two.devices)


def test_length_longer_than_the_warehouse_will_not_start():
    prediction = predict.predict(
        _cpu(kv_cache_memory_gib=0.0625, max_model_len=8192), SMOL, "cpu", RAM_24_GIB
    )
    assert prediction.kv_tokens == 2_816
    codes = [p.code for p in prediction.problems]
    assert codes == ["kv_cache_too_small_for_length"]
    assert prediction.problems[0].suggestion == 2_688  # what vLLM itself suggested for this config
    assert prediction.problems[0].flag == "max_model_len"
    assert not prediction.will_start


def test_cpu_without_kv_size_is_flagged():
    config = _cpu().with_values({"kv_cache_memory_gib": None})
    prediction = predict.predict(config, SMOL, "cpu", RAM_24_GIB)
    assert prediction.kv_tokens is None
    assert [p.code for p in prediction.problems] == ["cpu_needs_kv_cache_size"]


def test_cpu_kv_bigger_than_ram_is_flagged():
    prediction = predict.predict(_cpu(kv_cache_memory_gib=30.0), SMOL, "cpu", RAM_24_GIB)
    assert "kv_exceeds_ram" in [p.code for p in prediction.problems]


def test_gpu_share_too_small_for_anything_suggests_a_higher_share():
    shape = ModelShape(
        layers=32, kv_heads=8, head_dim=128, max_position_embeddings=8192, parameters=8_000_000_000
    )
    prediction = predict.predict(_cuda(gpu_memory_utilization=0.1), shape, "cuda", H100_BYTES)
    problem = next(p for p in prediction.problems if p.code == "no_room_for_kv_cache")
    assert problem.flag == "gpu_memory_utilization"
    assert 0.1 < problem.suggestion < 0.98
    fixed = predict.predict(_cuda(gpu_memory_utilization=problem.suggestion), shape, "cuda", H100_BYTES)
    assert fixed.kv_cache_bytes > 0


def test_measured_working_space_replaces_the_estimate():
    working = predict.working_bytes_from_start(0.15, H100_BYTES, 2 * 134_515_008, 525_136 * 23_040)
    prediction = predict.predict(
        _cuda(gpu_memory_utilization=0.15), SMOL, "cuda", H100_BYTES, measured_working_bytes=working
    )
    assert prediction.kv_tokens == 525_136


def test_prediction_is_json_serializable_with_problem_texts():
    prediction = predict.predict(
        _cpu(kv_cache_memory_gib=0.0625, max_model_len=8192), SMOL, "cpu", RAM_24_GIB
    )
    data = json.loads(json.dumps(prediction.to_dict()))
    assert data["kv_tokens"] == 2_816
    assert "2,816" in data["problems"][0]["text_en"]
