"""The LEGO factory's front door: page setup, language, the sidebar, and the pages. It only routes."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.ui import i18n as ui_i18n  # noqa: E402
from dashboard.ui import layout, startup  # noqa: E402
from dashboard.ui import roles as ui_roles  # noqa: E402

PAGES_DIR = Path("app_pages")  # relative to this file, as st.Page expects
ASSETS_DIR = Path(__file__).resolve().parent / "ui" / "assets"

st.set_page_config(
    page_title="LEGO Factory · vLLM",
    page_icon=str(ASSETS_DIR / "brick.svg"),
    layout="wide",
    initial_sidebar_state="expanded",
)
startup.app_started()  # reap leftovers of an earlier app, once, before any page is drawn
ui_roles.role()  # presenter or visitor, decided once per session (the presenter key leaves the URL)
ui_i18n.setup_language()
_ = ui_i18n.translator()

st.logo(str(ASSETS_DIR / "brick.svg"), size="large")
pages = [
    st.Page(PAGES_DIR / "factory.py", title=_("Factory floor"), icon=":material/factory:", default=True),
    st.Page(PAGES_DIR / "playground.py", title=_("Prompt playground"), icon=":material/forum:"),
    st.Page(PAGES_DIR / "memory.py", title=_("Memory warehouse"), icon=":material/memory:"),
    st.Page(PAGES_DIR / "impact.py", title=_("Impact on response time"), icon=":material/speed:"),
    st.Page(PAGES_DIR / "tune.py", title=_("Tune for me"), icon=":material/tune:"),
    st.Page(PAGES_DIR / "lesson.py", title=_("Lesson"), icon=":material/school:"),
    st.Page(PAGES_DIR / "history.py", title=_("History"), icon=":material/history:"),
]
current = st.navigation(pages)
layout.draw_sidebar()
with st.sidebar:
    ui_roles.sidebar_badge()
try:
    current.run()
except Exception as exc:  # details for the presenter only (visitors get one plain line)
    ui_roles.show_error(exc)
