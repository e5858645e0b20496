"""Chart builders of the memory, impact and history pages: plain data in, a plotly figure out.

No Streamlit here, so unit tests can call every builder. Each takes `_`, the translator of the caller's
language (identity by default), for its titles, axis labels and legend names. Missing numbers are left
out of a chart (a gap, a missing bar), never drawn as zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.i18n import N_
from dashboard.measure.memory import GpuSample, Mark, MemorySample
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
GIB = 1024**3
GPU_COLOURS = (LEGO_BLUE, LEGO_RED, LEGO_GREEN, LEGO_ORANGE, LEGO_DARK, LEGO_YELLOW, "#7B2D8E", "#00A3DA")
NO_BAR = {"displayModeBar": False}


def _identity(text: str) -> str:
    return text


def _session_language() -> str:
    """The reader's language for number marks (vi 1.234,5 · en 1,234.5); vi outside a page run."""
    try:
        from dashboard.ui import i18n as ui_i18n

        return ui_i18n.current_language()
    except Exception:
        return "vi"


def _layout(figure: go.Figure, title: str, height: int) -> go.Figure:
    figure.update_layout(
        separators=separators(_session_language()),
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 56, "b": 10},
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0},
        hovermode="x unified",
    )
    return figure


def _when(t: float) -> datetime:
    return datetime.fromtimestamp(t)


def _gib(value: int | float | None) -> float | None:
    return None if value is None else value / GIB


# ---------------------------------------------------------------------------------------------- memory


SWITCH_PURPLE = "#7B2D8E"
MARK_NAMES = {
    "restart": N_("Restart"),
    "switch": N_("Switch to a warm server"),
    "ready": N_("Ready"),
    "stopped": N_("Stopped"),
    "load_start": N_("Load test starts"),
    "load_end": N_("Load test ends"),
}
MARK_COLOURS = {
    "restart": LEGO_RED,
    "switch": SWITCH_PURPLE,
    "ready": LEGO_GREEN,
    "stopped": LEGO_GREY,
    "load_start": LEGO_ORANGE,
    "load_end": LEGO_ORANGE,
}


def mark_text(mark: Mark, _: Translate = _identity) -> str:
    name = _(MARK_NAMES[mark.kind]) if mark.kind in MARK_NAMES else mark.kind
    if not mark.label:
        return name
    label = _(mark.label)
    return f"{name}: {label}"


def memory_timeline_figure(
    samples: Sequence[MemorySample], marks: Sequence[Mark] = (), _: Translate = _identity
) -> go.Figure:
    """Memory over time (top) and what the server says it is doing (bottom: KV cache usage in %, requests
    running and waiting). On a GPU machine one line per GPU; on a CPU machine the RAM of the vLLM processes.
    Restarts and load tests are vertical dotted lines with a short label."""
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        row_heights=[0.6, 0.4],
        specs=[[{}], [{"secondary_y": True}]],
    )
    times = [_when(s.t) for s in samples]
    gpu_machine = any(s.gpus for s in samples)
    if gpu_machine:
        _add_gpu_lines(figure, samples, times, _)
        memory_title = _("GPU memory (GiB)")
    else:
        _add_ram_lines(figure, samples, times, _)
        memory_title = _("RAM (GiB)")
    _add_server_lines(figure, samples, times, _)
    _add_marks(figure, marks, samples, _)
    figure.update_yaxes(title_text=memory_title, range=[0, memory_axis_top(samples)], row=1, col=1)
    figure.update_yaxes(
        title_text=_("KV cache used (%)"), range=[0, kv_axis_top(samples)], row=2, col=1, secondary_y=False
    )
    requests_top = requests_axis_top(samples)
    figure.update_yaxes(
        title_text=_("Requests"),
        range=[0, requests_top],
        dtick=1 if requests_top <= 6 else None,
        tickformat="d",
        row=2,
        col=1,
        secondary_y=True,
        showgrid=False,
    )
    figure.update_xaxes(tickformat="%H:%M:%S", hoverformat="%H:%M:%S")  # no month names in any language
    return _layout(figure, _("Memory and work, live"), height=520)


