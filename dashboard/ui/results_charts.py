"""Chart builders of the dated results reports: plain data in, a plotly figure out.

Same rules as `charts` and `measure_charts`: no Streamlit here, every visible text goes through `_`
(the translator of the caller's language, identity by default), `lang` picks the decimal marks, and a
number nobody measured is left out of its chart (a gap, a missing bar), never drawn as zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.engine import flags
from dashboard.i18n import N_
from dashboard.ui.charts import (
    LEGO_BLUE,
    LEGO_DARK,
    LEGO_GREEN,
    LEGO_GREY,
    LEGO_ORANGE,
    LEGO_RED,
    LEGO_YELLOW,
    separators,
)

Translate = Callable[[str], str]
SETTING_COLOURS = (LEGO_BLUE, LEGO_ORANGE, LEGO_GREEN, LEGO_RED, LEGO_DARK, LEGO_YELLOW)
PHASE_COLOURS = (
    LEGO_GREY,
    LEGO_RED,
    LEGO_YELLOW,
    LEGO_BLUE,
    LEGO_ORANGE,
    LEGO_GREEN,
    LEGO_DARK,
    "#7B2D8E",
    "#00A3DA",
)

SWEEP_TITLE = N_("{flag}: {requests} requests, at most {concurrency} at a time")

LATENCY_METRICS: tuple[tuple[str, str], ...] = (
    ("ttft_p50_ms", N_("First token, median (ms)")),
    ("itl_p50_ms", N_("Time per next token, median (ms)")),
    ("e2e_p50_ms", N_("Whole answer, median (ms)")),
)


def _identity(text: str) -> str:
    return text


def _layout(figure: go.Figure, title: str, height: int, lang: str) -> go.Figure:
    figure.update_layout(
        separators=separators(lang),
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        legend={"orientation": "h", "yanchor": "top", "y": -0.15, "x": 0},
        hovermode="closest",
        plot_bgcolor="white",
    )
    figure.update_xaxes(showline=True, linecolor=LEGO_GREY)
    figure.update_yaxes(gridcolor="#E3E6E8", zeroline=True, zerolinecolor=LEGO_GREY)
    return figure


def _short(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# ------------------------------------------------------------------------------------ settings side by side


def setting_bars_figure(
    settings: Sequence[tuple[str, Mapping[str, float | None]]],
    title: str,
    metrics: Sequence[tuple[str, str]] = LATENCY_METRICS,
    _: Translate = _identity,
    lang: str = "en",
) -> go.Figure:
    """One small bar chart per metric, one bar per setting: (setting label, {metric key: number}).
    Each setting keeps its colour in every chart, so "eager" is the same colour everywhere."""
    figure = make_subplots(
        rows=1,
        cols=max(len(metrics), 1),
        subplot_titles=[_(msgid) for _key, msgid in metrics],
        horizontal_spacing=0.07,
    )
    labels = [label for label, _values in settings]
    for column, (key, _msgid) in enumerate(metrics, start=1):
        values = [values.get(key) for _label, values in settings]
        figure.add_trace(
            go.Bar(
                x=labels,
                y=values,
                marker_color=[SETTING_COLOURS[i % len(SETTING_COLOURS)] for i in range(len(labels))],
                text=[_short(v) for v in values],
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{x}: %{y:.3g}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=column,
        )
        top = max((v for v in values if v is not None), default=1.0)
        figure.update_yaxes(range=[0, top * 1.2], row=1, col=column)
    figure.update_xaxes(type="category")
    figure.update_annotations(font_size=13)
    return _layout(figure, title, height=380, lang=lang)


# ------------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class LatencyTarget:
    """One whole-answer time to compare: a measurement, a reference or a wish. `first_token_ms` splits the
    bar into the wait for the first token and the rest of the answer when it is known."""

    label: str
    total_ms: float
    first_token_ms: float | None = None


def latency_targets_figure(
    targets: Sequence[LatencyTarget], title: str | None = None, _: Translate = _identity, lang: str = "en"
) -> go.Figure:
    """Horizontal bars, one per target, top to bottom in the order given; the total is written at the
    end of each bar."""
    labels = [t.label for t in targets]
    first = [t.first_token_ms for t in targets]
    rest = [None if t.first_token_ms is None else t.total_ms - t.first_token_ms for t in targets]
    whole = [t.total_ms if t.first_token_ms is None else None for t in targets]
    figure = go.Figure()
    parts = (
        (_("First token"), first, LEGO_RED, True),
        (_("Rest of the answer"), rest, LEGO_BLUE, True),
        (_("Whole answer (split not known)"), whole, LEGO_GREY, False),
    )
    for name, values, colour, labelled in parts:
        if all(v is None for v in values):
            continue
        figure.add_trace(
            go.Bar(
                name=name,
                y=labels,
                x=values,
                orientation="h",
                marker_color=colour,
                text=[_short(v) if labelled and v is not None and v >= 8 else "" for v in values],
                textposition="inside",
                insidetextanchor="middle",
                hovertemplate="%{x:.1f} ms<extra>" + name + "</extra>",
            )
        )
    for target in targets:
        figure.add_annotation(
            x=target.total_ms,
            y=target.label,
            text=f"<b>{_short(target.total_ms)} ms</b>",
            showarrow=False,
            xanchor="left",
            xshift=6,
        )
    longest = max((t.total_ms for t in targets), default=1.0)
    figure.update_layout(barmode="stack")
    figure.update_xaxes(title_text=_("Milliseconds"), range=[0, longest * 1.15])
    figure.update_yaxes(autorange="reversed")
    heading = _("Whole answer: measured, references and the wish") if title is None else title
    figure = _layout(figure, heading, height=160 + 52 * max(len(targets), 1), lang=lang)
    figure.update_layout(legend={"y": -0.3, "traceorder": "normal"}, margin={"t": 56})
    return figure


# ------------------------------------------------------------------------------------ memory share


@dataclass(frozen=True)
class UtilizationRow:
    """One start at one --gpu-memory-utilization: what the card showed and what vLLM reported."""

    fraction: float
    asked_gib: float  # fraction x the card's total memory
    held_gib: float | None  # the card's used memory with the server ready, minus what it used before
    kv_cache_gib: float | None
    kv_tokens: int | None
    predicted_kv_tokens: int | None = None


def utilization_memory_figure(
    rows: Sequence[UtilizationRow], _: Translate = _identity, lang: str = "en"
) -> go.Figure:
    """Left: memory asked for, held on the card and given to the warehouse, per share. Right: the
    warehouse in tokens, with the prediction made from the model's shape as diamonds when given."""
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=[_("Memory (GiB)"), _("Warehouse (KV cache) in tokens")],
        horizontal_spacing=0.1,
    )
    shares = [f"{row.fraction:.2f}" for row in rows]
    gib_parts = (
        (_("Asked for (share × card)"), [row.asked_gib for row in rows], LEGO_GREY),
        (_("Held on the card"), [row.held_gib for row in rows], LEGO_BLUE),
        (_("Warehouse (KV cache)"), [row.kv_cache_gib for row in rows], LEGO_YELLOW),
    )
    for name, values, colour in gib_parts:
        figure.add_trace(
            go.Bar(
                name=name,
                x=shares,
                y=values,
                marker_color=colour,
                text=[_short(v) for v in values],
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{y:.2f} GiB<extra>" + name + "</extra>",
            ),
            row=1,
            col=1,
        )
    tokens = [row.kv_tokens for row in rows]
    figure.add_trace(
        go.Bar(
            name=_("Warehouse tokens, measured"),
            x=shares,
            y=tokens,
            marker_color=LEGO_ORANGE,
            text=[f"{v:,}" if v is not None else "" for v in tokens],
            textposition="inside",
            insidetextanchor="middle",
            hovertemplate="%{y:,} tokens<extra></extra>",
        ),
        row=1,
        col=2,
    )
    predicted = [row.predicted_kv_tokens for row in rows]
    if any(v is not None for v in predicted):
        figure.add_trace(
            go.Scatter(
                name=_("Warehouse tokens, predicted"),
                x=shares,
                y=predicted,
                mode="markers",
                marker={"symbol": "diamond", "size": 12, "color": LEGO_DARK},
                hovertemplate="%{y:,} tokens<extra></extra>",
            ),
            row=1,
            col=2,
        )
    top_gib = max((v for _n, values, _c in gib_parts for v in values if v is not None), default=1.0)
    top_tokens = max((v for v in tokens + predicted if v is not None), default=1)
    figure.update_yaxes(range=[0, top_gib * 1.15], title_text=_("GiB"), row=1, col=1)
    figure.update_yaxes(range=[0, top_tokens * 1.15], tickformat=",d", row=1, col=2)
    figure.update_xaxes(type="category", title_text=flags.get("gpu_memory_utilization").cli)
    figure.update_layout(barmode="group", bargap=0.2)
    figure.update_annotations(font_size=13)
    title = _("What the memory share reserves")
    figure = _layout(figure, title, height=500, lang=lang)
    figure.update_layout(legend={"y": -0.25})
    return figure


