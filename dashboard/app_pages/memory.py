"""Memory warehouse (to be filled in): where the server's memory goes, live."""

import streamlit as st

from dashboard.ui import i18n as ui_i18n

_ = ui_i18n.translator()
st.title(_("Memory warehouse"))
st.write(_("Watch how the weights and the warehouse (KV cache) fill the memory while the server works."))
