"""Factory floor: every server flag as a control, a prediction of the memory before any restart,
and the Apply button that rebuilds the real vLLM server, phase by phase."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from dashboard.classroom import doors
from dashboard.engine import config as config_mod
from dashboard.engine import flag_texts, flags, presets
from dashboard.engine.carousel import config_key
from dashboard.engine.config import ServerConfig
from dashboard.engine.problems import Problem
from dashboard.engine.report import mask_secrets
from dashboard.measure.predict import GIB, MemoryPrediction, predict
from dashboard.ui import apply_compare, carousel_view, charts, checks, compare_view, state, widgets
from dashboard.ui import floor as floor_ui
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import roles as ui_roles

MODEL_KEY = "factory.model"
PRESET_KEY = "factory.preset"
GROUP_KEY = "factory.group"
# A plain copy of the chosen group: Streamlit drops a widget's state after a run that did not draw it (an
# interrupted run can look like that), and the switch would then jump back to the first group.
CHOSEN_GROUP_KEY = "factory.group.chosen"
NOTICE_KEY = "factory.notice"
PORT_SEEN_KEY = "factory.port_followed"  # the served server whose port the controls last followed
LIVE_STATUSES = ("starting", "ready", "stopping")


# ------------------------------------------------------------------------------------------ actions


def _apply(manager: Any, config: ServerConfig) -> None:
    """Ask for a restart in the background; a polite note when one is already under way."""
    _ = ui_i18n.translator()
    config = ui_roles.checked_apply(manager, config, _("rebuild the factory"))
    if config is None:
        return
    if apply_compare.apply(manager, config):
        st.session_state[NOTICE_KEY] = ("info", _("The factory is being rebuilt with your settings."))
    else:
        st.session_state[NOTICE_KEY] = (
            "warning",
            _(
                "A restart is already under way, so this one was not started. "
                "Your settings are kept here: press the button again once the factory is ready."
            ),
        )


def _use_suggestion(flag_name: str, value: Any, manager: Any = None) -> None:
    pending = widgets.pending_config(state.starting_config)
    updated = pending.with_values({flag_name: value})
    widgets.set_pending(updated)
    if manager is not None:
        _apply(manager, updated)


def _load_preset(name: str) -> None:
    _ = ui_i18n.translator()
    preset = presets.get(name)
    pending = widgets.pending_config(state.starting_config)
    widgets.set_pending(pending.with_values(preset.flags))
    st.session_state["playground.preset"] = name
    st.session_state[NOTICE_KEY] = (
        "info",
        _(
            "Preset \u201c{title}\u201d loaded into the controls. Press Apply to rebuild the factory with it."
        ).format(title=ui_i18n.tr(preset.title)),
    )


def _reset_to_server(config: ServerConfig) -> None:
    widgets.set_pending(config)
    st.session_state[MODEL_KEY] = config.model


def _stop(manager: Any) -> None:
    _ = ui_i18n.translator()
    if ui_roles.require_presenter(_("stop the factory")) and ui_roles.not_held(manager):
        manager.stop()


# ------------------------------------------------------------------------------------------ top row


def status_card(snap: Any) -> None:
    _ = ui_i18n.translator()
    with st.container(border=True, key="factory-status"):
        st.markdown("**" + _("The factory now") + "**")
        crashed = (
            snap.status == "failed" and snap.problem is not None and snap.problem.code == "server_crashed"
        )
        text, colour, icon = (
            (_("Crashed"), "red", ":material/heart_broken:") if crashed else status_badge(snap.status)
        )
        st.badge(text, color=colour, icon=icon)
        if crashed:
            st.caption(_("It stopped on its own while it was running: its last log lines are below."))
        elif snap.status == "ready":
            st.caption(_("Taking orders at {url}").format(url=f"`{snap.base_url}`"))
            if snap.report is not None and snap.report.ready_s is not None:
                st.caption(_("Ready after {seconds}.").format(seconds=ui_i18n.seconds(snap.report.ready_s)))
        elif snap.status == "stopped":
            st.caption(_("Nothing is running. Choose your settings and press Start."))
        elif snap.status == "failed":
            st.caption(_("The last start failed: read why below."))


def status_badge(status: str) -> tuple[str, str, str]:
    _ = ui_i18n.translator()
    return {
        "stopped": (_("Stopped"), "gray", ":material/power_settings_new:"),
        "starting": (_("Starting…"), "orange", ":material/hourglass_top:"),
        "ready": (_("Ready for orders"), "green", ":material/check_circle:"),
        "failed": (_("Start failed"), "red", ":material/error:"),
        "stopping": (_("Stopping…"), "orange", ":material/hourglass_bottom:"),
    }.get(status, (status, "gray", ":material/help:"))


def preset_picker() -> None:
    _ = ui_i18n.translator()
    options = list(presets.all_presets())
    with st.container(border=True):
        name = st.selectbox(
            _("Preset"),
            options,
            key=PRESET_KEY,
            format_func=lambda n: _(presets.get(n).title),
        )
        st.caption(ui_i18n.tr(presets.get(name).description))
        st.button(
            _("Load into the controls"),
            icon=":material/download:",
            on_click=_load_preset,
            args=(name,),
            key="factory.load_preset",
        )


def model_box(pending: ServerConfig) -> str:
    _ = ui_i18n.translator()
    if MODEL_KEY not in st.session_state:
        st.session_state[MODEL_KEY] = pending.model
    with st.container(border=True):
        model = st.text_input(
            _("Model (the blueprint)"),
            key=MODEL_KEY,
            help=_("A Hugging Face id (for example Qwen/Qwen3-0.6B), a local folder, or embedded."),
            disabled=not ui_roles.is_presenter(),
        )
        st.caption(_("embedded = the built-in SmolLM2-135M-Instruct, ready without network."))
    return ui_roles.allowed_model(model, pending.model)


# ------------------------------------------------------------------------------------------ restart progress


def restart_progress(manager: Any) -> None:
    @st.fragment(run_every=1.0)
    def _poll() -> None:
        snap = apply_compare.as_seen(manager)
        if not snap.busy:
            st.rerun(scope="app")
        draw_phases(snap, serving=carousel_view.is_carousel(manager) and bool(manager.base_url))

    _poll()


def draw_phases(snap: Any, serving: bool = False) -> None:
    _ = ui_i18n.translator()
    started = snap.started_at or time.time()
    elapsed = max(0.0, time.time() - started)
    if snap.status == "stopping":
        label = _("Stopping the old factory…")
    else:
        label = _("Rebuilding the factory… {seconds} so far").format(seconds=ui_i18n.seconds(elapsed))
    # Not used as a context manager: leaving `with st.status(...)` would mark the box complete.
    box = st.status(label, state="running", expanded=True)
    for phase in snap.phases if snap.status == "starting" else ():  # never the old server's phases
        box.markdown(
            f":material/check_circle: {ui_i18n.tr(phase.label)} · "
            + _("after {seconds}").format(seconds=ui_i18n.seconds(phase.seconds))
        )
    if snap.status == "starting":
        box.markdown(":material/hourglass_top: " + _("Waiting for the next step…"))
    box.caption(_("Earlier results stay below while the factory is rebuilt."))
    if serving:
        box.caption(
            ":material/sync: " + _("The server in use keeps taking orders until the new one is ready.")
        )


def problem_box(problem: Problem, manager: Any, failed_start: bool, predicted: bool = False) -> None:
    """A problem in plain words, the log line behind it, and a one-click fix when there is one."""
    _ = ui_i18n.translator()
    lang = ui_i18n.current_language()
    if predicted:
        st.warning(_("Predicted: {problem}").format(problem=problem.text(lang)), icon=":material/warning:")
    else:
        st.error(problem.text(lang), icon=":material/error:")
    if problem.root_cause:
        with st.expander(_("Root cause, from the server log"), icon=":material/bug_report:"):
            st.code(problem.root_cause, language=None, wrap_lines=True)
    if problem.suggestion is not None and problem.flag:
        flag = flags.get(problem.flag)
        value = widgets.value_text(flag, problem.suggestion)
        label = (
            _("Use {value} for {cli} and start again") if failed_start else _("Use {value} for {cli}")
        ).format(value=value, cli=flag.cli)
        st.button(
            label,
            type="primary" if failed_start else "secondary",
            icon=":material/build:",
            key=f"factory.fix.{problem.code}.{problem.flag}",
            on_click=_use_suggestion,
            args=(problem.flag, problem.suggestion, manager if failed_start else None),
        )


# ------------------------------------------------------------------------------------------ flag groups


def group_label(group: str, pending: ServerConfig, baseline: ServerConfig, backend: str, translate) -> str:
    """A group's name for the group switch, with how many of its flags wait for Apply."""
    texts = flag_texts.group_texts(group)
    changed = sum(
        widgets.is_changed(
            flag, baseline.get(flag.name), widgets.current_value(flag, pending.get(flag.name), backend)
        )
        for flag in flags.in_group(group)
        if flag.has_effect_on(backend)
    )
    label = f"{texts.icon} {translate(texts.title)}"
    return f"{label} ({changed})" if changed else label


