"""Chart builders of the results reports: data in, plotly figure out, every visible text translated and
numbers nobody measured left out rather than drawn as zero."""

from __future__ import annotations

from dashboard.ui import results_charts
from dashboard.ui.results_charts import LatencyTarget, UtilizationRow


def shout(text: str) -> str:
    return f"<{text}>"


def test_setting_bars_draw_one_bar_per_setting_in_each_metric_with_translated_titles() -> None:
    settings = [
        ("graphs", {"ttft_p50_ms": 22.3, "itl_p50_ms": 2.6, "e2e_p50_ms": 66.4}),
        ("eager", {"ttft_p50_ms": 47.8, "itl_p50_ms": None, "e2e_p50_ms": 368.0}),
    ]
    figure = results_charts.setting_bars_figure(settings, "title", _=shout)
    assert len(figure.data) == 3
    assert [list(bar.x) for bar in figure.data] == [["graphs", "eager"]] * 3
    assert list(figure.data[1].y) == [2.6, None]
    assert [a.text for a in figure.layout.annotations] == [
        "<First token, median (ms)>",
        "<Time per next token, median (ms)>",
        "<Whole answer, median (ms)>",
    ]


def test_latency_targets_split_the_bar_only_where_the_first_token_is_known() -> None:
    targets = [LatencyTarget("run", 60.0, 20.0), LatencyTarget("wish", 10.0)]
    figure = results_charts.latency_targets_figure(targets, _=shout)
    by_name = {trace.name: list(trace.x) for trace in figure.data}
    assert by_name["<First token>"] == [20.0, None]
    assert by_name["<Rest of the answer>"] == [40.0, None]
    assert by_name["<Whole answer (split not known)>"] == [None, 10.0]


def test_latency_targets_leave_out_a_part_no_target_has() -> None:
    figure = results_charts.latency_targets_figure([LatencyTarget("wish", 10.0)])
    assert [trace.name for trace in figure.data] == ["Whole answer (split not known)"]


def test_utilization_figure_adds_predictions_only_when_given() -> None:
    rows = [UtilizationRow(0.1, 7.96, 8.48, 7.29, 339_856), UtilizationRow(0.2, 15.93, None, 15.21, 708_848)]
    names = [trace.name for trace in results_charts.utilization_memory_figure(rows).data]
    assert "Warehouse tokens, predicted" not in names
    assert results_charts.utilization_memory_figure(rows).data[1].y == (8.48, None)
    predicted = [UtilizationRow(0.1, 7.96, 8.48, 7.29, 339_856, predicted_kv_tokens=339_536)]
    names = [trace.name for trace in results_charts.utilization_memory_figure(predicted).data]
    assert names[-1] == "Warehouse tokens, predicted"


def test_startup_comparison_stacks_each_phase_duration_and_skips_phases_a_start_did_not_reach() -> None:
    starts = [
        ("first", [("started", 0.0), ("settings", 25.0), ("compiled", 60.0), ("ready", 70.0)]),
        ("eager", [("started", 0.0), ("settings", 20.0), ("ready", 50.0)]),
    ]
    figure = results_charts.startup_comparison_figure(starts, _=shout)
    by_name = {trace.name: list(trace.x) for trace in figure.data}
    assert "started" not in by_name  # zero-length everywhere: nothing to draw
    assert by_name["settings"] == [25.0, 20.0]
    assert by_name["compiled"] == [35.0, None]
    assert by_name["ready"] == [10.0, 30.0]
    assert figure.layout.title.text == "<Where the start time went>"
