"""What the app does once, when its first script run begins (before any page is drawn): reap the
servers an earlier app left behind, rotate old server logs, and make sure SIGHUP stops the servers.

./run.sh (dashboard/ui/launch.py) already did all of this before the web server started; this covers
`streamlit run dashboard/app.py` started by hand.
"""

from __future__ import annotations

import logging

import streamlit as st

from dashboard.engine import lifecycle

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def app_started() -> list[int]:
    """Once per app: the ids of the leftover server processes that were stopped."""
    killed = lifecycle.reap_leftovers()
    if killed:
        log.warning("stopped %d process(es) of a server an earlier app left running", len(killed))
    lifecycle.rotate_logs(lifecycle.app_runs_dir())
    _install_hangup_on_main_thread()
    return killed


def _install_hangup_on_main_thread() -> None:
    """Signal handlers can only be set on the main thread, where Streamlit's event loop runs."""
    if lifecycle.hangup_handler_installed():
        return
    try:
        from streamlit import runtime

        loop = runtime.get_instance()._get_async_objs().eventloop  # noqa: SLF001 (no public handle)
        loop.call_soon_threadsafe(lifecycle.install_hangup_handler)
    except Exception:  # no running Streamlit server (a page test): nothing to hang up
        log.debug("no event loop for the SIGHUP handler", exc_info=True)
