"""What does each flag do to response time? Pick one flag and a few values (or the whole table of the
brief), and the factory restarts the real server for each value, sends the same orders, and measures.
The measurement runs in a background job, so closing the browser does not stop it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.engine import flag_texts, flags, presets
from dashboard.engine.config import ServerConfig
from dashboard.history import handout
from dashboard.history.records import RunRecord
from dashboard.i18n import N_
from dashboard.measure import budget as budget_mod
from dashboard.measure.loadgen import LoadPlan, Workload
from dashboard.ui import checks, estimates, history_view, measure_charts, state, table_view, widgets
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import measure_jobs as jobs
from dashboard.ui import roles as ui_roles

MODE_KEY = "impact.mode"
FLAG_KEY = "impact.flag"
WORKLOAD_KEY = "impact.workload"
PRESET_KEY = "impact.preset"
JSON_KEY = "impact.json"
INPUT_KEY, OUTPUT_KEY = "impact.input_tokens", "impact.output_tokens"
REQUESTS_KEY, CONCURRENCY_KEY = "impact.requests", "impact.concurrency"
RESTORE_KEY = "impact.restore"
NOTICE_KEY = "impact.notice"
SEEN_KEY = "impact.seen_job"
BUDGET_KEY = "impact.budget"
BUDGET_VALUE_KEY = "impact.budget_value"
MODES = ("one", "table")
NOTICE_FOR_S = 3600  # how long the end of the last measurement is still announced


# ------------------------------------------------------------------------------------------ small helpers


def flag_label(name: str) -> str:
    return ui_i18n.tr(flag_texts.texts_for(flags.get(name).texts).label)


def value_label(name: str, value: Any) -> str:
    return widgets.value_text(flags.get(name), value)


def values_text(values: list[Any]) -> str:
    """Values as typed in the box: language-neutral (a dot for decimals), on/off for switches."""
    words = []
    for value in values:
        if isinstance(value, bool):
            words.append("on" if value else "off")
        elif isinstance(value, float) and value.is_integer():
            words.append(f"{value:g}")
        else:
            words.append(str(value))
    return ", ".join(words)


def base_config(snap: Any) -> ServerConfig:
    """Everything except the swept flag: the running server's config, else the factory floor's settings."""
    if snap.config is not None:
        return snap.config
    return widgets.pending_config(state.starting_config)


def duration_text(seconds: float) -> str:
    _ = ui_i18n.translator()
    if seconds < 90:
        return _("about {seconds} s").format(seconds=ui_i18n.number(seconds))
    return _("about {minutes} min").format(minutes=ui_i18n.number(seconds / 60))


def latest_sweep(store: Any, flag: str) -> RunRecord | None:
    """The newest sweep run of `flag` that measured something (running or finished), with its rows."""
    if store is None:
        return None
    for run in store.list_runs(kind="sweep", limit=100):
        swept = (run.summary or {}).get("flag") or (run.config.get("sweep") or {}).get("flag")
        if swept == flag and run.row_count:
            return store.get_run(run.id)
    return None


# ------------------------------------------------------------------------------------------ the form


def workload_form() -> tuple[Workload, dict[str, Any]]:
    """The orders sent for every value, and one of them as a payload for the latency budget."""
    _ = ui_i18n.translator()
    kind = st.segmented_control(
        _("Orders"),
        ("preset", "synthetic"),
        key=WORKLOAD_KEY,
        default="preset",
        required=True,
        format_func=lambda k: (
            _("A preset request") if k == "preset" else _("Made-up text of a chosen length")
        ),
    )
    if kind == "synthetic":
        left, right = st.columns(2)
        input_tokens = left.number_input(_("Question length (tokens)"), 8, 4000, 400, step=8, key=INPUT_KEY)
        output_tokens = right.number_input(_("Answer length (tokens)"), 1, 1000, 20, key=OUTPUT_KEY)
        workload = Workload.synthetic(int(input_tokens), int(output_tokens), label="synthetic")
        st.caption(_("Each question starts differently, so no worksheet can be copied between them."))
        return workload, workload.payload("", 0)
    options = list(presets.all_presets())
    name = st.selectbox(
        _("Preset request"), options, key=PRESET_KEY, format_func=lambda n: ui_i18n.tr(presets.get(n).title)
    )
    preset = presets.get(name)
    json_mode = st.toggle(
        _("JSON answer (follow the schema)"),
        value=preset.request.schema is not None,
        key=f"{JSON_KEY}.{name}",
        disabled=preset.json_schema is None,
    )
    request = preset.request
    if json_mode and preset.json_schema is not None:
        request = replace(request, schema=preset.json_schema)
    workload = Workload.from_request(request, json_mode=json_mode, label=name)
    return workload, request.payload("", stream=True, json_mode=json_mode)


def load_form() -> tuple[int, int]:
    _ = ui_i18n.translator()
    left, right = st.columns(2)
    requests = left.number_input(
        _("Orders per value"),
        1,
        500,
        8,
        key=REQUESTS_KEY,
        help=_("How many requests are measured for each value (one more is sent first to warm up)."),
    )
    concurrency = right.number_input(
        _("Orders at the same time"),
        1,
        256,
        2,
        key=CONCURRENCY_KEY,
        help=_(
            "How many customers are served at once. Lanes (max-num-seqs) only matter when this is bigger."
        ),
    )
    return int(requests), int(concurrency)


def flag_form(backend: str) -> tuple[str, list[Any] | None]:
    _ = ui_i18n.translator()
    names = jobs.sweepable_flags(backend)
    if st.session_state.get(FLAG_KEY) not in names:
        st.session_state[FLAG_KEY] = "max_num_seqs" if "max_num_seqs" in names else names[0]
    name = st.selectbox(
        _("Flag"), names, key=FLAG_KEY, format_func=lambda n: f"{flags.get(n).cli} · {flag_label(n)}"
    )
    texts = flag_texts.texts_for(flags.get(name).texts)
    st.caption(ui_i18n.tr(texts.analogy))
    typed = st.text_input(
        _("Values to try, separated by commas"),
        value=values_text(jobs.default_values(name, backend)),
        key=f"impact.values.{name}",
        help=_("Switches take on and off. Use a dot for decimals, e.g. 0.5."),
    )
    try:
        values = jobs.parse_values(name, typed)
    except ValueError as exc:
        st.error(
            _("One of the values does not fit this flag: {detail}").format(detail=exc),
            icon=":material/error:",
        )
        return name, None
    if len(values) < 2:
        st.warning(_("Type at least two values to compare."), icon=":material/info:")
        return name, None
    if checks.refuse_sweep_values(base_config(state.get_manager().snapshot()), name, values):
        return name, None
    if backend == "cpu" and name == "enforce_eager" and False in values:
        st.caption(_("Eager mode off means a compile step of about a minute at each start on this CPU."))
    return name, values


# ------------------------------------------------------------------------------------------ starting a job


def start_job(request: jobs.JobRequest) -> None:
    _ = ui_i18n.translator()
    if not ui_roles.require_presenter(_("start a measurement")):
        return
    manager = state.get_manager()
    sampler = state.get_sampler()
    jobs.bind_sampler(sampler, manager)
    refusal = jobs.get_job().start(request, manager, state.get_store(), sampler)
    if refusal is None:
        st.session_state[NOTICE_KEY] = (
            "info",
            _("The measurement started. You may close this page: it goes on."),
        )
    else:
        st.session_state[NOTICE_KEY] = ("warning", ui_i18n.tr(refusal))


def job_request(
    sweeps: list[tuple[str, list[Any]]],
    mode: str,
    snap: Any,
    workload: Workload,
    payload: dict[str, Any],
    requests: int,
    concurrency: int,
    restore: bool,
) -> jobs.JobRequest:
    base = base_config(snap)
    running = snap.status == "ready" and snap.config is not None
    return jobs.JobRequest(
        sweeps=tuple((flag, tuple(values)) for flag, values in sweeps),
        base=base,
        workload=workload,
        plan=LoadPlan(concurrency=concurrency, requests=requests, timeout_s=300),
        mode=mode,
        restore_config=snap.config if (restore and running) else None,
        backend=state.backend(),
        budget_payload=payload,
    )


def run_controls(
    sweeps: list[tuple[str, list[Any]]] | None, mode: str, snap: Any, forms: dict[str, Any]
) -> None:
    _ = ui_i18n.translator()
    job = jobs.get_job()
    running = snap.status == "ready" and snap.config is not None
    measuring = job.snapshot()
    if measuring.running:  # what the running measurement will do, not what the box would do now
        st.caption(
            _("When this measurement ends, the factory is put back as it was.")
            if measuring.will_restore
            else _("When this measurement ends, the factory keeps the last value tried.")
        )
        restore = measuring.will_restore
    else:
        restore = st.checkbox(
            _("Put the factory back as it was afterwards"),
            value=running,
            key=RESTORE_KEY if running else f"{RESTORE_KEY}.off",
            disabled=not running,
            help=_("Without this, the server keeps running with the last value tried."),
        )
    if not running and not measuring.running:
        st.caption(_("The factory is not running now, so it will keep the last value tried."))
    if sweeps:
        restore_config = snap.config if (restore and running) else None
        planned = estimates.sweep_estimate(
            sweeps, base_config(snap), forms["requests"], forms["concurrency"], restore_config
        )
        st.caption(estimates.caption(planned))
    busy = job.is_running()
    label = _("Fill the whole table") if mode == "table" else _("Measure")
    if st.button(
        label,
        type="primary",
        icon=":material/play_arrow:",
        disabled=not sweeps or busy or not ui_roles.is_presenter(),
        key=f"impact.run.{mode}",
    ):
        request = job_request(
            sweeps or [],
            mode,
            snap,
            forms["workload"],
            forms["payload"],
            forms["requests"],
            forms["concurrency"],
            restore,
        )
        start_job(request)
        st.rerun()
    if busy:
        st.caption(_("A measurement is running; a new one can start when it ends."))


# ------------------------------------------------------------------------------------------ progress


def stage_line(flag: str, value: jobs.ValueState) -> str:
    _ = ui_i18n.translator()
    shown = f"`{flags.get(flag).cli} {value_label(flag, value.value)}`"
    row = value.row or {}
    if value.stage == jobs.STAGE_WAITING:
        return f":material/schedule: {shown} · " + _("waiting")
    if value.stage == jobs.STAGE_STARTING:
        phase = ui_i18n.tr(value.phase) if value.phase else _("launching")
        return f":material/hourglass_top: {shown} · " + _("starting") + f": {phase}"
    if value.stage == jobs.STAGE_MEASURING:
        return f":material/speed: {shown} · " + _("sending orders")
    if value.stage == jobs.STAGE_DONE:
        return f":material/check_circle: {shown} · " + _("answer in {e2e}, started in {ready}").format(
            e2e=ui_i18n.milliseconds(row.get("e2e_p50_ms")), ready=ui_i18n.seconds(row.get("ready_s"))
        )
    return f":material/error: {shown} · {error_text(row)}"


def error_text(row: Mapping[str, Any]) -> str:
    _ = ui_i18n.translator()
    error = row.get("error") or {}
    lang = ui_i18n.current_language()
    if isinstance(error, dict):
        text = error.get(f"text_{lang}") or error.get("message") or ""
        return text or _("failed")
    return str(error)


def aa_line(number: int, value: jobs.ValueState) -> str:
    _ = ui_i18n.translator()
    shown = _("start {n} of 2").format(n=number + 1)
    icons = {
        jobs.STAGE_WAITING: "schedule",
        jobs.STAGE_STARTING: "hourglass_top",
        jobs.STAGE_MEASURING: "speed",
    }
    icon = icons.get(value.stage, "check_circle" if value.stage == jobs.STAGE_DONE else "error")
    if value.stage == jobs.STAGE_DONE:
        ready = ui_i18n.seconds((value.row or {}).get("ready_s"))
        return f":material/{icon}: {shown} · " + _("started in {ready}").format(ready=ready)
    return f":material/{icon}: {shown}"


def draw_job(snapshot: jobs.JobSnapshot) -> None:
    _ = ui_i18n.translator()
    elapsed = (snapshot.finished_at or time.time()) - (snapshot.started_at or time.time())
    text = _("{done} of {total} values measured · {elapsed}").format(
        done=ui_i18n.number(snapshot.finished_values),
        total=ui_i18n.number(snapshot.total_values),
        elapsed=ui_i18n.seconds(elapsed),
    )
    st.progress(snapshot.progress(), text=text)
    if snapshot.aa:
        st.markdown("**" + _("The same settings, started twice (the noise)") + "**")
        st.markdown("\n".join(f"- {aa_line(number, v)}" for number, v in enumerate(snapshot.aa)))
    for flag_state in snapshot.flags:
        if len(snapshot.flags) > 1:
            st.markdown(f"**{flags.get(flag_state.flag).cli}**")
        st.markdown("\n".join(f"- {stage_line(flag_state.flag, v)}" for v in flag_state.values))
    if snapshot.restore == "restoring":
        st.markdown(":material/undo: " + _("Putting the factory back as it was…"))


def progress_section() -> None:
    _ = ui_i18n.translator()
    job = jobs.get_job()

    @st.fragment(run_every="1s")
    def _poll() -> None:
        snapshot = job.snapshot()
        seen = st.session_state.get(SEEN_KEY)
        if snapshot.status == "idle":
            return
        if snapshot.running:
            st.session_state[SEEN_KEY] = "running"
            with st.container(border=True):
                st.markdown("**:material/science: " + _("Measuring now") + "**")
                draw_job(snapshot)
                st.button(
                    _("Stop after this value"),
                    icon=":material/stop:",
                    key="impact.stop",
                    on_click=ui_roles.guarded(N_("stop the measurement"), job.stop),
                    disabled=not ui_roles.is_presenter(),
                )
            return
        if seen == "running":  # it just ended: redraw the whole page once, with the results
            st.session_state[SEEN_KEY] = snapshot.status
            st.rerun(scope="app")
        if time.time() - (snapshot.finished_at or 0) < NOTICE_FOR_S:
            end_notice(snapshot)

    _poll()


def end_notice(snapshot: jobs.JobSnapshot) -> None:
    _ = ui_i18n.translator()
    if snapshot.status == "failed":
        st.error(
            _("The measurement broke off: {error}").format(error=snapshot.error), icon=":material/error:"
        )
    elif snapshot.status == "stopped":
        st.warning(
            _("The measurement was stopped; the values measured so far are kept."), icon=":material/stop:"
        )
    if snapshot.restore == "restored":
        st.success(_("The factory is back as it was before the measurement."), icon=":material/undo:")
    elif snapshot.restore == "restore_failed":
        st.warning(
            _("The factory could not be put back as it was: check the factory floor."),
            icon=":material/warning:",
        )
    elif snapshot.restore == "left":
        last = last_value(snapshot)
        if last is not None:
            st.info(
                _("The factory was left running with the last value tried: {flag} = {value}.").format(
                    flag=flags.get(last[0]).cli, value=value_label(*last)
                ),
                icon=":material/info:",
            )


def last_value(snapshot: jobs.JobSnapshot) -> tuple[str, Any] | None:
    for flag_state in reversed(snapshot.flags):
        for value in reversed(flag_state.values):
            if value.stage in (jobs.STAGE_DONE, jobs.STAGE_FAILED):
                return flag_state.flag, value.value
    return None


# ------------------------------------------------------------------------------------------ results


def rows_of(run: RunRecord) -> list[dict[str, Any]]:
    return [dict(row.data) for row in run.rows]


def results_section(flag: str, store: Any) -> None:
    _ = ui_i18n.translator()
    run = latest_sweep(store, flag)
    st.subheader(":material/insights: " + _("What changed"))
    if run is None or not run.rows:
        st.caption(_("No measurement of {flag} yet. Press Measure above.").format(flag=flags.get(flag).cli))
        return
    rows = rows_of(run)
    lang = ui_i18n.current_language()
    verdict = history_view.verdict_of(run, lang) or jobs.verdicts(flag, rows)[lang]
    st.success(verdict, icon=":material/gavel:")
    st.caption(
        _("Measured {when} · {status}").format(
            when=history_view.when(run.created_at, lang),
            status=ui_i18n.tr(history_view.STATUS_NAMES[run.status]),
        )
    )
    points = [jobs.chart_row(row, value_label(flag, row.get("value"))) for row in rows]
    figure = measure_charts.sweep_figure(points, flags.get(flag).cli, _)
    st.plotly_chart(figure, width="stretch", config=measure_charts.NO_BAR, key="impact.sweep_chart")
    st.dataframe(rows_table(flag, rows), hide_index=True, width="stretch")
    for row in rows:  # whole sentences under the table: a column would cut them at 1366 px
        if not row.get("ok"):
            label = value_label(flag, row.get("value"))
            st.warning(f"**{label}**: {error_text(row)}", icon=":material/block:")
    budget_for_rows(flag, rows)


def rows_table(flag: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    _ = ui_i18n.translator()
    columns = {
        _("Value"): [value_label(flag, row.get("value")) for row in rows],
        _("First token"): [ui_i18n.milliseconds(row.get("ttft_p50_ms")) for row in rows],
        _("Per next token"): [ui_i18n.milliseconds(row.get("itl_p50_ms")) for row in rows],
        _("Whole answer"): [ui_i18n.milliseconds(row.get("e2e_p50_ms")) for row in rows],
        _("Tokens per second"): [ui_i18n.number(row.get("output_tokens_per_s"), 1) for row in rows],
        _("Start time"): [ui_i18n.seconds(row.get("ready_s")) for row in rows],
        _("Memory"): [ui_i18n.gib(jobs.memory_gib(row)) for row in rows],
    }
    return pd.DataFrame(columns)


def budget_for_rows(flag: str, rows: list[dict[str, Any]]) -> None:
    _ = ui_i18n.translator()
    with_budget = [row for row in rows if row.get("budget")]
    st.markdown("**:material/timer: " + _("Where the time of one request goes") + "**")
    if not with_budget:
        st.caption(_("No single request was split for these values."))
        return
    labels = [value_label(flag, row.get("value")) for row in with_budget]
    chosen = st.segmented_control(
        _("Value"), range(len(labels)), format_func=lambda i: labels[i], key=BUDGET_VALUE_KEY, default=0
    )
    draw_budget(with_budget[chosen if chosen is not None else 0]["budget"])


def draw_budget(budget: dict[str, Any]) -> None:
    _ = ui_i18n.translator()
    segments = [(s["key"], s["label"], float(s["ms"])) for s in budget.get("segments", [])]
    figure = measure_charts.latency_budget_figure(segments, _, title="")
    st.plotly_chart(figure, width="stretch", config=measure_charts.NO_BAR, key="impact.budget_chart")
    if budget.get("source") == "client":
        st.caption(
            _(
                "The server's own clocks were not available for this request, so the split uses the client's "
                "stopwatch: reading the prompt = time to first token, writing = the rest."
            )
        )
    else:
        st.caption(_("Split by the server's own clocks; delivery is the client's total minus the server's."))


def budget_now(snap: Any, payload: dict[str, Any]) -> None:
    """Split one request on the server as it runs now (when no measurement is using it)."""
    _ = ui_i18n.translator()
    job_busy = jobs.get_job().is_running()
    if st.button(
        _("Split one request now"),
        icon=":material/timer:",
        disabled=snap.status != "ready" or job_busy,
        key="impact.budget_now",
    ) and ui_roles.order_allowed(state.get_manager()):
        body = {**payload, "model": snap.served_name}
        with st.spinner(_("Sending one request…")):
            result, timing = budget_mod.measure_budget(
                snap.base_url, body, api_key=state.get_manager().api_key
            )
        if timing.ok:
            st.session_state[BUDGET_KEY] = result.to_dict()
        else:
            st.error(_("The request failed: {error}").format(error=timing.error), icon=":material/error:")
    if snap.status != "ready":
        st.caption(_("Start the factory to split a request now."))
    if BUDGET_KEY in st.session_state:
        draw_budget(st.session_state[BUDGET_KEY])


# ------------------------------------------------------------------------------------------ the whole table


def table_frame(store: Any, backend: str) -> pd.DataFrame:
    _ = ui_i18n.translator()
    data = table_view.latest_table(store)
    lang = ui_i18n.current_language()
    return table_view.table_frame(
        data, backend, lang, ui_i18n.tr, _("Not measured yet."), _("Factory analogy")
    )


def values_label(name: str, values: list[Any]) -> str:
    return ", ".join(value_label(name, v) for v in values)


def table_section(store: Any, backend: str, snap: Any, forms: dict[str, Any]) -> None:
    _ = ui_i18n.translator()
    st.markdown(
        _(
            "The recipe table of the brief, with its empty last column filled in by measurements on this "
            "machine. Each flag gets a few values; every value is one restart of the real server."
        )
    )
    data = table_view.latest_table(store)
    if data is not None:
        st.caption(handout.machine_line(data, ui_i18n.current_language()))
        st.caption(handout.noise_line(data, ui_i18n.current_language()))
    st.dataframe(table_frame(store, backend), hide_index=True, width="stretch")
    if data is not None:
        table_downloads(data)
    table_controls(backend, snap)


def table_downloads(data: dict[str, Any]) -> None:
    _ = ui_i18n.translator()
    lang = ui_i18n.current_language()
    left, right = st.columns(2)
    left.download_button(
        _("Handout (Markdown)"),
        handout.table_markdown(data, lang),
        f"lego-table-{lang}.md",
        "text/markdown",
        icon=":material/description:",
        key="impact.table_md",
    )
    if right.button(_("Prepare a printable handout (PNG)"), icon=":material/print:", key="impact.table_png"):
        with st.spinner(_("Drawing the handout…")):
            st.session_state["impact.table_png_bytes"] = handout.table_image(data, lang, "png")
    if "impact.table_png_bytes" in st.session_state:
        right.download_button(
            _("Handout (PNG)"),
            st.session_state["impact.table_png_bytes"],
            f"lego-table-{lang}.png",
            "image/png",
            icon=":material/image:",
            key="impact.table_png_download",
        )


def table_controls(backend: str, snap: Any) -> None:
    _ = ui_i18n.translator()
    running = snap.status == "ready" and snap.config is not None
    left, right = st.columns(2)
    orders = left.number_input(
        _("Orders per value to begin with"),
        2,
        40,
        5,
        key="impact.table_orders",
        help=_("More orders are added by themselves until the verdict is clear or the time is up."),
    )
    plan = table_view.plan_for(base_config(snap), backend, int(orders), None)
    suggested = max(1, round(plan.estimate_seconds() * 1.5 / 60))
    minutes = right.number_input(_("Minutes at most"), 1, 240, suggested, key="impact.table_minutes")
    plan = table_view.plan_for(base_config(snap), backend, int(orders), float(minutes))
    st.caption(
        _("{starts} restarts of the real server, {duration} in all.").format(
            starts=ui_i18n.number(plan.starts), duration=duration_text(plan.estimate_seconds())
        )
    )
    restore = st.checkbox(
        _("Put the factory back as it was afterwards"),
        value=running,
        key="impact.table_restore" if running else "impact.table_restore.off",
        disabled=not running,
    )
    busy = jobs.get_job().is_running()
    if st.button(
        _("Fill the whole table"),
        type="primary",
        icon=":material/play_arrow:",
        disabled=busy or not ui_roles.is_presenter(),
        key="impact.run.table",
    ):
        start_job(
            table_view.job_request(plan, snap.config if (restore and running) else None, state.backend())
        )
        st.rerun()
    if busy:
        st.caption(_("A measurement is running; a new one can start when it ends."))


# ------------------------------------------------------------------------------------------ page


def notice() -> None:
    ui_roles.refused_notice()
    ui_roles.visitor_line()
    message = st.session_state.pop(NOTICE_KEY, None)
    if message is not None:
        kind, text = message
        (st.warning if kind == "warning" else st.info)(text, icon=":material/info:")


def page() -> None:
    _ = ui_i18n.translator()
    manager = state.get_manager()
    snap = manager.snapshot()
    store = state.get_store()
    backend = state.backend()
    st.title(_("What does each flag do to response time?"))
    st.markdown(
        _(
            "Move one flag at a time and measure on this machine: the factory restarts the real server for "
            "each value and sends the same orders every time."
        )
    )
    notice()
    progress_section()
    mode = st.segmented_control(
        _("What to measure"),
        MODES,
        key=MODE_KEY,
        default="one",
        required=True,
        format_func=lambda m: _("One flag") if m == "one" else _("The whole table"),
    )
    if mode == "table":
        table_section(store, backend, snap, {})
        return
    with st.container(border=True):
        flag, values = flag_form(backend)
        workload, payload = workload_form()
        requests, concurrency = load_form()
        forms = {"workload": workload, "payload": payload, "requests": requests, "concurrency": concurrency}
        st.caption(
            _("Everything else stays as {where}.").format(
                where=_("the running server")
                if snap.config is not None
                else _("the factory floor's settings")
            )
        )
        run_controls([(flag, values)] if values else None, "one", snap, forms)
    results_section(flag, store)
    with st.expander(_("Split one request on the server as it runs now"), icon=":material/timer:"):
        budget_now(snap, payload)


page()