def flag_groups(
    pending: ServerConfig, baseline: ServerConfig, running: ServerConfig | None, backend: str
) -> dict:
    """The group switch, then the cards of the chosen group in a grid of two columns. Only that group's
    controls are drawn (a redraw stays quick); the other flags keep their pending values."""
    _ = ui_i18n.translator()
    if st.session_state.get(GROUP_KEY) not in flags.GROUPS:
        chosen = st.session_state.get(CHOSEN_GROUP_KEY)
        st.session_state[GROUP_KEY] = chosen if chosen in flags.GROUPS else flags.GROUPS[0]
    group = st.segmented_control(
        _("Part of the factory"),
        list(flags.GROUPS),
        key=GROUP_KEY,
        required=True,
        format_func=lambda g: group_label(g, pending, baseline, backend, _),
        label_visibility="collapsed",
        width="stretch",
    )
    st.session_state[CHOSEN_GROUP_KEY] = group
    values: dict[str, Any] = dict(pending.values)
    st.caption(_(flag_texts.group_texts(group).analogy))
    columns = st.columns(2, gap="medium")
    for index, flag in enumerate(flags.in_group(group)):
        with columns[index % 2]:
            values[flag.name] = widgets.draw_flag_card(
                flag,
                pending.get(flag.name),
                baseline.get(flag.name),
                running.get(flag.name) if running else None,
                backend,
            )
            _door_warnings(flag.name, values[flag.name])
    return values


