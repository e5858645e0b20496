"""The sidebar every page shares: the language switch, the server's status and the machine it runs on."""

from __future__ import annotations

import streamlit as st

from dashboard.engine import flag_texts, hardware
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import memory_marks, state

SEEN_STATUS_KEY = "app.seen_status"
STATUS_LOOK = {
    "stopped": ("gray", ":material/power_settings_new:"),
    "starting": ("orange", ":material/hourglass_top:"),
    "ready": ("green", ":material/check_circle:"),
    "failed": ("red", ":material/error:"),
    "stopping": ("orange", ":material/hourglass_bottom:"),
}


def status_text(status: str) -> str:
    _ = ui_i18n.translator()
    return {
        "stopped": _("Stopped"),
        "starting": _("Starting…"),
        "ready": _("Ready for orders"),
        "failed": _("Start failed"),
        "stopping": _("Stopping…"),
    }.get(status, status)


def language_switch() -> None:
    st.segmented_control(
        "Language · Ngôn ngữ",
        list(ui_i18n.LANGUAGE_NAMES),
        key=ui_i18n.LANG_KEY,
        format_func=ui_i18n.LANGUAGE_NAMES.get,
        required=True,
        label_visibility="collapsed",
    )


@st.fragment(run_every=2.0)
def server_status() -> None:
    """Polls the shared server; when its status moved since this page was drawn, redraws the page."""
    _ = ui_i18n.translator()
    snap = state.get_manager().snapshot()
    state.record_finished_start(snap)
    if st.session_state.get(SEEN_STATUS_KEY, snap.status) != snap.status:
        st.session_state[SEEN_STATUS_KEY] = snap.status
        st.rerun(scope="app")
    colour, icon = STATUS_LOOK.get(snap.status, ("gray", ":material/help:"))
    st.markdown("**" + _("Server") + "**")
    st.badge(status_text(snap.status), color=colour, icon=icon)
    if snap.status == "ready" and snap.served_name:
        st.caption(snap.served_name)


def machine_line() -> None:
    _ = ui_i18n.translator()
    machine = state.machine()
    backend_name = ui_i18n.tr(flag_texts.BACKEND_NAMES.get(machine.backend, machine.backend))
    st.markdown("**" + _("Runs on") + "**")
    st.badge(
        backend_name,
        color="blue",
        icon=":material/memory:" if machine.backend == "cpu" else ":material/developer_board:",
    )
    if machine.backend == "cuda" and machine.device_names:
        st.caption(
            _("{count} × {name}, {memory} in all").format(
                count=machine.gpu_count,
                name=machine.device_names[0],
                memory=ui_i18n.gib(machine.total_memory_gib),
            )
        )
    else:
        st.caption(_("{memory} of RAM").format(memory=ui_i18n.gib(machine.total_memory_gib)))
    version = hardware.vllm_version()
    if version:
        st.caption(_("vLLM {version}").format(version=version))


def history_alert() -> None:
    """A history write that failed is said on every page, with what to do (never swallowed)."""
    problem = state.history_problem()
    if problem is None:
        return
    _ = ui_i18n.translator()
    st.error(
        _(
            "The history could not be saved ({error}). What you measure now is shown but not kept: free "
            "some disk space, or close the program that holds the history file, then try again."
        ).format(error=problem.error),
        icon=":material/database:",
    )


def draw_sidebar() -> None:
    st.session_state[SEEN_STATUS_KEY] = state.get_manager().snapshot().status
    memory_marks.ensure_started()  # memory samples and restart marks from the app's first page on
    with st.sidebar:
        language_switch()
        server_status()
        machine_line()
        history_alert()
