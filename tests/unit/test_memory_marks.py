"""Every restart in the window gets its mark, and the memory chart's axes fit the data."""

from __future__ import annotations

from types import SimpleNamespace

from dashboard.measure.memory import MemorySample
from dashboard.ui import measure_charts
from dashboard.ui.memory_marks import RestartMarker

GIB = 1024**3


class Sampler:
    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def mark(self, kind: str, label: str = "", t: float | None = None):
        self.marks.append((kind, t))


def snap(status: str, started: float, ready_s: float | None = None):
    report = SimpleNamespace(ready_s=ready_s, started_at=started) if ready_s is not None else None
    return SimpleNamespace(status=status, started_at=started, report=report)


def test_each_restart_and_ready_is_marked_once_but_the_server_found_at_app_start_is_not_a_restart():
    sampler = Sampler()
    marker = RestartMarker(sampler, manager=None)
    marker.check(snap("ready", 100.0, 40.0), now=1000.0)  # already running when the app started
    marker.check(snap("ready", 100.0, 40.0), now=1001.0)
    marker.check(snap("starting", 1010.0), now=1010.5)
    marker.check(snap("starting", 1010.0), now=1030.0)
    marker.check(snap("ready", 1010.0, 41.5), now=1052.0)
    marker.check(snap("ready", 1010.0, 41.5), now=1053.0)
    assert sampler.marks == [("restart", 1010.0), ("ready", 1051.5)]


def test_a_switch_to_a_warm_server_is_marked_when_it_happens():
    sampler = Sampler()
    marker = RestartMarker(sampler, manager=None)
    marker.check(snap("ready", 100.0, 40.0), now=1000.0)
    marker.check(snap("ready", 500.0, 38.0), now=1200.0)  # a server started long ago, now active
    assert sampler.marks[0] == ("switch", 1200.0)  # a switch, not a restart: nothing was started


def sample(t: float, rss_gib: float, running: int = 0) -> MemorySample:
    return MemorySample(
        t=t,
        backend="cpu",
        process_rss_bytes=int(rss_gib * GIB),
        process_count=3,
        system_used_bytes=10 * GIB,
        system_total_bytes=24 * GIB,
        running=running,
        waiting=0,
    )


def test_the_ram_axis_reaches_above_the_line_and_the_requests_axis_counts_whole_requests():
    samples = [sample(1.0, 3.2), sample(2.0, 3.7)]
    figure = measure_charts.memory_timeline_figure(samples)
    assert figure.layout.yaxis.range[1] > 3.7
    requests_axis = figure.layout.yaxis3
    assert requests_axis.range[1] >= 1 and requests_axis.dtick == 1
    assert figure.layout.xaxis.tickformat == "%H:%M:%S"