def _door_warnings(name: str, value: Any) -> None:
    _ = ui_i18n.translator()
    if name == "host" and value == "0.0.0.0":
        st.warning(
            _(
                "The door is open to the whole network: anyone who can reach this computer can place orders. "
                "Set a door key (API key) below; Apply stays locked until you do."
            ),
            icon=":material/door_open:",
        )
    if name == "trust_remote_code" and value:
        st.warning(
            _(
                "Master key on: the model's own files may run Python code on this computer without a check. "
                "Keep it on only for models from people you trust."
            ),
            icon=":material/key:",
        )


# ------------------------------------------------------------------------------------------ control room


def changes_summary(pending: ServerConfig, baseline: ServerConfig) -> list[str]:
    _ = ui_i18n.translator()
    changed = [
        name
        for name, flag in flags.catalog().items()
        if widgets.is_changed(flag, baseline.get(name), pending.get(name))
    ]
    if pending.model != baseline.model:
        changed.append("model")
    if not changed:
        st.caption(_("No changes waiting: every control matches the server."))
        return changed
    st.markdown("**" + _("Changes waiting for Apply") + "**")
    with st.container(horizontal=True, gap="small"):
        for name in changed:
            if name == "model":
                st.badge(
                    _("model: {old} → {new}").format(old=baseline.model, new=pending.model), color="orange"
                )
                continue
            flag = flags.get(name)
            old = widgets.value_text(flag, baseline.get(name))
            new = widgets.value_text(flag, pending.get(name))
            st.badge(f"{flag.cli}: {old} → {new}", color="orange")
    return changed


