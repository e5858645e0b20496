"""Memory arithmetic shown before a restart, used until dashboard/measure/predict.py provides it.

KV bytes per token = 2 (K and V) x layers x kv_heads x head_dim x bytes per value. vLLM hands out the
KV cache in blocks of 16 tokens, so the token count is rounded down to whole blocks.
No Streamlit here: this is plain arithmetic, kept beside the UI only until the core has its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from dashboard.engine.config import ServerConfig
from dashboard.engine.models import ModelShape

GIB = 1024**3
BLOCK_TOKENS = 16
DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}
# On a GPU, vLLM also keeps working space (activations, CUDA graphs) inside its share; a rough guess.
CUDA_WORKING_SPACE_GIB = 0.6


@dataclass(frozen=True)
class MemoryPrediction:
    weights_gib: float | None
    kv_bytes_per_token: int | None
    kv_cache_gib: float | None
    kv_tokens: int | None
    max_concurrency: float | None  # whole belts of max_model_len that fit in the warehouse
    reserved_gib: float | None  # on a GPU: the share of the card the instance takes


def _dtype_bytes(name: str | None, fallback: str) -> int:
    if not name or name == "auto":
        name = fallback
    return DTYPE_BYTES.get(str(name).removeprefix("torch."), 2)


def predict(
    config: ServerConfig, shape: ModelShape | None, backend: str, total_memory_bytes: int
) -> MemoryPrediction:
    """What the pending config should give, from the model's shape and the flags alone."""
    if shape is None:
        return MemoryPrediction(None, None, None, None, None, None)
    weight_bytes = _dtype_bytes(config.get("dtype"), shape.torch_dtype)
    if config.get("quantization") == "fp8":
        weight_bytes = 1
    weights_gib = shape.parameters * weight_bytes / GIB
    kv_value_bytes = _dtype_bytes(config.get("kv_cache_dtype"), str(config.get("dtype") or shape.torch_dtype))
    if config.get("kv_cache_dtype") in (None, "auto"):
        kv_value_bytes = weight_bytes if config.get("quantization") != "fp8" else 2
    per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * kv_value_bytes
    kv_gib, reserved = _kv_cache_gib(config, backend, total_memory_bytes, weights_gib)
    kv_tokens = None
    concurrency = None
    if kv_gib is not None and per_token > 0:
        kv_tokens = int(kv_gib * GIB // per_token) // BLOCK_TOKENS * BLOCK_TOKENS
        length = config.get("max_model_len") or shape.max_position_embeddings
        concurrency = kv_tokens / length if length else None
    return MemoryPrediction(weights_gib, per_token, kv_gib, kv_tokens, concurrency, reserved)


def _kv_cache_gib(
    config: ServerConfig, backend: str, total_memory_bytes: int, weights_gib: float
) -> tuple[float | None, float | None]:
    explicit = config.get("kv_cache_memory_gib")
    if explicit is not None:
        return float(explicit), None
    if backend != "cuda":
        return None, None
    share = config.get("gpu_memory_utilization")
    share = 0.92 if share is None else float(share)
    reserved = share * total_memory_bytes / GIB
    return max(0.0, reserved - weights_gib - CUDA_WORKING_SPACE_GIB), reserved
