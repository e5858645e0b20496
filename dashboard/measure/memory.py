"""Memory over time: a background sampler with a bounded timeline that pages read as snapshots.

Two backends, chosen automatically: "nvml" when NVML finds a GPU (used/total per GPU, plus the memory
the vLLM process tree holds on each GPU), else "cpu" (resident memory of the vLLM process tree and the
machine's used/total RAM). Both also record the process tree's resident memory, and optionally poll the
server's /metrics (KV cache usage, requests running/waiting, prefix-cache hit rate). Events such as a
restart or a load test are added to the same timeline with `mark()`.

The NVML module is injectable (`nvml=`), so tests can hand in a fake with several GPUs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import psutil

from dashboard.measure import metrics

RootPid = Callable[[], int | None]
MetricsUrl = Callable[[], str | None]


class NvmlLike(Protocol):  # the part of pynvml (nvidia-ml-py) the sampler uses
    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> Any: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> Any: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]: ...


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    used_bytes: int
    total_bytes: int
    process_bytes: int | None  # held by the watched process tree on this GPU; None when NVML cannot tell


@dataclass(frozen=True)
class MemorySample:
    t: float  # wall clock
    backend: str  # "nvml" or "cpu"
    process_rss_bytes: int | None  # resident memory of the watched process tree (None: nothing watched)
    process_count: int
    system_used_bytes: int
    system_total_bytes: int
    gpus: tuple[GpuSample, ...] = ()
    kv_cache_usage: float | None = None
    running: float | None = None
    waiting: float | None = None
    prefix_cache_hit_rate: float | None = None

    @property
    def gpu_process_bytes(self) -> int | None:
        """All GPUs together; None when any GPU cannot tell (a partial sum would look too small)."""
        values = [g.process_bytes for g in self.gpus]
        if not values or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)


@dataclass(frozen=True)
class Mark:
    t: float
    kind: str  # e.g. "restart", "ready", "load_start", "load_end"
    label: str = ""


@dataclass(frozen=True)
class MemoryTimeline:
    backend: str
    samples: tuple[MemorySample, ...]
    marks: tuple[Mark, ...]

    def latest(self) -> MemorySample | None:
        return self.samples[-1] if self.samples else None

    def peak_process_rss_bytes(self, since: float = 0.0) -> int | None:
        values = [
            s.process_rss_bytes for s in self.samples if s.t >= since and s.process_rss_bytes is not None
        ]
        return max(values) if values else None

    def peak_gpu_used_bytes(self, since: float = 0.0) -> list[int]:
        """Highest used memory per GPU index."""
        peaks: dict[int, int] = {}
        for sample in self.samples:
            if sample.t < since:
                continue
            for gpu in sample.gpus:
                peaks[gpu.index] = max(peaks.get(gpu.index, 0), gpu.used_bytes)
        return [peaks[i] for i in sorted(peaks)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "samples": [asdict(s) for s in self.samples],
            "marks": [asdict(m) for m in self.marks],
        }


# ---------------------------------------------------------------------------------------------- processes


def process_tree(root_pid: int | None) -> list[psutil.Process]:
    """The process and all its descendants that still exist; [] when it is gone."""
    if root_pid is None:
        return []
    try:
        root = psutil.Process(root_pid)
        return [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def tree_rss_bytes(processes: list[psutil.Process]) -> int:
    """Sum of resident memory (pages shared between the processes are counted once per process)."""
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            total += process.memory_info().rss
    return total


def process_tree_rss(root_pid: int | None) -> int | None:
    processes = process_tree(root_pid)
    return tree_rss_bytes(processes) if processes else None


# ---------------------------------------------------------------------------------------------- NVML


def load_nvml() -> NvmlLike | None:
    """The real pynvml with a GPU behind it, or None (no library, no driver, no GPU)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no GPU to watch
        return None
    if count < 1:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
        return None
    return pynvml


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def nvml_memory(nvml: NvmlLike, handle: Any) -> tuple[int, int]:
    """(used, total) bytes. Version 2 counts reserved memory apart from used; fall back to version 1."""
    version = getattr(nvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            info = nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            return int(info.used), int(info.total)
        except Exception:  # older drivers lack the v2 call
            pass
    info = nvml.nvmlDeviceGetMemoryInfo(handle)
    return int(info.used), int(info.total)


def nvml_process_list(nvml: NvmlLike, handle: Any) -> list[Any] | None:
    try:
        return list(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
    except Exception:  # not supported on this GPU or driver
        return None


def _process_bytes(running: list[Any] | None, pids: set[int], any_match: bool) -> int | None:
    """Memory the watched processes hold on one GPU. None when NVML cannot say: no process list,
    usedGpuMemory None (no permission), or none of our pids on any GPU while others are listed (a
    container whose pid namespace differs from NVML's)."""
    if running is None or not pids:
        return None
    matched = [p for p in running if int(p.pid) in pids]
    if not matched:
        return 0 if any_match or not running else None
    used = [p.usedGpuMemory for p in matched if p.usedGpuMemory is not None]
    return sum(int(u) for u in used) if used else None


def sample_gpus(nvml: NvmlLike, pids: set[int]) -> tuple[GpuSample, ...]:
    readings = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        used, total = nvml_memory(nvml, handle)
        readings.append(
            (index, _text(nvml.nvmlDeviceGetName(handle)), used, total, nvml_process_list(nvml, handle))
        )
    any_match = any(int(p.pid) in pids for *_, running in readings for p in (running or ()))
    return tuple(
        GpuSample(index, name, used, total, _process_bytes(running, pids, any_match))
        for index, name, used, total, running in readings
    )


# ---------------------------------------------------------------------------------------------- sampler


def _as_callable(value: Any) -> Callable[[], Any]:
    return value if callable(value) else (lambda: value)


class MemorySampler:
    """Samples memory a few times per second in a daemon thread; `snapshot()` is safe from any thread.

    `root_pid` and `metrics_url` may be values or callables (the server's pid changes at each restart).
    """

    def __init__(
        self,
        root_pid: int | RootPid | None = None,
        metrics_url: str | MetricsUrl | None = None,
        interval_s: float = 0.25,
        capacity: int = 2400,
        backend: str = "auto",
        nvml: NvmlLike | None = None,
        metrics_every_s: float = 1.0,
    ) -> None:
        self._root_pid = _as_callable(root_pid)
        self._metrics_url = _as_callable(metrics_url)
        self.interval_s = interval_s
        self.metrics_every_s = metrics_every_s
        self._nvml = nvml if nvml is not None else (load_nvml() if backend in ("auto", "nvml") else None)
        if backend == "nvml" and self._nvml is None:
            raise RuntimeError("NVML backend requested but no GPU was found")
        self.backend = "nvml" if self._nvml is not None and backend != "cpu" else "cpu"
        self._samples: deque[MemorySample] = deque(maxlen=capacity)
        self._marks: deque[Mark] = deque(maxlen=max(capacity // 10, 100))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_gauges: dict[str, float | None] = {}
        self._last_scrape = 0.0

    # ------------------------------------------------------------ control

    def start(self) -> MemorySampler:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="lego-memory-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def set_root_pid(self, root_pid: int | RootPid | None) -> None:
        self._root_pid = _as_callable(root_pid)

    def set_metrics_url(self, metrics_url: str | MetricsUrl | None) -> None:
        self._metrics_url = _as_callable(metrics_url)

    def mark(self, kind: str, label: str = "", t: float | None = None) -> Mark:
        event = Mark(time.time() if t is None else t, kind, label)
        with self._lock:
            self._marks.append(event)
        return event

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()
            self._marks.clear()

    def snapshot(self, since: float = 0.0) -> MemoryTimeline:
        with self._lock:
            samples = tuple(s for s in self._samples if s.t >= since)
            marks = tuple(m for m in self._marks if m.t >= since)
        return MemoryTimeline(self.backend, samples, marks)

    # ------------------------------------------------------------ sampling

    def sample_once(self) -> MemorySample:
        """Take one sample now, add it to the timeline and return it."""
        sample = self._measure()
        with self._lock:
            self._samples.append(sample)
        return sample

    def _measure(self) -> MemorySample:
        processes = process_tree(self._root_pid())
        pids = {p.pid for p in processes}
        system = psutil.virtual_memory()
        gpus: tuple[GpuSample, ...] = ()
        if self.backend == "nvml" and self._nvml is not None:
            with contextlib.suppress(Exception):  # a GPU that fell off the bus must not kill the sampler
                gpus = sample_gpus(self._nvml, pids)
        gauges = self._gauges()
        return MemorySample(
            t=time.time(),
            backend=self.backend,
            process_rss_bytes=tree_rss_bytes(processes) if processes else None,
            process_count=len(processes),
            system_used_bytes=int(system.total - system.available),
            system_total_bytes=int(system.total),
            gpus=gpus,
            kv_cache_usage=gauges.get("kv_cache_usage"),
            running=gauges.get("running"),
            waiting=gauges.get("waiting"),
            prefix_cache_hit_rate=gauges.get("prefix_cache_hit_rate"),
        )

    def _gauges(self) -> dict[str, float | None]:
        url = self._metrics_url()
        if not url:
            self._last_gauges = {}
            return {}
        now = time.monotonic()
        if now - self._last_scrape >= self.metrics_every_s:
            self._last_scrape = now
            snap = metrics.try_scrape(url, timeout=min(2.0, max(self.metrics_every_s, 0.5)))
            self._last_gauges = snap.gauges() if snap is not None else {}
        return self._last_gauges

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            with contextlib.suppress(Exception):  # keep sampling whatever one sample ran into
                self.sample_once()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