def apply_panel(
    manager: Any,
    snap: Any,
    pending: ServerConfig,
    baseline: ServerConfig,
    backend: str,
    prediction: MemoryPrediction | None = None,
) -> None:
    _ = ui_i18n.translator()
    changed = changes_summary(pending, baseline)
    live_config = snap.config if snap.status in LIVE_STATUSES else None
    running_port = live_config.get("port") if live_config is not None else None
    if carousel_view.is_carousel(manager):
        running_port = pending.get("port")  # the carousel moves a server to the next free port by itself
    checked = checks.check(pending, running_port, prediction)
    if checked.model_problem:
        problem_box(checked.model_problem, manager, failed_start=False)
    problems = [p for p in checked.problems if checked.is_blocking(p)]
    for problem in checked.problems:
        problem_box(problem, manager, failed_start=False, predicted=not checked.is_blocking(problem))
    live = snap.status in LIVE_STATUSES
    label = _("Apply and restart") if live else _("Start the factory")
    nothing_to_do = live and not changed and snap.status == "ready"
    confirmed = ui_roles.confirm_dangers(pending)  # drawn even when something else blocks
    blocked = checked.blocked or nothing_to_do or not confirmed
    visitor = not ui_roles.is_presenter()
    with st.container(horizontal=True, gap="small"):
        if st.button(
            label,
            type="primary",
            icon=":material/play_arrow:",
            disabled=blocked or visitor or ui_roles.held(manager) is not None or snap.busy,
            key="factory.apply",
        ):
            _apply(manager, pending)
            st.rerun()
        if snap.status in ("starting", "ready", "failed"):
            st.button(
                _("Stop the factory"),
                icon=":material/stop:",
                key="factory.stop",
                on_click=_stop,
                args=(manager,),
                disabled=visitor,
            )
        if changed and snap.config is not None:
            st.button(
                _("Undo my changes"),
                icon=":material/undo:",
                key="factory.reset",
                on_click=_reset_to_server,
                args=(doors.hide_secrets(snap.config),),
            )
    carousel_view.preview_caption(manager, pending, bool(changed))
    ui_roles.visitor_line()
    ui_roles.held_notice(manager)
    if problems:
        st.caption(_("Fix the problems above to unlock the button."))
    elif nothing_to_do:
        st.caption(_("Move a control first: the server already runs with these settings."))
    if backend == "cpu" and pending.get("enforce_eager") is False:
        st.caption(_("Eager mode is off: on this CPU the start includes a compile step of about a minute."))


def compute_prediction(pending: ServerConfig, backend: str) -> MemoryPrediction | None:
    _facts, shape, _problem = state.model_facts(pending.model)
    if shape is None:
        return None
    machine = state.machine()
    return predict(pending, shape, backend, machine.total_memory_bytes, gpu_count=max(machine.gpu_count, 1))


def prediction_metrics(prediction: MemoryPrediction | None) -> None:
    _ = ui_i18n.translator()
    st.markdown("**:material/calculate: " + _("Predicted before any restart") + "**")
    if prediction is None:
        st.caption(_("The model's shape is not known offline, so there is nothing to predict yet."))
        return
    top, bottom = st.columns(2), st.columns(2)
    columns = [*top, *bottom]
    columns[0].metric(
        _("Model bricks"), ui_i18n.gib(prediction.weights_gib), help=_("The model's weights in memory.")
    )
    columns[1].metric(
        _("Room per token"),
        _("{value} KiB").format(value=ui_i18n.number(prediction.kv_bytes_per_token / 1024, 1)),
        help=_("Warehouse space one token of work in progress takes (its keys and values)."),
    )
    columns[2].metric(
        _("Warehouse tokens"),
        ui_i18n.number(prediction.kv_tokens),
        help=_("How many tokens of work in progress the warehouse (KV cache) holds."),
    )
    columns[3].metric(
        _("Full belts at once"),
        _("{value}×").format(value=ui_i18n.number(prediction.max_concurrency, 2))
        if prediction.max_concurrency is not None
        else "–",
        help=_("How many customers fit in the warehouse if each one fills the whole conveyor belt."),
    )