def memory_axis_top(samples: Sequence[MemorySample]) -> float:
    """Top of the memory axis in GiB: room above the highest line drawn (RAM, or every GPU's total)."""
    values: list[float] = []
    for sample in samples:
        if sample.gpus:
            values += [(g.total_bytes or g.used_bytes or 0) / GIB for g in sample.gpus]
        elif sample.process_rss_bytes is not None:
            values.append(sample.process_rss_bytes / GIB)
    peak = max(values, default=0.0)
    return max(0.5, peak * 1.15)


def requests_axis_top(samples: Sequence[MemorySample]) -> float:
    """Top of the requests axis: whole requests, at least 1 (an idle server reads 0, never '1, 0, 0')."""
    peak = max((max(s.running or 0, s.waiting or 0) for s in samples), default=0)
    return float(max(1, peak) + (0.5 if peak <= 6 else peak * 0.15))


def kv_axis_top(samples: Sequence[MemorySample]) -> float:
    """Top of the KV-cache axis in %: room above the peak, at least 5 % (a few short requests fill well
    under 1 % of a big warehouse and would vanish on a 0-100 axis), never above 100 %."""
    peak = max((s.kv_cache_usage or 0.0 for s in samples), default=0.0) * 100
    return min(100.0, max(5.0, peak * 1.3))


def _add_ram_lines(figure: go.Figure, samples: Sequence[MemorySample], times: list, _: Translate) -> None:
    figure.add_trace(
        go.Scatter(
            x=times,
            y=[_gib(s.process_rss_bytes) for s in samples],
            name=_("RAM of the vLLM processes"),
            mode="lines",
            line={"color": LEGO_BLUE, "width": 3},
            connectgaps=False,
            hovertemplate="%{y:.2f} GiB",
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=times,
            y=[_gib(s.system_used_bytes) for s in samples],
            name=_("RAM used by the whole machine"),
            mode="lines",
            line={"color": LEGO_GREY, "width": 1, "dash": "dot"},
            visible="legendonly",
            hovertemplate="%{y:.2f} GiB",
        ),
        row=1,
        col=1,
    )


