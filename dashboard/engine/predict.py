"""Memory arithmetic shown before a restart: what a config should give, from the model's shape alone.

- weights = parameters x bytes per weight (dtype; fp8 = 1 byte, 4-bit quantizations about half a byte)
- KV bytes per token = 2 (K and V) x layers x kv_heads x head_dim x bytes per KV value
  (SmolLM2-135M in 16-bit: 2 x 30 x 3 x 64 x 2 = 23,040 B/token)
- KV cache bytes: the explicit size when given (`kv_cache_memory_gib`, per device); otherwise, on a GPU,
  gpu_memory_utilization x device memory - weights - working space (activations of one forward pass of
  max_num_batched_tokens tokens, CUDA graphs, CUDA libraries); a CPU build needs an explicit size.
- KV tokens = KV bytes / bytes per token, rounded down to whole blocks (16 tokens on GPU, 128 on CPU)
- max concurrency = KV tokens / max_model_len (vLLM prints the same ratio at startup)

With tensor parallelism each of N GPUs holds weights/N and its own KV cache for kv_heads/N heads.
Checked against real starts: 1 GiB on CPU -> 46,592 tokens, 22.75x at 2,048; H100 80 GB at 0.15 ->
525,136 tokens (the working-space estimate is calibrated on that start and is the least certain part).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from dashboard.engine.config import ServerConfig
from dashboard.engine.models import ModelShape
from dashboard.engine.problems import Problem
from dashboard.i18n import N_

GIB = 1024**3
BLOCK_TOKENS = {"cuda": 16, "cpu": 128}
VLLM_DEFAULT_GPU_UTILIZATION = 0.92
DEFAULT_BATCHED_TOKENS = {"cuda": 8192, "cpu": 2048}

DTYPE_BYTES: dict[str, float] = {
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}
QUANTIZED_WEIGHT_BYTES: dict[str, float] = {"fp8": 1, "awq": 0.5, "gptq": 0.5, "bitsandbytes": 0.5}

# Working space a GPU instance keeps beside weights and KV cache. Calibrated on SmolLM2-135M, H100,
# vLLM 0.24, max_num_batched_tokens 8192: 0.15 x 79.65 GiB - 0.25 GiB weights - 11.27 GiB KV = 0.43 GiB.
GPU_FIXED_OVERHEAD_BYTES = int(0.2 * GIB)  # CUDA libraries' workspaces, sampler buffers, graphs
ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN = 49  # peak activations of one forward pass ~ tokens x hidden x 49 B


@dataclass(frozen=True)
class DeviceShare:
    """What one GPU (or the CPU's RAM) holds."""

    index: int
    total_bytes: int
    reserved_bytes: int | None  # GPU: gpu_memory_utilization x total; None when the KV size is explicit
    weights_bytes: int
    working_bytes: int
    kv_cache_bytes: int | None


@dataclass(frozen=True)
class MemoryPrediction:
    backend: str
    weights_bytes: int
    kv_bytes_per_token: int  # for the whole model (all layers, all KV heads)
    kv_cache_bytes: int | None  # all devices together
    kv_tokens: int | None
    block_size: int
    max_model_len: int | None
    max_concurrency: float | None
    working_bytes: int  # per device, GPU only (0 on CPU)
    tensor_parallel_size: int = 1
    devices: tuple[DeviceShare, ...] = ()
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def weights_gib(self) -> float:
        return self.weights_bytes / GIB

    @property
    def kv_cache_gib(self) -> float | None:
        return None if self.kv_cache_bytes is None else self.kv_cache_bytes / GIB

    @property
    def will_start(self) -> bool:
        return not any(p.code in BLOCKING for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = [p.to_dict() for p in self.problems]
        data["weights_gib"] = self.weights_gib
        data["kv_cache_gib"] = self.kv_cache_gib
        data["will_start"] = self.will_start
        return data


BLOCKING = {
    "kv_cache_too_small_for_length",
    "no_room_for_kv_cache",
    "cpu_needs_kv_cache_size",
    "kv_exceeds_ram",
}


# ---------------------------------------------------------------------------------------------- bytes


def dtype_bytes(name: str | None, model_dtype: str = "bfloat16") -> float:
    """Bytes per value of a --dtype / --kv-cache-dtype choice; "auto" follows the model
    (a float32 checkpoint is served in 16-bit by vLLM's "auto")."""
    name = str(name or "auto").removeprefix("torch.")
    if name == "auto":
        model = str(model_dtype or "bfloat16").removeprefix("torch.")
        return 2 if model in ("float32", "float") else DTYPE_BYTES.get(model, 2)
    return DTYPE_BYTES.get(name, 2)


def weight_bytes_per_parameter(config: ServerConfig, shape: ModelShape) -> float:
    quantization = config.get("quantization")
    if quantization in QUANTIZED_WEIGHT_BYTES:
        return QUANTIZED_WEIGHT_BYTES[quantization]
    return dtype_bytes(config.get("dtype"), shape.torch_dtype)


def weights_bytes(config: ServerConfig, shape: ModelShape) -> int:
    return int(shape.parameters * weight_bytes_per_parameter(config, shape))


def kv_value_bytes(config: ServerConfig, shape: ModelShape) -> float:
    kv_dtype = config.get("kv_cache_dtype")
    if kv_dtype not in (None, "auto"):
        return dtype_bytes(kv_dtype)
    return dtype_bytes(config.get("dtype"), shape.torch_dtype)


def kv_bytes_per_token(shape: ModelShape, value_bytes: float = 2, kv_heads: int | None = None) -> int:
    heads = shape.kv_heads if kv_heads is None else kv_heads
    return int(2 * shape.layers * heads * shape.head_dim * value_bytes)


def hidden_size_estimate(shape: ModelShape) -> int:
    """A transformer has about 12 x layers x hidden^2 parameters; close enough for activations."""
    if shape.layers <= 0 or shape.parameters <= 0:
        return 0
    return int(math.sqrt(shape.parameters / (12 * shape.layers)))


def gpu_working_bytes(shape: ModelShape, batched_tokens: int, tensor_parallel_size: int = 1) -> int:
    activations = batched_tokens * hidden_size_estimate(shape) * ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN
    return GPU_FIXED_OVERHEAD_BYTES + activations // max(tensor_parallel_size, 1)


def round_to_blocks(tokens: float, block_size: int) -> int:
    return max(0, int(tokens // block_size) * block_size)


# ---------------------------------------------------------------------------------------------- prediction


def predict(
    config: ServerConfig,
    shape: ModelShape,
    backend: str,
    total_memory_bytes: int,
    gpu_count: int = 1,
    measured_working_bytes: int | None = None,
) -> MemoryPrediction:
    """What the config should give. `total_memory_bytes` is all GPUs together on "cuda" (split evenly
    over `gpu_count`), the machine's RAM on "cpu". `measured_working_bytes` (per GPU) replaces the
    working-space estimate when an earlier start of the same model on the same GPU measured it."""
    tp = max(int(config.get("tensor_parallel_size") or 1), 1) if backend == "cuda" else 1
    block = BLOCK_TOKENS.get(backend, 16)
    value_bytes = kv_value_bytes(config, shape)
    per_token = kv_bytes_per_token(shape, value_bytes)
    heads_per_device = max(1, math.ceil(shape.kv_heads / tp))  # fewer KV heads than GPUs: replicated
    per_token_per_device = kv_bytes_per_token(shape, value_bytes, heads_per_device)
    weights = weights_bytes(config, shape)
    length = config.get("max_model_len") or shape.max_position_embeddings or None

    if backend == "cuda":
        per_device_total = total_memory_bytes // max(gpu_count, 1)
        batched = int(config.get("max_num_batched_tokens") or DEFAULT_BATCHED_TOKENS["cuda"])
        working = measured_working_bytes
        if working is None:
            working = gpu_working_bytes(shape, batched, tp)
        devices = tuple(_gpu_share(i, config, per_device_total, weights // tp, working) for i in range(tp))
    else:
        working = 0
        explicit = config.get("kv_cache_memory_gib")
        kv = int(float(explicit) * GIB) if explicit is not None else None
        devices = (DeviceShare(0, total_memory_bytes, None, weights, 0, kv),)

    kv_per_device = [d.kv_cache_bytes for d in devices]
    if any(v is None for v in kv_per_device):
        kv_total, tokens = None, None
    else:
        kv_total = sum(max(v, 0) for v in kv_per_device)
        tokens = min(round_to_blocks(max(v, 0) / per_token_per_device, block) for v in kv_per_device)
    concurrency = tokens / length if tokens is not None and length else None
    prediction = MemoryPrediction(
        backend=backend,
        weights_bytes=weights,
        kv_bytes_per_token=per_token,
        kv_cache_bytes=kv_total,
        kv_tokens=tokens,
        block_size=block,
        max_model_len=length,
        max_concurrency=concurrency,
        working_bytes=working,
        tensor_parallel_size=tp,
        devices=devices,
    )
    return _with_problems(prediction, config, total_memory_bytes)


def _gpu_share(index: int, config: ServerConfig, total: int, weights: int, working: int) -> DeviceShare:
    explicit = config.get("kv_cache_memory_gib")
    if explicit is not None:
        return DeviceShare(index, total, None, weights, working, int(float(explicit) * GIB))
    share = config.get("gpu_memory_utilization")
    share = VLLM_DEFAULT_GPU_UTILIZATION if share is None else float(share)
    reserved = int(share * total)
    return DeviceShare(index, total, reserved, weights, working, reserved - weights - working)


def utilization_for_kv(kv_bytes_per_device: int, device: DeviceShare) -> float:
    """The gpu_memory_utilization that leaves `kv_bytes_per_device` for the KV cache on this device."""
    return (kv_bytes_per_device + device.weights_bytes + device.working_bytes) / device.total_bytes


# ---------------------------------------------------------------------------------------------- problems


def _with_problems(
    prediction: MemoryPrediction, config: ServerConfig, total_memory_bytes: int
) -> MemoryPrediction:
    problems: list[Problem] = []
    if prediction.backend != "cuda" and prediction.kv_cache_bytes is None:
        problems.append(
            Problem(
                "cpu_needs_kv_cache_size",
                N_("Without a GPU the warehouse needs an explicit size: set the KV cache size (GiB)."),
                "kv_cache_memory_gib",
                {},
                suggestion=1.0,
            )
        )
    if prediction.backend != "cuda" and prediction.kv_cache_bytes is not None:
        needed = prediction.kv_cache_bytes + prediction.weights_bytes
        if needed > total_memory_bytes * 0.9:
            problems.append(
                Problem(
                    "kv_exceeds_ram",
                    N_(
                        "A {kv} GiB warehouse plus {weights} GiB of weights does not fit in this machine's "
                        "{total} GiB of memory."
                    ),
                    "kv_cache_memory_gib",
                    {
                        "kv": _gib(prediction.kv_cache_bytes),
                        "weights": _gib(prediction.weights_bytes),
                        "total": _gib(total_memory_bytes),
                    },
                    suggestion=max(0.0625, round((total_memory_bytes * 0.5) / GIB, 2)),
                )
            )
    problems += _gpu_room_problems(prediction, config)
    problems += _length_problems(prediction)
    return MemoryPrediction(**{**_fields(prediction), "problems": tuple(problems)})


def _gpu_room_problems(prediction: MemoryPrediction, config: ServerConfig) -> list[Problem]:
    if prediction.backend != "cuda" or not prediction.devices:
        return []
    device = prediction.devices[0]
    if device.kv_cache_bytes is None or device.kv_cache_bytes > 0:
        return []
    want = utilization_for_kv(int(0.5 * GIB), device)
    return [
        Problem(
            "no_room_for_kv_cache",
            N_(
                "At {share} of the GPU, weights ({weights} GiB) and working space ({working} GiB) leave no "
                "room for the KV cache. Raise the GPU memory share to about {suggested}."
            ),
            "gpu_memory_utilization",
            {
                "share": config.get("gpu_memory_utilization") or VLLM_DEFAULT_GPU_UTILIZATION,
                "weights": _gib(device.weights_bytes),
                "working": _gib(device.working_bytes),
                "suggested": round(min(want, 0.98), 2),
            },
            suggestion=round(min(want, 0.98), 2),
        )
    ]


def _length_problems(prediction: MemoryPrediction) -> list[Problem]:
    tokens, length = prediction.kv_tokens, prediction.max_model_len
    if tokens is None or length is None or tokens <= 0 or length <= tokens:
        return []
    return [
        Problem(
            "kv_cache_too_small_for_length",
            N_(
                "The warehouse holds {tokens} tokens but one request may need {length}: the server would "
                "refuse to start. Shorten the conveyor to {tokens} or enlarge the warehouse."
            ),
            "max_model_len",
            {"tokens": tokens, "length": length},
            # vLLM's own estimate keeps one block of headroom (seen: 2,816 tokens held, 2,688 suggested).
            suggestion=max(prediction.block_size, tokens - prediction.block_size),
        )
    ]


def _fields(prediction: MemoryPrediction) -> dict[str, Any]:
    return {name: getattr(prediction, name) for name in prediction.__dataclass_fields__}


def _gib(value: int) -> str:
    return f"{value / GIB:.2f}"


def working_bytes_from_start(
    utilization: float, device_total_bytes: int, weights_bytes_per_device: int, kv_cache_bytes_per_device: int
) -> int:
    """The working space a real start used: reserved - weights - KV (feed it to measured_working_bytes)."""
    return int(utilization * device_total_bytes) - weights_bytes_per_device - kv_cache_bytes_per_device
