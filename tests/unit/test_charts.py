"""Chart builders: data in, plotly figure out, with every visible text passed through the translator."""

from __future__ import annotations

from dashboard.ui import charts


def shout(text: str) -> str:
    """A stand-in translator that makes translated text easy to spot (placeholders stay intact)."""
    return f"<{text}>"


def test_memory_figure_stacks_weights_and_warehouse_with_translated_labels() -> None:
    figure = charts.memory_prediction_figure(0.25, 1.0, _=shout)
    names = [trace.name for trace in figure.data]
    assert names == ["<Model bricks (weights)>", "<Warehouse (KV cache)>"]
    assert [trace.x[0] for trace in figure.data] == [0.25, 1.0]
    assert figure.layout.barmode == "stack"
    assert figure.layout.title.text == "<Predicted memory>"
    assert figure.layout.xaxis.title.text == "<GiB>"


def test_memory_figure_shows_the_rest_of_a_gpu_share_as_working_space() -> None:
    figure = charts.memory_prediction_figure(0.25, 11.27, reserved_gib=12.0)
    assert [trace.name for trace in figure.data][-1] == "Working space"
    assert abs(figure.data[-1].x[0] - (12.0 - 0.25 - 11.27)) < 1e-9


def test_memory_figure_leaves_out_unknown_numbers_instead_of_drawing_zero() -> None:
    figure = charts.memory_prediction_figure(0.25, None)
    assert [trace.name for trace in figure.data] == ["Model bricks (weights)"]


def test_burst_figure_has_one_bar_per_copy_and_colours_the_queue() -> None:
    figure = charts.burst_ttft_figure([100.0, 120.0, 900.0, 950.0], lanes=2, _=shout)
    bar = figure.data[0]
    assert list(bar.x) == [1, 2, 3, 4]
    assert list(bar.y) == [100.0, 120.0, 900.0, 950.0]
    colours = list(bar.marker.color)
    assert colours[:2] == [charts.LEGO_RED, charts.LEGO_RED]
    assert colours[2:] == [charts.LEGO_ORANGE, charts.LEGO_ORANGE]
    assert figure.layout.yaxis.title.text == "<Time to first token (ms)>"


def test_burst_figure_without_lanes_queues_nobody() -> None:
    figure = charts.burst_ttft_figure([300.0, 100.0])
    assert set(figure.data[0].marker.color) == {charts.LEGO_RED}


def test_startup_phases_figure_turns_moments_into_durations() -> None:
    phases = [("Process started", 0.0), ("Settings read", 16.8), ("Weights loaded", 20.0), ("Ready", 35.5)]
    figure = charts.startup_phases_figure(phases, _=shout)
    bar = figure.data[0]
    assert list(bar.y) == ["Process started", "Settings read", "Weights loaded", "Ready"]
    durations = [round(value, 3) for value in bar.x]
    assert durations == [0.0, 16.8, 3.2, 15.5]
    assert figure.layout.title.text == "<Where the start time went>"


def test_vietnamese_charts_write_decimal_commas() -> None:
    assert charts.memory_prediction_figure(0.25, 1.0, lang="vi").layout.separators == ",."
    assert charts.burst_ttft_figure([1.0], lang="en").layout.separators == ".,"
