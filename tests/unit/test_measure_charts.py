"""Chart builders of the memory, impact and history pages: what goes in comes out as traces and points."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from dashboard.measure.budget import SEGMENT_LABELS
from dashboard.measure.memory import Mark, MemorySample, MemorySampler
from dashboard.ui import measure_charts as charts

GIB = 1024**3


def cpu_samples(count: int = 5, start: float | None = None) -> list[MemorySample]:
    start = time.time() - count if start is None else start
    return [
        MemorySample(
            t=start + i,
            backend="cpu",
            process_rss_bytes=(2 + i) * GIB,
            process_count=3,
            system_used_bytes=8 * GIB,
            system_total_bytes=24 * GIB,
            kv_cache_usage=0.1 * i,
            running=float(i),
            waiting=0.0,
        )
        for i in range(count)
    ]


class TwoGpuNvml:
    """A fake NVML with two 80 GiB GPUs; the watched process holds 6 GiB on GPU 0 and 4 GiB on GPU 1."""

    nvmlMemory_v2 = 0x2000028

    def __init__(self, pid: int) -> None:
        self.pid = pid

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
        used = (10 * GIB, 5 * GIB)[handle]
        return SimpleNamespace(used=used, total=80 * GIB, free=80 * GIB - used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int):
        return [SimpleNamespace(pid=self.pid, usedGpuMemory=(6 * GIB, 4 * GIB)[handle])]


@pytest.fixture
def two_gpu_samples() -> list[MemorySample]:
    import os

    sampler = MemorySampler(root_pid=os.getpid(), nvml=TwoGpuNvml(os.getpid()))
    return [sampler.sample_once() for _ in range(3)]


def trace(figure, name: str):
    found = [t for t in figure.data if t.name == name]
    assert found, f"no trace named {name!r} in {[t.name for t in figure.data]}"
    return found[0]


# ---------------------------------------------------------------------------------------------- memory


def test_cpu_timeline_shows_the_ram_of_the_vllm_processes_in_gib() -> None:
    figure = charts.memory_timeline_figure(cpu_samples())
    ram = trace(figure, "RAM of the vLLM processes")
    assert list(ram.y) == pytest.approx([2, 3, 4, 5, 6])
    assert not any("GPU" in (t.name or "") for t in figure.data)
    assert "RAM (GiB)" in figure.layout.yaxis.title.text


def test_kv_cache_usage_is_drawn_in_percent_beside_running_and_waiting() -> None:
    figure = charts.memory_timeline_figure(cpu_samples())
    assert list(trace(figure, "KV cache used (%)").y) == pytest.approx([0, 10, 20, 30, 40])
    assert list(trace(figure, "Requests running").y) == [0, 1, 2, 3, 4]
    assert list(trace(figure, "Requests waiting").y) == [0, 0, 0, 0, 0]


def test_two_gpus_give_one_used_line_per_gpu_and_what_vllm_holds_on_each(two_gpu_samples) -> None:
    figure = charts.memory_timeline_figure(two_gpu_samples)
    assert list(trace(figure, "GPU 0: used").y) == pytest.approx([10, 10, 10])
    assert list(trace(figure, "GPU 1: used").y) == pytest.approx([5, 5, 5])
    assert list(trace(figure, "GPU 1: total").y) == pytest.approx([80, 80, 80])
    assert list(trace(figure, "GPU 0: held by vLLM").y) == pytest.approx([6, 6, 6])
    assert "RAM of the vLLM processes" not in [t.name for t in figure.data]


def test_each_gpu_now_gets_its_own_bar_split_into_vllm_others_and_free(two_gpu_samples) -> None:
    figure = charts.gpu_now_figure(two_gpu_samples[-1].gpus)
    assert list(trace(figure, "Held by vLLM").x) == pytest.approx([6, 4])
    assert list(trace(figure, "Used by others (or not known)").x) == pytest.approx([4, 1])
    assert list(trace(figure, "Free").x) == pytest.approx([70, 75])
    assert len(set(trace(figure, "Free").y)) == 2


def test_marks_inside_the_window_become_labelled_lines_and_others_are_left_out() -> None:
    samples = cpu_samples(start=1000.0)
    marks = [Mark(1001.0, "restart", "--max-num-seqs 16"), Mark(1003.0, "load_start"), Mark(5.0, "ready")]
    figure = charts.memory_timeline_figure(samples, marks)
    texts = [a.text for a in figure.layout.annotations]
    assert "Restart: --max-num-seqs 16" in texts
    assert "Load test starts" in texts
    assert not any(t.startswith("Ready") for t in texts)
    assert len([s for s in figure.layout.shapes if s.type == "line"]) == 2


def test_every_visible_text_goes_through_the_translator() -> None:
    figure = charts.memory_timeline_figure(cpu_samples(), [], _=lambda text: "«" + text + "»")
    assert all(t.name.startswith("«") for t in figure.data)
    assert figure.layout.title.text == "«Memory and work, live»"


def test_an_empty_timeline_still_draws() -> None:
    figure = charts.memory_timeline_figure([], [Mark(1.0, "restart")])
    assert all(len(t.x) == 0 for t in figure.data)


# ---------------------------------------------------------------------------------------------- breakdown


def test_measured_rest_is_what_the_processes_hold_beyond_the_reported_parts() -> None:
    measured = charts.measured_breakdown(0.25, 1.0, None, 3.0)
    assert measured.rest == pytest.approx(1.75)
    assert measured.total() == pytest.approx(3.0)
    assert charts.measured_breakdown(0.25, 1.0, None, 0.5).rest == 0.0
    assert charts.measured_breakdown(0.25, 1.0, None, None).rest is None


def test_gap_is_measured_minus_predicted_and_unknown_without_numbers() -> None:
    predicted = charts.Breakdown(weights=0.25, kv_cache=1.0)
    measured = charts.measured_breakdown(0.25, 1.0, None, 3.0)
    assert charts.breakdown_gap(predicted, measured) == pytest.approx(1.75)
    assert charts.breakdown_gap(charts.Breakdown(), measured) is None


def test_breakdown_draws_predicted_beside_measured_and_leaves_unknown_parts_out() -> None:
    predicted = charts.Breakdown(weights=0.25, kv_cache=1.0)
    measured = charts.measured_breakdown(0.26, 1.0, None, 3.0)
    figure = charts.memory_breakdown_figure(predicted, measured)
    names = [t.name for t in figure.data]
    assert names == ["Model bricks (weights)", "Warehouse (KV cache)", "The rest (runtime, libraries)"]
    assert list(trace(figure, "Model bricks (weights)").x) == ["Predicted", "Measured"]
    assert list(trace(figure, "The rest (runtime, libraries)").y) == [None, pytest.approx(1.74)]


# ---------------------------------------------------------------------------------------------- impact


def sweep_rows() -> list[dict]:
    return [
        {"value": "4", "ttft_p50_ms": 95.0, "itl_p50_ms": 30.0, "e2e_p50_ms": 700.0,
         "output_tokens_per_s": 25.0, "ready_s": 35.0, "memory_gib": 2.9},
        {"value": "16", "ttft_p50_ms": 99.0, "itl_p50_ms": 31.0, "e2e_p50_ms": 720.0,
         "output_tokens_per_s": 26.0, "ready_s": 36.0, "memory_gib": 3.0},
    ]  # fmt: skip


def test_a_two_value_sweep_gives_two_points_on_every_metric_chart() -> None:
    figure = charts.sweep_figure(sweep_rows(), "--max-num-seqs")
    points = charts.sweep_points(figure)
    assert len(points) == len(charts.SWEEP_METRICS) == 6
    assert set(points.values()) == {2}
    assert list(trace(figure, "Whole answer, median (ms)").x) == ["4", "16"]


def test_a_value_whose_start_failed_leaves_a_gap_not_a_zero() -> None:
    rows = [*sweep_rows(), {"value": "99999", "ttft_p50_ms": None, "ready_s": None}]
    figure = charts.sweep_figure(rows, "--max-model-len")
    assert charts.sweep_points(figure)["First token, median (ms)"] == 2
    assert list(trace(figure, "First token, median (ms)").y)[-1] is None


def test_levels_chart_plots_the_latencies_against_requests_at_once() -> None:
    rows = [{"value": "1", "ttft_p50_ms": 90, "e2e_p50_ms": 600}, {"value": "4", "ttft_p50_ms": 150}]
    figure = charts.levels_figure(rows)
    assert charts.sweep_points(figure)["Whole answer, median (ms)"] == 1
    assert charts.sweep_points(figure)["First token, median (ms)"] == 2
    assert len(figure.data) == len(charts.LEVEL_METRICS)


def test_latency_budget_is_one_stacked_bar_in_the_order_time_passes() -> None:
    times = (("queue", 0.4), ("prefill", 90.0), ("decode", 560.0), ("server_other", 3.0), ("http", 6.5))
    segments = [(key, SEGMENT_LABELS[key], ms) for key, ms in times]
    figure = charts.latency_budget_figure(segments)
    assert [t.name for t in figure.data] == [SEGMENT_LABELS[k] for k, _label, _ms in segments]
    assert [t.x[0] for t in figure.data] == [0.4, 90.0, 560.0, 3.0, 6.5]
    assert figure.layout.barmode == "stack"
    assert all(t.orientation == "h" for t in figure.data)


def test_the_kv_axis_leaves_room_above_the_peak_and_shows_a_nearly_empty_warehouse() -> None:
    assert charts.kv_axis_top(cpu_samples()) == pytest.approx(52.0)  # peak 40 %
    quiet = [s for s in cpu_samples() if s.kv_cache_usage == 0.0]
    assert charts.kv_axis_top(quiet) == 5.0
    full = [MemorySample(1.0, "cpu", None, 0, 1, 2, kv_cache_usage=0.95)]
    assert charts.kv_axis_top(full) == 100.0


def test_the_same_ready_moment_seen_twice_is_drawn_once() -> None:

    marks = [Mark(100.0, "restart"), Mark(118.0, "ready"), Mark(118.6, "ready"), Mark(160.0, "ready")]
    assert [(m.t, m.kind) for m in charts.distinct_marks(marks)] == [
        (100.0, "restart"),
        (118.0, "ready"),
        (160.0, "ready"),
    ]
