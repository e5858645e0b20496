"""Warehouse & memory, live: how much memory the server holds over time, how full the warehouse (KV cache)
is, how many orders are running or waiting, and where the memory of the running config goes,
predicted beside measured."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from dashboard.measure import predict as predict_mod
from dashboard.measure.memory import GpuSample, Mark, MemorySample, MemoryTimeline
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import measure_charts, state
from dashboard.ui.measure_jobs import bind_sampler

GIB = 1024**3
WINDOW_KEY = "memory.window"
WINDOWS_MIN = (1, 5, 10)
MAX_POINTS = 600
MARK_MATCH_S = 3.0  # a mark the sampler already has within this many seconds is not added twice


# ------------------------------------------------------------------------------------------ data


def thin(samples: tuple[MemorySample, ...], max_points: int = MAX_POINTS) -> tuple[MemorySample, ...]:
    """Every k-th sample (the last one always kept), so the chart stays light at one redraw per second."""
    if len(samples) <= max_points:
        return samples
    step = -(-len(samples) // max_points)
    kept = samples[::step]
    return kept if kept[-1] is samples[-1] else (*kept, samples[-1])


def server_marks(snap: Any, marks: tuple[Mark, ...]) -> tuple[Mark, ...]:
    """The sampler's marks plus the current server's own start and ready moments (a restart from the
    factory floor is not marked by anybody else)."""
    extra: list[Mark] = []
    started = getattr(snap, "started_at", None)
    report = getattr(snap, "report", None)
    moments = []
    if started:
        moments.append(("restart", started))
        ready_s = getattr(report, "ready_s", None) if report is not None else None
        if ready_s is not None and report.started_at == started:
            moments.append(("ready", started + ready_s))
    for kind, moment in moments:
        if not any(m.kind == kind and abs(m.t - moment) < MARK_MATCH_S for m in marks):
            extra.append(Mark(moment, kind))
    return tuple(sorted((*marks, *extra), key=lambda m: m.t))


def graph_gib(report: Any) -> float | None:
    """Memory the CUDA graphs took, from the startup report's graph-capture phase (GPU only)."""
    for entry in getattr(report, "startup", None) or ():
        if entry.get("phase") == "graph_capture":
            value = (entry.get("detail") or {}).get("graph_gib")
            return float(value) if value is not None else None
    return None


def process_memory_gib(sample: MemorySample | None) -> float | None:
    """What the server's processes hold now: on GPUs their share of the cards, else their RAM."""
    if sample is None:
        return None
    if sample.gpus:
        held = sample.gpu_process_bytes
        return None if held is None else held / GIB
    return None if sample.process_rss_bytes is None else sample.process_rss_bytes / GIB


def predicted_breakdown(config: Any, backend: str) -> measure_charts.Breakdown | None:
    _facts, shape, _problem = state.model_facts(config.model)
    if shape is None:
        return None
    machine = state.machine()
    prediction = predict_mod.predict(
        config, shape, backend, machine.total_memory_bytes, gpu_count=max(machine.gpu_count, 1)
    )
    graphs = None
    if backend == "cuda":
        graphs = prediction.working_bytes * prediction.tensor_parallel_size / GIB
    return measure_charts.Breakdown(prediction.weights_gib, prediction.kv_cache_gib, graphs, None)


# ------------------------------------------------------------------------------------------ live part


def window_choice() -> int:
    _ = ui_i18n.translator()
    if st.session_state.get(WINDOW_KEY) not in WINDOWS_MIN:
        st.session_state[WINDOW_KEY] = WINDOWS_MIN[1]
    return st.segmented_control(
        _("Show the last"),
        WINDOWS_MIN,
        key=WINDOW_KEY,
        format_func=lambda minutes: _("{minutes} min").format(minutes=ui_i18n.number(minutes)),
        required=True,
    )


def now_metrics(latest: MemorySample | None, backend: str) -> None:
    _ = ui_i18n.translator()
    columns = st.columns(4)
    if backend == "nvml":
        held = process_memory_gib(latest)
        columns[0].metric(
            _("GPU memory held by vLLM"),
            ui_i18n.gib(held),
            help=_("All GPUs together. Empty when the driver does not tell which program holds what."),
        )
    else:
        columns[0].metric(
            _("RAM of the vLLM processes"),
            ui_i18n.gib(process_memory_gib(latest)),
            help=_(
                "No GPU here: the model's bricks and the warehouse live in the computer's RAM. "
                "This is the resident memory of the server and all its helper processes."
            ),
        )
    usage = latest.kv_cache_usage if latest is not None else None
    columns[1].metric(_("Warehouse in use"), ui_i18n.percent(usage, 1))
    columns[2].metric(_("Orders running"), ui_i18n.number(latest.running if latest else None))
    columns[3].metric(_("Orders waiting"), ui_i18n.number(latest.waiting if latest else None))


