"""The memory sampler: NVML readings through a fake NVML with two GPUs, the CPU backend, marks, bounds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from dashboard.measure import memory
from dashboard.measure.memory import MemorySampler

GIB = 1024**3


class NVMLError(Exception):
    pass


class FakeNvml:
    """Two GPUs. GPU 0 holds our process (pid given) and a stranger; GPU 1 holds only the stranger."""

    nvmlMemory_v2 = 0x2000028

    def __init__(
        self, our_pid: int, v2: bool = True, per_process: bool = True, stranger: int = 999_999
    ) -> None:
        self.our_pid = our_pid
        self.v2 = v2
        self.per_process = per_process
        self.stranger = stranger
        self.used = [10 * GIB, 3 * GIB]

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"Fake H100"

    def nvmlDeviceGetMemoryInfo(self, handle: int, version=None):
        if version is not None and not self.v2:
            raise NVMLError("Function Not Found")
        return SimpleNamespace(used=self.used[handle], total=80 * GIB, free=80 * GIB - self.used[handle])

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int):
        memory_of = (lambda b: b) if self.per_process else (lambda b: None)
        if handle == 0:
            return [
                SimpleNamespace(pid=self.our_pid, usedGpuMemory=memory_of(6 * GIB)),
                SimpleNamespace(pid=self.stranger, usedGpuMemory=memory_of(2 * GIB)),
            ]
        return [SimpleNamespace(pid=self.stranger, usedGpuMemory=memory_of(1 * GIB))]


@pytest.fixture
def child():
    """A real child process to watch (sleeping python)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_nvml_backend_reports_each_gpu_and_our_share():
    sampler = MemorySampler(root_pid=os.getpid(), nvml=FakeNvml(os.getpid()))
    assert sampler.backend == "nvml"
    sample = sampler.sample_once()
    assert [g.index for g in sample.gpus] == [0, 1]
    assert [g.used_bytes for g in sample.gpus] == [10 * GIB, 3 * GIB]
    assert all(g.total_bytes == 80 * GIB for g in sample.gpus)
    assert [g.process_bytes for g in sample.gpus] == [6 * GIB, 0]  # the stranger's memory is not ours
    assert sample.gpu_process_bytes == 6 * GIB
    assert sample.gpus[0].name == "Fake H100"


def test_process_tree_children_count_on_the_gpu(child):
    fake = FakeNvml(our_pid=child.pid)  # only the child holds GPU memory, we watch its parent
    sample = MemorySampler(root_pid=os.getpid(), nvml=fake).sample_once()
    assert sample.gpus[0].process_bytes == 6 * GIB
    assert sample.process_count >= 2


def test_memory_info_falls_back_to_version_1():
    sample = MemorySampler(root_pid=os.getpid(), nvml=FakeNvml(os.getpid(), v2=False)).sample_once()
    assert [g.used_bytes for g in sample.gpus] == [10 * GIB, 3 * GIB]


def test_unknown_per_process_memory_is_none_not_zero():
    sample = MemorySampler(root_pid=os.getpid(), nvml=FakeNvml(os.getpid(), per_process=False)).sample_once()
    assert sample.gpus[0].process_bytes is None
    assert sample.gpu_process_bytes is None


def test_pids_from_another_namespace_are_unknown_not_zero():
    fake = FakeNvml(our_pid=123_456_789)  # NVML lists host pids, none of them ours
    sample = MemorySampler(root_pid=os.getpid(), nvml=fake).sample_once()
    assert [g.process_bytes for g in sample.gpus] == [None, None]


def test_cpu_backend_measures_the_process_tree_and_the_machine(child):
    sampler = MemorySampler(root_pid=child.pid, backend="cpu")
    assert sampler.backend == "cpu"
    sample = sampler.sample_once()
    assert sample.gpus == ()
    assert sample.process_count == 1
    assert 1_000_000 < sample.process_rss_bytes < 1 * GIB  # a sleeping python: a few MB
    assert 0 < sample.system_used_bytes < sample.system_total_bytes


def test_a_missing_process_gives_no_process_memory():
    sample = MemorySampler(root_pid=None, backend="cpu").sample_once()
    assert sample.process_rss_bytes is None and sample.process_count == 0
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert MemorySampler(root_pid=gone.pid, backend="cpu").sample_once().process_rss_bytes is None


def test_root_pid_may_change_between_samples(child):
    pids = [None]
    sampler = MemorySampler(root_pid=lambda: pids[0], backend="cpu")
    assert sampler.sample_once().process_rss_bytes is None
    pids[0] = child.pid
    assert sampler.sample_once().process_rss_bytes is not None


def test_nvml_requested_without_a_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(memory, "load_nvml", lambda: None)
    with pytest.raises(RuntimeError):
        MemorySampler(backend="nvml")
    assert MemorySampler(backend="auto").backend == "cpu"


def test_timeline_is_bounded_and_keeps_the_newest():
    sampler = MemorySampler(root_pid=None, backend="cpu", capacity=5)
    for _ in range(8):
        sampler.sample_once()
    timeline = sampler.snapshot()
    assert len(timeline.samples) == 5
    assert timeline.samples == tuple(sorted(timeline.samples, key=lambda s: s.t))


def test_marks_join_the_timeline_in_order():
    sampler = MemorySampler(root_pid=None, backend="cpu")
    sampler.mark("restart", "max_num_seqs=4")
    sampler.mark("load_start")
    timeline = sampler.snapshot()
    assert [(m.kind, m.label) for m in timeline.marks] == [("restart", "max_num_seqs=4"), ("load_start", "")]
    assert "marks" in timeline.to_dict()


def test_background_thread_collects_samples_and_stops():
    sampler = MemorySampler(root_pid=os.getpid(), backend="cpu", interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while len(sampler.snapshot().samples) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sampler.stop()
    assert len(sampler.snapshot().samples) >= 3
    assert not sampler.running


def test_peaks_over_the_timeline():
    fake = FakeNvml(os.getpid())
    sampler = MemorySampler(root_pid=os.getpid(), nvml=fake)
    sampler.sample_once()
    fake.used = [20 * GIB, 1 * GIB]
    sampler.sample_once()
    timeline = sampler.snapshot()
    assert timeline.peak_gpu_used_bytes() == [20 * GIB, 3 * GIB]
    assert timeline.peak_process_rss_bytes() > 0


def test_metrics_gauges_are_recorded_when_a_url_is_given(monkeypatch):
    from dashboard.measure import metrics

    text = "vllm:kv_cache_usage_perc 0.5\nvllm:num_requests_running 2\nvllm:num_requests_waiting 1\n"
    monkeypatch.setattr(
        metrics, "try_scrape", lambda url, timeout=5.0: metrics.MetricsSnapshot.from_text(text)
    )
    sample = MemorySampler(root_pid=None, backend="cpu", metrics_url="http://x").sample_once()
    assert (sample.kv_cache_usage, sample.running, sample.waiting) == (0.5, 2, 1)
