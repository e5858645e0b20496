"""Prompt playground: send one preset request to the running server and watch the answer arrive,
with its timings; then send many copies at once and see the lanes at work.
Request settings (max_tokens, temperature, JSON mode) travel with each request: no restart."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import streamlit as st

from dashboard.engine import presets
from dashboard.engine.presets import Preset, RequestSpec
from dashboard.engine.report import mask_config
from dashboard.measure import loadgen, request_errors
from dashboard.measure.client import RequestTiming, chat_once
from dashboard.ui import apply_compare, card_export, charts, load_view, state, widgets
from dashboard.ui import floor as floor_ui
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import playground_extras as extras
from dashboard.ui import roles as ui_roles

PRESET_KEY = "playground.preset"
FIRST_KEY = "playground.first_after_start"
RESULT_KEY = "playground.result"
BURST_KEY = "playground.burst"
SERVER_KEY = "playground.answered_by"
CHANGE_KEY = "playground.answer_change"
CARD_KEY = "playground.card"
XRAY_KEY = "playground.xray"
STREAM_REFRESH_S = 0.05
TEMPERATURES = tuple(round(step * 0.1, 1) for step in range(21))  # 0.0 to 2.0


# ------------------------------------------------------------------------------------------ request


def preset_choice() -> Preset:
    _ = ui_i18n.translator()
    options = list(presets.all_presets())
    extras.remember_preset(PRESET_KEY)
    if st.session_state.get(PRESET_KEY) not in options:
        st.session_state[PRESET_KEY] = options[0]
    name = st.selectbox(
        _("Preset request"),
        options,
        key=PRESET_KEY,
        format_func=lambda n: _(presets.get(n).title),
        persist_state="session",
    )
    extras.write_preset(name)
    preset = presets.get(name)
    st.caption(ui_i18n.tr(preset.description))
    return preset


def system_prompt(preset: Preset) -> None:
    _ = ui_i18n.translator()
    system = [m["content"] for m in preset.request.messages if m["role"] == "system"]
    if not system:
        return
    with st.expander(_("The shared opening (system prompt)"), icon=":material/menu_book:"):
        st.caption(
            _(
                "Every request of this preset starts with these words. With prefix caching on, "
                "the factory reads them once and copies them afterwards, like a worksheet on the board."
            )
        )
        st.code(system[0], language=None, wrap_lines=True)


def user_message(preset: Preset) -> str:
    _ = ui_i18n.translator()
    original = next((m["content"] for m in preset.request.messages if m["role"] == "user"), "")
    return st.text_area(
        _("The customer's message (you can edit it)"),
        value=original,
        key=f"playground.user.{preset.name}",
        height=130,
        persist_state="session",
    )


def request_settings(preset: Preset) -> tuple[bool, int, float]:
    _ = ui_i18n.translator()
    with st.container(border=True):
        st.markdown("**:material/tune: " + _("Request settings") + "**")
        st.caption(_("These travel with each request, so changing them never restarts the factory."))
        has_schema = preset.json_schema is not None
        json_mode = st.toggle(
            _("JSON answer (follow the schema)"),
            value=preset.request.schema is not None,
            key=f"playground.json.{preset.name}",
            disabled=not has_schema,
            help=_(
                "The server may only write JSON that fits the preset's schema: one emotion and learn_score."
            ),
            persist_state="session",
        )
        max_tokens = st.slider(
            _("Longest answer (max_tokens)"),
            min_value=1,
            max_value=512,
            value=preset.request.max_tokens,
            key=f"playground.max_tokens.{preset.name}",
            persist_state="session",
        )
        lang = ui_i18n.current_language()  # bound now: the format is also called outside this run
        temperature = st.select_slider(  # a select slider writes 0,7 in Vietnamese (a slider writes 0.70)
            _("Creativity (temperature)"),
            options=TEMPERATURES,
            value=min(TEMPERATURES, key=lambda t: abs(t - float(preset.request.temperature))),
            format_func=lambda t: ui_i18n.number(t, 1, lang=lang),
            key=f"playground.temperature.{preset.name}",
            help=_("0 always picks the most likely next word; higher values pick more freely."),
            persist_state="session",
        )
    return json_mode, max_tokens, temperature


def build_request(
    preset: Preset, user_text: str, json_mode: bool, max_tokens: int, temperature: float
) -> RequestSpec:
    spec = preset.request.with_user_text(user_text)
    schema = preset.json_schema if json_mode else None
    return replace(spec, max_tokens=max_tokens, temperature=temperature, schema=schema)


# ------------------------------------------------------------------------------------------ one request


@st.cache_resource(show_spinner=False)
def _answered_starts() -> set[float]:
    """Starts of the shared server that have already served a playground request (all sessions)."""
    return set()


def first_answer_of_this_start(snap: Any) -> bool:
    answered = _answered_starts()
    first = snap.started_at not in answered
    answered.add(snap.started_at)
    return first


def send_once(snap: Any, request: RequestSpec, json_mode: bool, box: Any) -> RequestTiming:
    """Stream one answer into `box` (updated from this script's own thread) and return its timing."""
    manager = state.get_manager()
    parts: list[str] = []
    last_draw = [0.0]

    def on_text(piece: str) -> None:
        parts.append(piece)
        now = time.perf_counter()
        if now - last_draw[0] >= STREAM_REFRESH_S:
            last_draw[0] = now
            box.markdown(_answer_markdown("".join(parts) + " ▌", json_mode))

    payload = request.payload(snap.served_name, stream=True, json_mode=json_mode)
    apply_compare.remember_order(payload)
    timing = chat_once(snap.base_url, payload, api_key=manager.api_key, on_text=on_text, timeout=120)
    box.markdown(_answer_markdown(timing.text, json_mode))
    return timing


def _answer_markdown(text: str, json_mode: bool) -> str:
    if json_mode:
        return f"```json\n{text}\n```"
    return text.replace("\n", "  \n") if text else "…"


def tokens_per_second(timing: RequestTiming) -> float | None:
    """Writing speed once the answer has started: tokens after the first, over the time after the first."""
    if not timing.completion_tokens or timing.completion_tokens < 2 or timing.ttft_ms is None:
        return None
    writing_ms = timing.e2e_ms - timing.ttft_ms
    return (timing.completion_tokens - 1) / (writing_ms / 1000) if writing_ms > 0 else None


def show_timing(timing: RequestTiming, json_mode: bool) -> None:
    _ = ui_i18n.translator()
    if not timing.ok:
        extras.explain_failure(timing, None)
        return
    columns = [*st.columns(3), *st.columns(3)]  # two rows: long Vietnamese labels are not cut
    columns[0].metric(
        _("First token after"),
        ui_i18n.milliseconds(timing.ttft_ms),
        help=_("Time to first token (TTFT): how long the customer waits before the first piece arrives."),
    )
    columns[1].metric(
        _("Time per next token"),
        ui_i18n.milliseconds(timing.mean_itl_ms()),
        help=_("Mean inter-token latency: the gap between two pieces of the answer."),
    )
    columns[2].metric(_("Tokens per second"), ui_i18n.number(tokens_per_second(timing), 1))
    columns[3].metric(_("Question tokens"), ui_i18n.number(timing.prompt_tokens))
    columns[4].metric(_("Answer tokens"), ui_i18n.number(timing.completion_tokens))
    st.caption(_("Whole answer in {total}.").format(total=ui_i18n.milliseconds(timing.e2e_ms)))
    if timing.finish_reason == "length":
        st.warning(
            _(
                "The answer was cut off: it reached max_tokens, like a belt that ends before the model is "
                "finished. "
                "Raise \u201cLongest answer\u201d to let it finish."
            ),
            icon=":material/content_cut:",
        )
    if json_mode:
        try:
            json.loads(timing.text)
            st.badge(_("valid JSON"), color="green", icon=":material/data_object:")
        except ValueError:
            st.badge(_("not valid JSON"), color="red", icon=":material/data_object:")


def save_reply(
    snap: Any, preset: Preset, request: RequestSpec, json_mode: bool, timing: RequestTiming
) -> None:
    store = state.get_store()
    if store is None:
        return
    try:
        run_id = store.create_run(
            "playground", mask_config(snap.config), label=preset.name, backend=state.backend()
        )
        if not timing.ok:  # a refused order has no latency worth keeping: only why it failed
            problem = request_errors.explain(timing.error, request.max_tokens)
            store.finish_run(run_id, {"error": problem.code}, status="failed")
            return
        row = timing.to_dict() | {
            "json_mode": json_mode,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        store.add_row(run_id, row)
        store.finish_run(
            run_id,
            {"ttft_ms": timing.ttft_ms, "e2e_ms": timing.e2e_ms, "mean_itl_ms": timing.mean_itl_ms()},
            status="done" if timing.ok else "failed",
        )
    except Exception:  # the history is a bonus: never lose the answer because of it
        pass


# ------------------------------------------------------------------------------------------ many at once


def send_burst(snap: Any, request: RequestSpec, json_mode: bool, plan: Any) -> Any:
    from dashboard.measure import loadgen

    manager = state.get_manager()
    workload = loadgen.Workload.from_request(request, json_mode=json_mode, label="playground-burst")
    # a process of its own: the page's other threads must not hold the load generator back
    return loadgen.run_load_isolated(
        snap.base_url, snap.served_name, workload, plan, api_key=manager.api_key, watch_metrics=True
    )


def show_burst(result: Any, lanes: int | None, single_e2e_ms: float | None) -> None:
    _ = ui_i18n.translator()
    ngettext = ui_i18n.plural_translator()
    copies = result.sent
    columns = st.columns(4)
    columns[0].metric(_("Whole group served in"), ui_i18n.seconds(result.duration_s))
    columns[1].metric(_("Answers per second"), ui_i18n.number(result.requests_per_s, 1))
    columns[2].metric(_("Answer tokens per second"), ui_i18n.number(result.output_tokens_per_s, 0))
    columns[3].metric(_("Middle first-token wait"), ui_i18n.milliseconds(result.ttft_ms.p50))
    ttfts = sorted(t.ttft_ms for t in result.timings if t.ok and t.ttft_ms is not None)
    figure = charts.burst_ttft_figure(ttfts, lanes=lanes, _=_, lang=ui_i18n.current_language())
    st.plotly_chart(figure, width="stretch", config={"displayModeBar": False}, key="playground.burst_chart")
    load_view.show_clocks(getattr(result, "clocks", None))
    story = ngettext(
        "{n} customer arrived: one lane served them.",
        "{n} customers arrived together: the lanes served them side by side, "
        "so the whole group was done in {total}.",
        copies,
    ).format(n=ui_i18n.number(copies), total=ui_i18n.seconds(result.duration_s))
    st.markdown(f":material/groups: {story}")
    if single_e2e_ms and copies > 1:
        st.caption(
            _(
                "One after another, at the speed of your single request ({single}), they would have needed "
                "about {serial}."
            ).format(
                single=ui_i18n.milliseconds(single_e2e_ms),
                serial=ui_i18n.seconds(single_e2e_ms * copies / 1000),
            )
        )
    if lanes is not None and copies > lanes:
        waiting = copies - lanes
        st.caption(
            ngettext(
                "Only {lanes} lanes are open, so {waiting} customer waited in the queue first (orange bar).",
                "Only {lanes} lanes are open, so {waiting} customers waited in the queue first (orange "
                "bars).",
                waiting,
            ).format(lanes=ui_i18n.number(lanes), waiting=ui_i18n.number(waiting))
        )
    st.caption(
        _("Bars are sorted from the fastest to the slowest first token; each bar is one copy of the request.")
    )
    if result.errors:
        st.error(
            ngettext("{n} copy failed.", "{n} copies failed.", result.errors).format(n=result.errors),
            icon=":material/error:",
        )


def save_burst(snap: Any, preset: Preset, result: Any) -> None:
    store = state.get_store()
    if store is None:
        return
    try:
        run_id = store.create_run(
            "load", mask_config(snap.config), label=f"{preset.name} ×{result.sent}", backend=state.backend()
        )
        for timing in result.timings:
            store.add_row(run_id, timing.to_dict())
        store.finish_run(
            run_id, result.to_dict(with_timings=False), status="done" if not result.errors else "failed"
        )
    except Exception:
        pass


# ------------------------------------------------------------------------------------------ page


def not_ready_notice(snap: Any) -> None:
    _ = ui_i18n.translator()
    manager = state.get_manager()
    if snap.busy:
        st.info(
            _("The factory is being rebuilt. The Send button wakes up as soon as it is ready."),
            icon=":material/hourglass_top:",
        )
        return
    st.info(
        _(
            "The factory is not running, so there is nobody to answer yet. Start it here or on the factory "
            "floor."
        ),
        icon=":material/power_settings_new:",
    )
    with st.container(horizontal=True, gap="small"):
        if st.button(
            _("Start the factory"),
            type="primary",
            icon=":material/play_arrow:",
            key="playground.start",
            disabled=not ui_roles.is_presenter(),
        ):
            pending = widgets.pending_config(state.starting_config)
            config = ui_roles.checked_apply(manager, pending, _("start the factory"))
            if config is not None and not manager.apply(config):
                st.warning(
                    _("A restart is already under way: wait a moment."), icon=":material/hourglass_top:"
                )
            st.rerun()
        st.page_link("app_pages/factory.py", label=_("Go to the factory floor"), icon=":material/factory:")


def page() -> None:
    _ = ui_i18n.translator()
    snap = state.get_manager().snapshot()
    st.title(_("Prompt playground"))
    st.markdown(
        _("Send a real request to the factory and watch the answer arrive, piece by piece, with its timings.")
    )
    ready = snap.status == "ready"
    ui_roles.refused_notice()
    if not ready:
        not_ready_notice(snap)

    left, right = st.columns([3, 2], gap="large")
    with left:
        preset = preset_choice()
        system_prompt(preset)
        user_text = user_message(preset)
    with right:
        json_mode, max_tokens, temperature = request_settings(preset)
    request = build_request(preset, user_text, json_mode, max_tokens, temperature)
    extras.judgement_note(preset.name)
    if st.session_state.get(SERVER_KEY) != extras.server_identity(snap):
        answers = (RESULT_KEY, BURST_KEY, FIRST_KEY, CHANGE_KEY, CARD_KEY, XRAY_KEY)
        for key in answers:  # answers of another server: cleared
            st.session_state.pop(key, None)

    st.subheader(":material/chat: " + _("One customer"))
    send = st.button(
        _("Send"), type="primary", icon=":material/send:", disabled=not ready, key="playground.send"
    )
    send = send and ui_roles.order_allowed(state.get_manager())
    if send:
        payload = request.payload(snap.served_name, stream=True, json_mode=json_mode)
        send = not extras.refuse_if_too_long(snap, payload, f"playground.max_tokens.{preset.name}")
    box = st.empty()
    if send or RESULT_KEY in st.session_state:
        box = st.chat_message("assistant", avatar=":material/smart_toy:").empty()
    if send:
        timing = send_once(snap, request, json_mode, box)
        st.session_state[RESULT_KEY] = (timing, json_mode)
        st.session_state[SERVER_KEY] = extras.server_identity(snap)
        st.session_state[FIRST_KEY] = first_answer_of_this_start(snap) and timing.ok
        st.session_state[CHANGE_KEY] = extras.answer_change(
            request.payload(snap.served_name, json_mode=json_mode), timing, snap
        )
        save_reply(snap, preset, request, json_mode, timing)
    elif RESULT_KEY in st.session_state:
        timing, shown_json = st.session_state[RESULT_KEY]
        box.markdown(_answer_markdown(timing.text, shown_json))
    if RESULT_KEY in st.session_state:
        timing, shown_json = st.session_state[RESULT_KEY]
        if timing.ok:
            st.caption(extras.settings_line(snap.config))
        show_timing(timing, shown_json)
        extras.answer_change_badge(st.session_state.get(CHANGE_KEY))
        extras.pika_free_text_note(preset.name, timing, user_text)
        if timing.ok and st.session_state.get(FIRST_KEY):
            st.info(
                _(
                    "This was the first order since the factory was rebuilt: the machines were still warming "
                    "up, so it took longer. Send it again to see the usual time."
                ),
                icon=":material/local_fire_department:",
            )

    st.subheader(":material/groups: " + _("Send it N times at once"))
    st.caption(
        _("Many customers arrive at the same moment. Watch how the open lanes (max-num-seqs) share the work.")
    )
    copies = st.slider(
        _("Customers arriving together (N)"), 1, 64, 8, key="playground.copies", persist_state="session"
    )
    plan = load_view.shape_plan(copies)
    if st.button(
        _("Send {n} at once").format(n=copies),
        icon=":material/rocket_launch:",
        disabled=not ready,
        key="playground.burst_button",
    ) and ui_roles.order_allowed(state.get_manager(), copies):
        with (
            st.spinner(_("Serving {n} customers…").format(n=copies)),
            # the server is this load test's while it runs: other sessions wait (and are told why)
            ui_roles.holding(state.get_manager(), ui_roles.BURST, ui_roles.BURST_HOLD_S),
        ):
            result = floor_ui.while_watching(
                lambda: send_burst(snap, request, json_mode, plan), "playground.floor"
            )
        st.session_state[XRAY_KEY] = load_view.collect_xray(result)  # after the hold: others may order
        st.session_state[BURST_KEY] = result
        st.session_state[SERVER_KEY] = extras.server_identity(snap)  # kept over re-runs (a language switch)
        save_burst(snap, preset, result)
        workload = loadgen.Workload.from_request(request, json_mode=json_mode, label="playground-burst")
        st.session_state[CARD_KEY] = card_export.load_card(snap, workload, plan, result, preset.name)
    if BURST_KEY in st.session_state:
        lanes = snap.config.get("max_num_seqs") if snap.config is not None else None
        single = st.session_state[RESULT_KEY][0].e2e_ms if RESULT_KEY in st.session_state else None
        show_burst(st.session_state[BURST_KEY], lanes, single)
        load_view.show_xray(st.session_state.get(XRAY_KEY), "playground.xray_chart")
        card_export.download_button(st.session_state.get(CARD_KEY), "playground.card_download")
    floor_ui.live_floor("playground.floor")


page()
