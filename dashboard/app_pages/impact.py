"""Impact on response time (to be filled in): how each flag changes the time to answer, measured."""

import streamlit as st

from dashboard.ui import i18n as ui_i18n

_ = ui_i18n.translator()
st.title(_("Impact on response time"))
st.write(_("Move one flag at a time and measure how the answers' speed changes on this machine."))