def prediction_chart(pending: ServerConfig, prediction: MemoryPrediction | None, snap: Any) -> None:
    _ = ui_i18n.translator()
    if prediction is None:
        return
    reserved = [d.reserved_bytes for d in prediction.devices if d.reserved_bytes is not None]
    figure = charts.memory_prediction_figure(
        prediction.weights_gib,
        prediction.kv_cache_gib,
        sum(reserved) / GIB if reserved else None,
        _=_,
        lang=ui_i18n.current_language(),
    )
    st.plotly_chart(figure, width="stretch", config={"displayModeBar": False}, key="factory.memory_chart")
    _lanes_hint(pending, prediction)
    _compare_with_measured(snap)


def _lanes_hint(pending: ServerConfig, prediction: MemoryPrediction) -> None:
    _ = ui_i18n.translator()
    lanes = pending.get("max_num_seqs")
    if prediction.max_concurrency is None or not lanes:
        return
    if lanes > prediction.max_concurrency:
        st.caption(
            _(
                "{lanes} lanes are open, but only about {belts} full belts fit in the warehouse: "
                "short orders all fit, very long ones would wait for room."
            ).format(lanes=ui_i18n.number(lanes), belts=ui_i18n.number(prediction.max_concurrency, 1))
        )


def _compare_with_measured(snap: Any) -> None:
    _ = ui_i18n.translator()
    report = snap.report
    if report is None or report.kv_cache_tokens is None or snap.status != "ready":
        return
    st.caption(
        _("The running server reported {tokens} tokens and {concurrency}× for its own settings.").format(
            tokens=ui_i18n.number(report.kv_cache_tokens),
            concurrency=ui_i18n.number(report.max_concurrency, 2),
        )
    )


def command_panel(pending: ServerConfig) -> None:
    _ = ui_i18n.translator()
    try:
        from dashboard.engine import models

        resolved = models.resolve(pending.model, prepare=False)
        words = config_mod.argv(pending, resolved.path, resolved.served_name)
    except Exception:  # an unknown model: show the command with the name as typed
        words = config_mod.argv(pending, pending.model, pending.model)
    st.markdown("**:material/terminal: " + _("The command for these settings") + "**")
    st.code(
        config_mod.command_prefix(pending) + " ".join(mask_secrets(words)), language="bash", wrap_lines=True
    )


def last_start_report(snap: Any) -> None:
    """The newest finished start; during a restart, the one before it (earlier results stay visible)."""
    _ = ui_i18n.translator()
    report = state.last_finished_report() if snap.busy else snap.report
    if report is None:
        return
    with st.container(border=True):
        title = _("Previous start") if snap.busy else _("Last start")
        st.markdown("**:material/assignment: " + title + "**")
        if report.ok:
            first, second = st.columns(2)
            first.metric(_("Ready after"), ui_i18n.seconds(report.ready_s))
            second.metric(_("Warehouse"), ui_i18n.gib(report.kv_cache_gib))
            third, fourth = st.columns(2)
            third.metric(_("Warehouse tokens"), ui_i18n.number(report.kv_cache_tokens))
            fourth.metric(
                _("Full belts at once"),
                _("{value}×").format(value=ui_i18n.number(report.max_concurrency, 2))
                if report.max_concurrency is not None
                else "–",
            )
        elif report.error is not None:
            st.caption(
                _("It did not reach ready: {reason}").format(
                    reason=report.error.text(ui_i18n.current_language())
                )
            )
        phases = [
            (ui_i18n.tr(_phase_label(entry["phase"])), float(entry["seconds"])) for entry in report.startup
        ]
        if phases:
            with st.expander(_("Where the start time went"), icon=":material/timer:", expanded=report.ok):
                figure = charts.startup_phases_figure(
                    phases, _=_, lang=ui_i18n.current_language(), titled=False
                )
                st.plotly_chart(
                    figure, width="stretch", config={"displayModeBar": False}, key="factory.phases_chart"
                )
        if report.command:
            with st.expander(_("The exact command of this start"), icon=":material/terminal:"):
                st.code(report.command_text, language="bash", wrap_lines=True)
        if report.log_tail and not report.ok:
            with st.expander(_("Last lines of the server log"), icon=":material/description:"):
                st.code("\n".join(report.log_tail[-20:]), language=None)