# ------------------------------------------------------------------------------------ starts side by side


def startup_comparison_figure(
    starts: Sequence[tuple[str, Sequence[tuple[str, float]]]], _: Translate = _identity, lang: str = "en"
) -> go.Figure:
    """One stacked horizontal bar per start: (start label, [(translated phase label, seconds since launch)]
    in the order reached). Each segment is a phase's own duration (time since the phase before it); a phase
    keeps its colour across starts, and a phase a start did not reach is simply absent from its bar."""
    order: list[str] = []
    durations: dict[str, dict[str, float]] = {}
    for start_label, phases in starts:
        previous = 0.0
        for phase_label, seconds in phases:
            if phase_label not in order:
                order.append(phase_label)
            durations.setdefault(phase_label, {})[start_label] = max(0.0, seconds - previous)
            previous = max(previous, seconds)
    labels = [label for label, _phases in starts]
    figure = go.Figure()
    for number, phase_label in enumerate(order):
        values = [durations[phase_label].get(label) for label in labels]
        if all(not v for v in values):
            continue
        figure.add_trace(
            go.Bar(
                name=phase_label,
                y=labels,
                x=values,
                orientation="h",
                marker_color=PHASE_COLOURS[number % len(PHASE_COLOURS)],
                text=[f"{v:.0f}" if v is not None and v >= 4 else "" for v in values],
                textposition="inside",
                insidetextanchor="middle",
                hovertemplate="%{x:.1f} s<extra>" + phase_label + "</extra>",
            )
        )
    figure.update_layout(barmode="stack")
    figure.update_xaxes(title_text=_("Seconds since the process started"), rangemode="tozero")
    figure.update_yaxes(autorange="reversed")
    figure = _layout(figure, _("Where the start time went"), height=200 + 46 * max(len(starts), 1), lang=lang)
    figure.update_layout(legend={"y": -0.22, "traceorder": "normal"}, margin={"t": 56})
    return figure
