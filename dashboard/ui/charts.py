"""Chart builders: plain data in, a plotly figure out. No Streamlit here, so unit tests can call them.

Every builder takes `_`, the translator of the caller's language (identity by default), and passes
its titles, axis labels and units through it, so the same builder draws Vietnamese or English charts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import plotly.graph_objects as go

Translate = Callable[[str], str]

# LEGO brick colours: red, yellow, blue, green, orange, dark blue-grey.
LEGO_RED = "#D01012"
LEGO_YELLOW = "#F2CD37"
LEGO_BLUE = "#006CB7"
LEGO_GREEN = "#00852B"
LEGO_ORANGE = "#FE8A18"
LEGO_DARK = "#1B2A34"
LEGO_GREY = "#A0A5A9"


def _identity(text: str) -> str:
    return text


def separators(lang: str) -> str:
    """Plotly's decimal and thousands marks for a language: vi writes 1.234,5 and en 1,234.5."""
    return ",." if lang == "vi" else ".,"


def _base_layout(figure: go.Figure, title: str, height: int, lang: str = "en") -> go.Figure:
    figure.update_layout(
        separators=separators(lang),
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 48, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": -0.35, "x": 0},
        bargap=0.25,
    )
    return figure


def memory_prediction_figure(
    weights_gib: float | None,
    kv_cache_gib: float | None,
    reserved_gib: float | None = None,
    _: Translate = _identity,
    lang: str = "en",
) -> go.Figure:
    """One stacked bar: the model's bricks (weights), the warehouse (KV cache) and, on a GPU, the rest of
    the reserved share (activations, graphs). Missing numbers are left out, never drawn as zero."""
    parts: list[tuple[str, float, str]] = []
    if weights_gib is not None:
        parts.append((_("Model bricks (weights)"), weights_gib, LEGO_BLUE))
    if kv_cache_gib is not None:
        parts.append((_("Warehouse (KV cache)"), kv_cache_gib, LEGO_YELLOW))
    if reserved_gib is not None:
        used = sum(value for _label, value, _colour in parts)
        rest = reserved_gib - used
        if rest > 0:
            parts.append((_("Working space"), rest, LEGO_GREY))
    figure = go.Figure()
    axis_label = _("Memory")
    for label, value, colour in parts:
        figure.add_trace(
            go.Bar(
                name=label,
                x=[value],
                y=[axis_label],
                orientation="h",
                marker_color=colour,
                hovertemplate="%{x:.2f} GiB<extra>" + label + "</extra>",
                text=[value],
                texttemplate="%{text:.2f}",
                textposition="inside",
            )
        )
    figure.update_layout(barmode="stack", showlegend=True)
    figure.update_xaxes(title_text=_("GiB"), rangemode="tozero")
    figure.update_yaxes(showticklabels=False)
    _base_layout(figure, _("Predicted memory"), height=175, lang=lang)
    figure.update_layout(
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return figure


def burst_ttft_figure(
    ttft_ms: Sequence[float | None], lanes: int | None = None, _: Translate = _identity, lang: str = "en"
) -> go.Figure:
    """One bar per copy of the request sent at once: how long each waited for its first token.
    Copies beyond the open lanes are drawn in orange (they had to queue); failed copies are left empty."""
    copies = list(range(1, len(ttft_ms) + 1))
    values = [value if value is not None else 0.0 for value in ttft_ms]
    order = sorted(range(len(values)), key=lambda i: values[i])
    colours = []
    for rank, _index in enumerate(order):
        queued = lanes is not None and rank >= lanes
        colours.append(LEGO_ORANGE if queued else LEGO_RED)
    by_index = dict(zip(order, colours, strict=True))
    figure = go.Figure(
        go.Bar(
            x=copies,
            y=values,
            marker_color=[by_index[i] for i in range(len(values))],
            hovertemplate=_("Copy {copy}").format(copy="%{x}") + ": %{y:.0f} ms<extra></extra>",
        )
    )
    figure.update_xaxes(title_text=_("Copy of the request"), dtick=1 if len(copies) <= 16 else None)
    figure.update_yaxes(title_text=_("Time to first token (ms)"), rangemode="tozero")
    return _base_layout(figure, _("Time to first token of each copy"), height=320, lang=lang)


def startup_phases_figure(
    phases: Sequence[tuple[str, float]], _: Translate = _identity, lang: str = "en", titled: bool = True
) -> go.Figure:
    """Where the start time went: each phase's own duration (time since the phase before it),
    given (translated label, seconds since launch) in the order they were reached. `titled=False` when
    the box around the chart already carries the same title (no title twice)."""
    labels: list[str] = []
    durations: list[float] = []
    previous = 0.0
    for label, seconds in phases:
        labels.append(label)
        durations.append(max(0.0, seconds - previous))
        previous = max(previous, seconds)
    palette = [LEGO_RED, LEGO_YELLOW, LEGO_BLUE, LEGO_GREEN, LEGO_ORANGE, LEGO_DARK]
    figure = go.Figure(
        go.Bar(
            x=durations,
            y=labels,
            orientation="h",
            marker_color=[palette[i % len(palette)] for i in range(len(labels))],
            hovertemplate="%{y}: %{x:.1f} s<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(title_text=_("Seconds"), rangemode="tozero")
    height = 120 + 28 * max(1, len(labels))
    figure = _base_layout(figure, _("Where the start time went"), height=height, lang=lang)
    if not titled:
        figure.update_layout(title=None, margin={"t": 10})
    return figure
