"""History (to be filled in): every start and every measurement, kept to compare."""

import streamlit as st

from dashboard.ui import i18n as ui_i18n

_ = ui_i18n.translator()
st.title(_("History"))
st.write(_("Every start and every measurement is kept here, so two runs can be compared side by side."))