def draw_live(sampler: Any, manager: Any, minutes: int) -> None:
    _ = ui_i18n.translator()
    timeline: MemoryTimeline = sampler.snapshot(since=time.time() - minutes * 60)
    snap = manager.snapshot()
    latest = timeline.latest()
    now_metrics(latest, timeline.backend)
    if not timeline.samples:
        st.info(_("Collecting the first samples…"), icon=":material/hourglass_top:")
        return
    marks = server_marks(snap, timeline.marks)
    figure = measure_charts.memory_timeline_figure(thin(timeline.samples), marks, _=_)
    st.plotly_chart(figure, width="stretch", config=measure_charts.NO_BAR, key="memory.timeline")
    if latest is not None and latest.gpus:
        gpus: tuple[GpuSample, ...] = latest.gpus
        figure = measure_charts.gpu_now_figure(gpus, _=_)
        st.plotly_chart(figure, width="stretch", config=measure_charts.NO_BAR, key="memory.gpus")
    if snap.status != "ready":
        st.caption(
            _("The server is not running, so the warehouse and order lines stay empty until it starts.")
        )


def live_section(sampler: Any, manager: Any) -> None:
    _ = ui_i18n.translator()
    st.subheader(":material/monitoring: " + _("Live"))
    minutes = window_choice()

    @st.fragment(run_every="1s")
    def _live() -> None:
        draw_live(sampler, manager, minutes)

    _live()
    st.caption(
        _(
            "Dotted lines mark restarts (red), switches to a warm server (purple), moments the server was "
            "ready (green) and load tests (orange). Run a measurement on the impact page and watch the "
            "warehouse fill up here."
        )
    )


# ------------------------------------------------------------------------------------------ breakdown


def breakdown_section(manager: Any, sampler: Any, backend: str) -> None:
    _ = ui_i18n.translator()
    st.subheader(":material/stacked_bar_chart: " + _("Where the memory goes"))
    snap = manager.snapshot()
    if snap.status != "ready" or snap.config is None or snap.report is None:
        st.info(
            _("Start the factory to compare the prediction with what the server really holds."),
            icon=":material/power_settings_new:",
        )
        return
    predicted = predicted_breakdown(snap.config, backend)
    latest = sampler.snapshot(since=time.time() - 5).latest() if sampler is not None else None
    report = snap.report
    measured = measure_charts.measured_breakdown(
        report.weights_gib, report.kv_cache_gib, graph_gib(report), process_memory_gib(latest)
    )
    if predicted is None:
        st.caption(_("The model's shape is not known offline, so there is no prediction to compare."))
        predicted = measure_charts.Breakdown()
    left, right = st.columns([3, 2], gap="large")
    with left:
        figure = measure_charts.memory_breakdown_figure(predicted, measured, _=_, titled=False)
        st.plotly_chart(figure, width="stretch", config=measure_charts.NO_BAR, key="memory.breakdown")
    with right:
        gap = measure_charts.breakdown_gap(predicted, measured)
        st.metric(_("Predicted"), ui_i18n.gib(predicted.total()))
        st.metric(_("Measured"), ui_i18n.gib(measured.total()))
        st.metric(
            _("Gap (measured minus predicted)"),
            ui_i18n.gib(gap),
            help=_("What the prediction does not count: mostly the runtime (Python, PyTorch, libraries)."),
        )
        explain_gap(backend, measured)


def explain_gap(backend: str, measured: measure_charts.Breakdown) -> None:
    _ = ui_i18n.translator()
    if backend == "cuda":
        st.caption(
            _(
                "On a GPU, vLLM takes its whole share of the card at start; the warehouse gets what "
                "is left after the bricks and the working space."
            )
        )
        if measured.rest is None:
            st.caption(
                _("The driver does not say which program holds which GPU memory, so the rest is unknown.")
            )
        return
    st.caption(
        _(
            "On this CPU the numbers are the RAM of the vLLM processes. The rest is the runtime: "
            "Python, PyTorch and the tokenizer, loaded once in the web server and once in the engine."
        )
    )
    st.caption(
        _(
            "The warehouse is reserved at start, but the computer only hands over pages that are "
            "written, so an idle warehouse may look smaller in RAM than its size."
        )
    )


# ------------------------------------------------------------------------------------------ page


def page() -> None:
    _ = ui_i18n.translator()
    manager = state.get_manager()
    sampler = state.get_sampler()
    bind_sampler(sampler, manager)
    backend = state.backend()
    st.title(_("Warehouse & memory, live"))
    if backend == "cuda":
        st.markdown(
            _(
                "Watch the GPU memory, how full the warehouse (KV cache) is and how many orders run "
                "or wait, second by second."
            )
        )
    else:
        st.markdown(
            _(
                "This computer has no GPU, so the model and its warehouse live in RAM: the chart shows "
                "the RAM of the vLLM processes, how full the warehouse (KV cache) is and how many "
                "orders run or wait, second by second."
            )
        )
    if sampler is None:
        st.warning(_("The memory sampler could not start here, so there is no live chart."))
    else:
        live_section(sampler, manager)
    breakdown_section(manager, sampler, backend)


page()