def _phase_label(name: str) -> str:
    from dashboard.engine.startup_log import PHASE_LABELS

    return PHASE_LABELS.get(name, name)


def notice() -> None:
    message = st.session_state.pop(NOTICE_KEY, None)
    if message is None:
        return
    kind, text = message
    (st.warning if kind == "warning" else st.info)(text, icon=":material/info:")


# ------------------------------------------------------------------------------------------ page


def follow_moved_port(pending: ServerConfig, served: ServerConfig | None, server: tuple) -> ServerConfig:
    """The carousel starts a new server on the next free port when a warm one holds the asked port. Once
    per served server, the door-number control follows it, so that no port change (which Apply would not
    make: the carousel tells its servers apart by everything but the port) is left waiting."""
    if served is None or st.session_state.get(PORT_SEEN_KEY) == server:
        return pending
    st.session_state[PORT_SEEN_KEY] = server
    if pending.get("port") == served.get("port") or config_key(pending) != config_key(served):
        return pending
    moved = pending.with_values({"port": served.get("port")})
    widgets.set_pending(moved)
    return moved


def page() -> None:
    _ = ui_i18n.translator()
    manager = state.get_manager()
    snap = apply_compare.as_seen(manager)  # no old state shown in the moment after Apply
    state.record_finished_start(snap)
    backend = state.backend()
    shown_config = doors.hide_secrets(snap.config)  # the key itself never reaches a browser
    pending = widgets.pending_config(lambda: shown_config or state.starting_config())
    baseline = shown_config or state.starting_config()
    running = shown_config if snap.status in LIVE_STATUSES else None
    if carousel_view.is_carousel(manager) and snap.status == "ready":
        pending = follow_moved_port(pending, shown_config, (snap.pid, snap.base_url))

    st.title(_("Factory floor"))
    st.markdown(
        _(
            "Every control below is a real vLLM flag. Move them, watch the prediction change, "
            "then press **Apply** to rebuild the real server and see what it says."
        )
    )
    notice()
    ui_roles.refused_notice()
    ui_roles.open_door_notice(snap)
    top = st.columns([1, 1.3, 1.3])
    with top[0]:
        status_card(snap)
    with top[1]:
        preset_picker()
    with top[2]:
        model = model_box(pending)

    if snap.busy:
        restart_progress(manager)
    elif snap.status == "failed" and snap.problem is not None:
        problem_box(snap.problem, manager, failed_start=True)
    elif snap.problem is not None:
        if carousel_view.last_start_launched(manager):
            st.warning(
                _("The new settings did not start, so the server in use kept answering:"),
                icon=":material/block:",
            )
        else:
            st.warning(
                _("Your last change did not start, so the factory kept the settings it had:"),
                icon=":material/block:",
            )
        problem_box(snap.problem, manager, failed_start=False)
    compare_view.latest_card()
    floor_ui.live_floor("factory.floor", open_by_default=False)  # open it to watch; the playground opens it
    if ui_roles.is_presenter():
        lesson = _("Start a lesson with the class")
        st.page_link("app_pages/lesson.py", label=lesson, icon=":material/school:")

    control_room = st.container(border=True, key="control_room")
    values = flag_groups(pending, baseline, running, backend)
    pending = ServerConfig(model=model, values={k: v for k, v in values.items() if v is not None})
    widgets.set_pending(pending, reseed=False)
    with control_room:
        apply_column, prediction_column = st.columns([1, 2], gap="large")
        prediction = compute_prediction(pending, backend)
        with apply_column:
            apply_panel(manager, snap, pending, baseline, backend, prediction)
        with prediction_column:
            prediction_metrics(prediction)
            carousel_view.whole_footprint_caption(manager, pending)
        prediction_chart(pending, prediction, snap)
    carousel_view.strip(manager)
    if (state.last_finished_report() if snap.busy else snap.report) is None:
        command_panel(pending)
        return
    report_column, command_column = st.columns([1, 1], gap="large")
    with report_column:
        last_start_report(snap)
    with command_column:
        command_panel(pending)


page()