def _add_gpu_lines(figure: go.Figure, samples: Sequence[MemorySample], times: list, _: Translate) -> None:
    indexes = sorted({g.index for s in samples for g in s.gpus})
    for position, index in enumerate(indexes):
        colour = GPU_COLOURS[position % len(GPU_COLOURS)]
        used = [_gpu_value(s, index, "used_bytes") for s in samples]
        total = [_gpu_value(s, index, "total_bytes") for s in samples]
        ours = [_gpu_value(s, index, "process_bytes") for s in samples]
        figure.add_trace(
            go.Scatter(
                x=times,
                y=used,
                name=_("GPU {index}: used").format(index=index),
                mode="lines",
                line={"color": colour, "width": 3},
                hovertemplate="%{y:.2f} GiB",
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Scatter(
                x=times,
                y=total,
                name=_("GPU {index}: total").format(index=index),
                mode="lines",
                line={"color": colour, "width": 1, "dash": "dash"},
                hovertemplate="%{y:.2f} GiB",
            ),
            row=1,
            col=1,
        )
        if any(v is not None for v in ours):
            figure.add_trace(
                go.Scatter(
                    x=times,
                    y=ours,
                    name=_("GPU {index}: held by vLLM").format(index=index),
                    mode="lines",
                    line={"color": colour, "width": 2, "dash": "dot"},
                    hovertemplate="%{y:.2f} GiB",
                ),
                row=1,
                col=1,
            )


def _gpu_value(sample: MemorySample, index: int, field: str) -> float | None:
    for gpu in sample.gpus:
        if gpu.index == index:
            return _gib(getattr(gpu, field))
    return None


def _add_server_lines(figure: go.Figure, samples: Sequence[MemorySample], times: list, _: Translate) -> None:
    figure.add_trace(
        go.Scatter(
            x=times,
            y=[None if s.kv_cache_usage is None else s.kv_cache_usage * 100 for s in samples],
            name=_("KV cache used (%)"),
            mode="lines",
            line={"color": LEGO_YELLOW, "width": 3},
            connectgaps=False,
            hovertemplate="%{y:.1f} %",
        ),
        row=2,
        col=1,
        secondary_y=False,
    )
    for field, name, colour in (
        ("running", _("Requests running"), LEGO_GREEN),
        ("waiting", _("Requests waiting"), LEGO_RED),
    ):
        figure.add_trace(
            go.Scatter(
                x=times,
                y=[getattr(s, field) for s in samples],
                name=name,
                mode="lines",
                line={"color": colour, "width": 2, "shape": "hv"},
                hovertemplate="%{y:.0f}",
            ),
            row=2,
            col=1,
            secondary_y=True,
        )


SAME_MARK_S = 3.0


def distinct_marks(marks: Sequence[Mark], within_s: float = SAME_MARK_S) -> list[Mark]:
    """One line per moment: a mark of the same kind and label seen again within a few seconds (two
    watchers saw the same ready moment) is drawn once."""
    kept: list[Mark] = []
    for mark in sorted(marks, key=lambda m: m.t):
        if any(k.kind == mark.kind and k.label == mark.label and mark.t - k.t < within_s for k in kept):
            continue
        kept.append(mark)
    return kept


def _add_marks(
    figure: go.Figure, marks: Sequence[Mark], samples: Sequence[MemorySample], _: Translate
) -> None:
    """Dotted vertical lines across both rows for marks since the first sample (shapes, not vlines:
    vline annotations do not work on date axes in every plotly version)."""
    if not samples:
        return
    first = samples[0].t
    for number, mark in enumerate(distinct_marks([m for m in marks if m.t >= first])):
        colour = MARK_COLOURS.get(mark.kind, LEGO_DARK)
        when = _when(mark.t)
        figure.add_shape(
            type="line",
            x0=when,
            x1=when,
            xref="x",
            y0=0,
            y1=1,
            yref="paper",
            line={"color": colour, "width": 1.5, "dash": "dot"},
        )
        figure.add_annotation(
            x=when,
            xref="x",
            y=1.0 - 0.07 * (number % 3),
            yref="paper",
            text=mark_text(mark, _),
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font={"size": 11, "color": colour},
            bgcolor="rgba(255,255,255,0.75)",
        )


def gpu_now_figure(gpus: Sequence[GpuSample], _: Translate = _identity) -> go.Figure:
    """One bar per GPU as it is now: the part vLLM holds, the part other programs hold, and what is free."""
    labels = [_("GPU {index}").format(index=g.index) + f" · {g.name}" for g in gpus]
    ours = [_gib(g.process_bytes) for g in gpus]
    others = [
        _gib(g.used_bytes - (g.process_bytes or 0)) if g.process_bytes is not None else _gib(g.used_bytes)
        for g in gpus
    ]
    free = [_gib(max(g.total_bytes - g.used_bytes, 0)) for g in gpus]
    figure = go.Figure()
    parts = (
        (_("Held by vLLM"), ours, LEGO_BLUE),
        (_("Used by others (or not known)"), others, LEGO_GREY),
        (_("Free"), free, "#E3E6E8"),
    )
    for name, values, colour in parts:
        figure.add_trace(
            go.Bar(
                name=name,
                y=labels,
                x=values,
                orientation="h",
                marker_color=colour,
                hovertemplate="%{x:.2f} GiB<extra>" + name + "</extra>",
            )
        )
    figure.update_layout(barmode="stack")
    figure.update_xaxes(title_text=_("GiB"), rangemode="tozero")
    figure.update_yaxes(autorange="reversed")
    return _layout(figure, _("Each GPU now"), height=140 + 48 * max(len(gpus), 1))


# ---------------------------------------------------------------------------------------------- breakdown

BREAKDOWN_PARTS = (
    ("weights", N_("Model bricks (weights)"), LEGO_BLUE),
    ("kv_cache", N_("Warehouse (KV cache)"), LEGO_YELLOW),
    ("graphs", N_("Graphs and activations"), LEGO_ORANGE),
    ("rest", N_("The rest (runtime, libraries)"), LEGO_GREY),
)


@dataclass(frozen=True)
class Breakdown:
    """Where memory goes, in GiB; None where that part is not known."""

    weights: float | None = None
    kv_cache: float | None = None
    graphs: float | None = None
    rest: float | None = None

    def total(self) -> float | None:
        known = [v for v in (self.weights, self.kv_cache, self.graphs, self.rest) if v is not None]
        return sum(known) if known else None

    def get(self, key: str) -> float | None:
        return getattr(self, key)


def measured_breakdown(
    weights_gib: float | None,
    kv_cache_gib: float | None,
    graphs_gib: float | None,
    process_gib: float | None,
) -> Breakdown:
    """The startup report's parts, and the rest = what the processes hold beyond them (never below 0)."""
    known = sum(v for v in (weights_gib, kv_cache_gib, graphs_gib) if v is not None)
    rest = None if process_gib is None else max(process_gib - known, 0.0)
    return Breakdown(weights_gib, kv_cache_gib, graphs_gib, rest)


def breakdown_gap(predicted: Breakdown, measured: Breakdown) -> float | None:
    """Measured total minus predicted total, in GiB (positive: the server holds more than predicted)."""
    a, b = predicted.total(), measured.total()
    return None if a is None or b is None else b - a


def memory_breakdown_figure(
    predicted: Breakdown,
    measured: Breakdown,
    _: Translate = _identity,
    measured_label: str | None = None,
    titled: bool = True,
) -> go.Figure:
    """Two stacked bars side by side: predicted from the model's shape and the flags, measured from the
    startup report and the processes. A part nobody knows is left out of its bar."""
    columns = [_("Predicted"), measured_label or _("Measured")]
    figure = go.Figure()
    for key, msgid, colour in BREAKDOWN_PARTS:
        values = [predicted.get(key), measured.get(key)]
        if all(v is None for v in values):
            continue
        name = _(msgid)
        figure.add_trace(
            go.Bar(
                name=name,
                x=columns,
                y=values,
                marker_color=colour,
                texttemplate="%{y:.2f}",  # plotly's format: the layout's separators (0,25 in Vietnamese)
                textposition="inside",
                hovertemplate="%{y:.2f} GiB<extra>" + name + "</extra>",
            )
        )
    figure.update_layout(barmode="stack", bargap=0.45)
    figure.update_yaxes(title_text=_("GiB"), rangemode="tozero")
    figure = _layout(figure, _("Where the memory goes") if titled else "", height=380)
    figure.update_layout(hovermode="closest", legend={"y": -0.15})
    if not titled:  # the page's own heading says it: no second title
        figure.update_layout(margin={"t": 10})
    return figure


# ---------------------------------------------------------------------------------------------- impact

SWEEP_METRICS: tuple[tuple[str, str], ...] = (
    ("ttft_p50_ms", N_("First token, median (ms)")),
    ("itl_p50_ms", N_("Time per next token, median (ms)")),
    ("e2e_p50_ms", N_("Whole answer, median (ms)")),
    ("output_tokens_per_s", N_("Answer tokens per second")),
    ("ready_s", N_("Start time (s)")),
    ("memory_gib", N_("Memory of the server (GiB)")),
)
METRIC_COLOURS = (LEGO_RED, LEGO_BLUE, LEGO_GREEN, LEGO_ORANGE, LEGO_DARK, LEGO_YELLOW)


def sweep_figure(
    rows: Sequence[Mapping[str, Any]],
    x_title: str,
    _: Translate = _identity,
    metrics: Sequence[tuple[str, str]] = SWEEP_METRICS,
    title: str | None = None,
) -> go.Figure:
    """One small chart per metric against the value tried (rows: {"value": label, metric key: number}).
    Values are categories in the order tried, so on/off and 512/1024/2048 read the same way."""
    columns = 3 if len(metrics) > 4 else min(max(len(metrics), 1), 2)
    grid_rows = -(-len(metrics) // columns)
    figure = make_subplots(
        rows=grid_rows,
        cols=columns,
        subplot_titles=[_(msgid) for _key, msgid in metrics],
        horizontal_spacing=0.08,
        vertical_spacing=0.22 if grid_rows > 1 else 0.1,
    )
    labels = [str(row.get("value")) for row in rows]
    for number, (key, msgid) in enumerate(metrics):
        values = [_number_or_none(row.get(key)) for row in rows]
        figure.add_trace(
            go.Scatter(
                x=labels,
                y=values,
                name=_(msgid),
                mode="lines+markers+text",
                texttemplate=[_short_template(v) for v in values],  # the layout's separators
                textposition="top center",
                marker={"size": 10, "color": METRIC_COLOURS[number % len(METRIC_COLOURS)]},
                line={"width": 2, "color": METRIC_COLOURS[number % len(METRIC_COLOURS)]},
                hovertemplate="%{x}: %{y:.3g}<extra></extra>",
                showlegend=False,
                cliponaxis=False,
            ),
            row=number // columns + 1,
            col=number % columns + 1,
        )
    figure.update_xaxes(type="category")
    figure.update_yaxes(rangemode="tozero")
    figure.update_annotations(font_size=13)
    heading = title or _("What changed when the value changed")
    if x_title:
        heading = f"{heading} · {x_title}"
    figure = _layout(figure, heading, height=250 * grid_rows + 60)
    figure.update_layout(hovermode="closest", margin={"l": 10, "r": 10, "t": 80, "b": 10})
    return figure


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _short_template(value: float | None) -> str:
    """A point's label in plotly's format, so that it follows the layout's separators (1,25 in vi)."""
    if value is None:
        return ""
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return "%{y:." + str(digits) + "f}"


def sweep_points(figure: go.Figure) -> dict[str, int]:
    """How many measured points each metric's chart holds (for tests and the page's sanity note)."""
    return {trace.name: sum(1 for y in trace.y if y is not None) for trace in figure.data}


BUDGET_COLOURS = {
    "queue": LEGO_RED,
    "prefill": LEGO_YELLOW,
    "decode": LEGO_BLUE,
    "server_other": LEGO_GREY,
    "http": LEGO_GREEN,
}


def latency_budget_figure(
    segments: Sequence[tuple[str, str, float]], _: Translate = _identity, title: str | None = None
) -> go.Figure:
    """One request's time as a horizontal stacked bar: (key, English msgid, milliseconds) in time order,
    as LatencyBudget.segments() gives them."""
    figure = go.Figure()
    row_label = _("One request")
    for key, msgid, ms in segments:
        name = _(msgid)
        figure.add_trace(
            go.Bar(
                name=name,
                x=[ms],
                y=[row_label],
                orientation="h",
                marker_color=BUDGET_COLOURS.get(key, LEGO_DARK),
                texttemplate="%{x:.0f} ms" if ms >= 1 else "%{x:.1f} ms",
                textposition="inside",
                insidetextanchor="middle",
                hovertemplate="%{x:.1f} ms<extra>" + name + "</extra>",
            )
        )
    figure.update_layout(barmode="stack")
    figure.update_xaxes(ticksuffix=" ms", rangemode="tozero")
    figure.update_yaxes(showticklabels=False)
    heading = _("Where the time of one request goes") if title is None else title
    figure = _layout(figure, heading, height=230 if heading else 190)
    figure.update_layout(hovermode="closest", legend={"y": -0.3}, margin={"t": 48 if heading else 10})
    return figure


# ------------------------------------------------------------------------------------------ bench, history

LEVEL_METRICS: tuple[tuple[str, str], ...] = (
    ("ttft_p50_ms", N_("First token, median (ms)")),
    ("itl_p50_ms", N_("Time per next token, median (ms)")),
    ("e2e_p50_ms", N_("Whole answer, median (ms)")),
    ("output_tokens_per_s", N_("Answer tokens per second")),
)


def levels_figure(rows: Sequence[Mapping[str, Any]], _: Translate = _identity) -> go.Figure:
    """A load test at several concurrency levels (rows: {"value": level, metric key: number})."""
    return sweep_figure(
        rows, _("Requests at once"), _, metrics=LEVEL_METRICS, title=_("Response time as the crowd grows")
    )


# ------------------------------------------------------------------------------------------ request X-ray

XRAY_NAMES = {
    "queue": N_("Waiting for a lane"),
    "prefill": N_("First-token work (reading the prompt)"),
    "decode": N_("Token-by-token work (writing the answer)"),
    "http": N_("HTTP and handling"),
    "client_only": N_("Our clock only (vLLM's timings did not arrive)"),
}
XRAY_COLOURS = {
    "queue": LEGO_ORANGE,
    "prefill": LEGO_YELLOW,
    "decode": LEGO_BLUE,
    "http": LEGO_GREEN,
    "client_only": LEGO_GREY,
}


def _plain_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def xray_hover(row: Any, _: Translate = _identity, ms: Callable[[float | None], str] = _plain_ms) -> str:
    """The numbers of one request, for hovering any piece of its row."""
    lines = [
        "<b>" + _("Order #{n}").format(n=row.index) + "</b>",
        _("Sent at {at} after the first order").format(at=ms(row.sent_ms)),
    ]
    if row.has_span:
        lines += [
            _(XRAY_NAMES["queue"]) + ": " + ms(row.waiting_ms),
            "↳ " + _("of it in vLLM's queue: {queue}").format(queue=ms(row.queue_ms)),
            _(XRAY_NAMES["prefill"]) + ": " + ms(row.prefill_ms),
            _(XRAY_NAMES["decode"]) + ": " + ms(row.decode_ms),
            _(XRAY_NAMES["http"]) + ": " + ms(row.overhead_ms()),
        ]
    else:
        lines.append(_("vLLM's own timings did not arrive for this order."))
    lines.append(_("Whole answer, our clock: {total}").format(total=ms(row.client_e2e_ms)))
    lines.append(_("First word reached us after {ttft}").format(ttft=ms(row.client_ttft_ms)))
    if row.prompt_tokens is not None or row.completion_tokens is not None:
        lines.append(
            _("Tokens: {prompt} in the prompt, {answer} in the answer").format(
                prompt=row.prompt_tokens if row.prompt_tokens is not None else "–",
                answer=row.completion_tokens if row.completion_tokens is not None else "–",
            )
        )
    if not row.ok:
        lines.append(_("This order failed: {error}").format(error=(row.error or "")[:120]))
    return "<br>".join(lines)


def xray_figure(
    view: Any, _: Translate = _identity, ms: Callable[[float | None], str] = _plain_ms
) -> go.Figure:
    """The request X-ray (`dashboard.measure.xray.Xray`): one row per request in the order they were
    sent, its pieces laid end to end on a time axis (seconds since the first send); a request without
    vLLM's timings is one grey bar of the client's clock; preemption moments are red bands."""
    pieces: dict[str, tuple[list, list, list, list]] = {kind: ([], [], [], []) for kind in XRAY_NAMES}
    for row in view.rows:
        hover = xray_hover(row, _, ms)
        segments = row.segments() or [("client_only", row.sent_ms, row.client_e2e_ms)]
        for kind, start_ms, length_ms in segments:
            bases, lengths, names, hovers = pieces[kind]
            bases.append(start_ms / 1000.0)
            lengths.append(length_ms / 1000.0)
            names.append(row.index)
            hovers.append(hover)
    figure = go.Figure()
    for kind in ("queue", "prefill", "decode", "http", "client_only"):
        bases, lengths, names, hovers = pieces[kind]
        if not bases:
            continue
        figure.add_trace(
            go.Bar(
                name=_(XRAY_NAMES[kind]),
                base=bases,
                x=lengths,
                y=names,
                orientation="h",
                marker_color=XRAY_COLOURS[kind],
                marker_line_width=0,
                hovertext=hovers,
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    for mark in view.preemptions:
        figure.add_vrect(
            x0=mark.from_ms / 1000.0,
            x1=mark.to_ms / 1000.0,
            fillcolor=LEGO_RED,
            opacity=0.15,
            line_width=0,
            annotation_text="↩ " + _("{n} sent back to wait").format(n=mark.count),
            annotation_position="top left",
            annotation_font_color=LEGO_RED,
        )
    count = len(view.rows)
    figure.update_yaxes(
        autorange="reversed",
        title_text=_("Order"),
        tickmode="auto",
        nticks=min(count, 12) + 1,
        zeroline=False,
    )
    figure.update_xaxes(title_text=_("Seconds since the first order was sent"), rangemode="tozero")
    height = min(1100, max(280, 150 + 18 * count))
    figure = _layout(figure, "", height)
    figure.update_layout(
        barmode="overlay",
        bargap=0.25,
        hovermode="closest",
        hoverlabel={"align": "left"},
        title=None,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    )
    return figure
