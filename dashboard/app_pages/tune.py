"""Tune for me: the learner asks a question (a request, a load, a goal, budgets), the tuner searches the
settings on the real server in the background, and the page shows the progress, then the best settings
with their command, the figures beside the starting settings and the brief's, every trial, and why."""

from __future__ import annotations

import streamlit as st

from dashboard.ui import i18n as ui_i18n
from dashboard.ui import roles as ui_roles
from dashboard.ui import state, tune_view

_ = ui_i18n.translator()
job = tune_view.get_job()

st.title(_("Tune for me"))
st.caption(
    _(
        "Ask a question: which settings answer this request fastest under this load? The tuner tries "
        "settings on the real server, keeps every measurement, checks the best ones again, and says "
        "which knobs mattered."
    )
)

request = tune_view.draw_question()
allowed = request is not None and ui_roles.require_presenter(_("start tuning"))
if allowed and not job.start(request, state.get_manager(), state.get_store()):
    st.warning(_("A tuning is already running; stop it first or wait for it."))


@st.fragment(run_every="1s")
def live_progress() -> None:
    snap = job.snapshot()
    if snap.running:
        tune_view.draw_progress(snap, job)
    else:  # finished: redraw the whole page with the result
        st.rerun()


snap = job.snapshot()
if snap.running:
    live_progress()
else:
    if snap.error:
        st.error(_("The tuning stopped because of an unexpected error."), icon=":material/error:")
        if ui_roles.is_presenter():  # the program's own words, one click away (they are not translated)
            with st.expander(_("Details")):
                st.code(snap.error, language=None, wrap_lines=True)
    report = snap.report or tune_view.last_report(state.get_store())
    if report:
        tune_view.draw_result(report)
ui_roles.refused_notice()
