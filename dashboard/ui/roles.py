"""Streamlit glue for the classroom: the role of this browser session, decided once on the server, and
the checks every action that changes the factory makes in its own handler.

The role comes from the TCP peer of this session's websocket (loopback = the person at the machine)
and from `?presenter=KEY` on the first page load; it is kept in this session's server-side state and
the key is taken off the address bar at once. A disabled button is only a courtesy: a visitor who sends
the widget message anyway reaches the handler, and the handler refuses (require_presenter).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard.classroom import doors, roles
from dashboard.engine.config import ServerConfig
from dashboard.engine.problems import Problem
from dashboard.i18n import N_
from dashboard.ui import i18n as ui_i18n

log = logging.getLogger(__name__)

ROLE_KEY = "classroom.role"
REFUSED_KEY = "classroom.refused"
QUERY_KEY = "presenter"


@dataclass
class ClassroomSettings:
    """What the presenter sets for the whole class (one per app, shared by every session)."""

    limiter: roles.RateLimiter = field(default_factory=lambda: roles.RateLimiter(roles.visitor_rate()))
    model_root: Path | None = field(default_factory=roles.model_root)


@st.cache_resource(show_spinner=False)
def settings() -> ClassroomSettings:
    return ClassroomSettings()


# ------------------------------------------------------------------------------------------ the role


def _peer_ip() -> tuple[str | None, bool]:
    """(the websocket's TCP peer address, whether it is known). Never a header the browser writes."""
    try:
        from streamlit.runtime import exists, get_instance
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is None or not exists():
            return None, False
        client = get_instance().get_client(ctx.session_id)
        context = getattr(client, "client_context", None) if client is not None else None
        ip = getattr(context, "remote_ip", None)
        if not isinstance(ip, str):  # no real connection (a page test's stand-in runtime)
            return None, False
        return ip, True
    except Exception:  # another Streamlit: st.context (None means localhost or unknown: not trusted)
        ip = st.context.ip_address
        return (ip, True) if ip else (None, False)


def role() -> str:
    """This session's role, decided on its first run and then kept."""
    if ROLE_KEY not in st.session_state:
        offered = st.query_params.get(QUERY_KEY)
        ip, known = _peer_ip()
        if known:
            decided = roles.decide_role(ip, offered, roles.presenter_key())
        else:  # no browser connection (a page test): the app's own machine, unless shared
            decided = roles.VISITOR if roles.is_shared() else roles.PRESENTER
        if offered is not None and decided != roles.PRESENTER:
            log.warning("a presenter link with a wrong key was opened from %s", ip)
        st.session_state[ROLE_KEY] = decided
        if offered is not None:
            del st.query_params[QUERY_KEY]  # off the address bar (and the projector) at once
    return st.session_state[ROLE_KEY]


def is_presenter() -> bool:
    return role() == roles.PRESENTER


def who() -> str:
    """A stable id of this session, for rate limits and claims."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is not None:
            return ctx.session_id
    except Exception:
        pass
    return "session"


def who_label() -> str:
    """How others read who this session is: the presenter, or a visitor."""
    _ = ui_i18n.translator()
    return _("the presenter") if is_presenter() else _("a visitor")


# ------------------------------------------------------------------------------------------ checks


def require_presenter(action: str) -> bool:
    """Call first in every handler that changes the factory. False (and a note on the page) for a
    visitor; `action` says what was refused, in the session's language ("start the factory")."""
    if is_presenter():
        return True
    log.warning("refused for a visitor: %s", action)
    st.session_state[REFUSED_KEY] = roles.refusal(action)
    return False


def refused_notice() -> None:
    problem: Problem | None = st.session_state.pop(REFUSED_KEY, None)
    if problem is not None:
        st.error(problem.text(ui_i18n.current_language()), icon=":material/block:")


def visitor_line() -> None:
    """The one line under a visitor's disabled controls."""
    if is_presenter():
        return
    _ = ui_i18n.translator()
    st.caption(
        ":material/visibility: "
        + _("You are watching as a visitor: only the presenter can change the factory.")
    )


def allow_order(count: int = 1) -> bool:
    """A playground order: the presenter always; a visitor within the rate limit the presenter set.
    Shows why when refused."""
    if is_presenter():
        return True
    _ = ui_i18n.translator()
    limiter = settings().limiter
    wait = 0.0
    for _index in range(max(1, count)):
        wait = limiter.try_acquire(who())
        if wait:
            break
    if not wait:
        return True
    if limiter.per_minute <= 0:
        st.warning(_("The presenter has paused visitors' orders for now."), icon=":material/pause_circle:")
    else:
        st.warning(
            _("Each visitor can send {n} orders a minute. Try again in {seconds}.").format(
                n=limiter.per_minute, seconds=ui_i18n.seconds(wait)
            ),
            icon=":material/hourglass_top:",
        )
    return False


# ------------------------------------------------------------------------------------------ sidebar


def _set_rate() -> None:
    _ = ui_i18n.translator()
    if require_presenter(_("change the visitors' order limit")):
        settings().limiter.set_rate(int(st.session_state["classroom.rate"]))


def _set_model_root() -> None:
    _ = ui_i18n.translator()
    if not require_presenter(_("change the local model folder")):
        return
    text = str(st.session_state.get("classroom.model_root") or "").strip()
    settings().model_root = Path(text).expanduser().resolve() if text else None


def sidebar_badge() -> None:
    """Who you are in this class, and (presenter only) the class settings."""
    _ = ui_i18n.translator()
    if not is_presenter():
        st.badge(_("Visitor"), icon=":material/visibility:", color="gray")
        return
    st.badge(_("Presenter"), icon=":material/co_present:", color="violet")
    with st.expander(_("Class settings"), icon=":material/school:"):
        current = settings()
        st.number_input(
            _("Orders per visitor per minute"),
            min_value=0,
            max_value=120,
            value=current.limiter.per_minute,
            key="classroom.rate",
            on_change=_set_rate,
            help=_("0 pauses the visitors' orders."),
        )
        st.text_input(
            _("Folder for local models"),
            value=str(current.model_root or ""),
            key="classroom.model_root",
            on_change=_set_model_root,
            help=_("Only folders inside this one can be typed in the model box. Empty: no local folders."),
        )


# ------------------------------------------------------------------------------------------ errors


def show_error(exc: Exception) -> None:
    """An error in a page: details for the presenter, a plain line for visitors; always in the log."""
    log.error("page error", exc_info=exc)
    if is_presenter():
        st.exception(exc)
        return
    _ = ui_i18n.translator()
    st.error(
        _("Something went wrong on this page. The presenter can see the details."), icon=":material/error:"
    )


# ------------------------------------------------------------------------------------------ the factory


CONFIRM_KEY = "classroom.confirm.{code}"


def confirmed_dangers() -> set[str]:
    return {
        danger.code
        for danger in (doors.REMOTE_CODE, doors.OUTSIDE_MODEL, doors.OPEN_HOST)
        if st.session_state.get(CONFIRM_KEY.format(code=danger.code))
    }


def confirm_dangers(pending: ServerConfig) -> bool:
    """One explicit confirmation per dangerous switch the pending config turns on, saying what it
    allows. True when every one is confirmed (or there are none)."""
    found = doors.dangers(pending)
    if not found:
        return True
    _ = ui_i18n.translator()
    presenter = is_presenter()
    for danger in found:
        st.warning("**" + _(danger.title) + "**  \n" + _(danger.allows), icon=":material/warning:")
        st.checkbox(_("Yes, allow it"), key=CONFIRM_KEY.format(code=danger.code), disabled=not presenter)
    return not doors.unconfirmed(pending, confirmed_dangers())


def allowed_model(typed: str, fallback: str) -> str:
    """The model the box may use: visitors cannot change it; the presenter's text must be the built-in
    model, a Hugging Face id or a folder inside the allowed folder (same answer whether a path exists)."""
    if not is_presenter():
        return fallback or "embedded"
    text, problem = roles.check_model_choice(typed, settings().model_root)
    if problem is not None:
        st.error(problem.text(ui_i18n.current_language()), icon=":material/block:")
        fallback_ok = roles.check_model_choice(fallback, settings().model_root)[1] is None
        return fallback if fallback_ok else "embedded"
    return text


def held(manager: Any) -> Any:
    """The claim of a measurement someone else started (it owns the server), or None."""
    claimed = getattr(manager, "claimed", None)
    claim = claimed() if callable(claimed) else None
    if claim is None or getattr(claim, "owner", None) == who():
        return None
    return claim


def claim_words(claim: Any) -> tuple[str, str]:
    """What runs and who started it, in this session's language."""
    _ = ui_i18n.translator()
    what = str(getattr(claim, "what", "") or "")
    if what == "table":
        what = _("the whole table run")
    elif what.startswith("--"):
        what = _("a sweep of {flags}").format(flags=what)
    elif what in ("", "measurement"):
        what = _("a measurement")
    else:  # a msgid (a page's title, e.g. "Tune for me"): in the reader's language
        what = _(what)
    who = str(getattr(claim, "who", "") or "")
    if who == roles.PRESENTER:
        who = _("the presenter")
    elif who == roles.VISITOR:
        who = _("a visitor")
    return what, who or str(getattr(claim, "owner", ""))


def held_problem(claim: Any) -> Problem:
    until = getattr(claim, "until", None)
    started = getattr(claim, "started_at", None) or time.time()
    what, who = claim_words(claim)
    params = {
        "what": what,
        "who": who,
        "minutes": max(0, round((time.time() - started) / 60)),
    }
    if until:
        params["left"] = max(1, round((until - time.time()) / 60))
        message = N_(
            "A measurement owns the factory: {what}, started by {who} {minutes} min ago. It should end "
            "in about {left} min; until then nobody can apply, stop, change the model or send orders."
        )
    else:
        message = N_(
            "A measurement owns the factory: {what}, started by {who} {minutes} min ago. Until it ends "
            "nobody can apply, stop, change the model or send orders."
        )
    return Problem("server_held", message, params=params)


def not_held(manager: Any) -> bool:
    """False (with the reason on the page) while someone else's measurement owns the server."""
    claim = held(manager)
    if claim is None:
        return True
    st.session_state[REFUSED_KEY] = held_problem(claim)
    return False


def held_notice(manager: Any) -> None:
    claim = held(manager)
    if claim is not None:
        st.info(held_problem(claim).text(ui_i18n.current_language()), icon=":material/lock_clock:")


def checked_apply(manager: Any, config: ServerConfig, action: str) -> ServerConfig | None:
    """The config to start after every server-side check of an Apply, or None (reason on the page):
    the presenter only, no measurement under way, an allowed model, each danger confirmed. A key shown
    as hidden becomes the running server's key here, on the server."""
    if not require_presenter(action) or not not_held(manager):
        return None
    model, problem = roles.check_model_choice(config.model, settings().model_root)
    if problem is None:
        missing = doors.unconfirmed(config, confirmed_dangers())
        if missing:
            problem = Problem(
                "not_confirmed",
                N_("Confirm first what this change allows: {what}."),
                params={"what": ", ".join(ui_i18n.translator()(d.title) for d in missing)},
            )
    if problem is not None:
        st.session_state[REFUSED_KEY] = problem
        return None
    running = manager.snapshot().config
    return doors.reveal_secrets(ServerConfig(model=model, values=config.values), running)


@st.cache_data(ttl=600, show_spinner=False)
def _open_paths(base_url: str) -> list[str]:
    return doors.unguarded_paths(doors.served_paths(base_url))


def open_door_notice(snap: Any) -> None:
    """When the server answers the whole network, say which of its paths the API key does not guard."""
    if snap.status != "ready" or not doors.listens_beyond_loopback(snap.config):
        return
    _ = ui_i18n.translator()
    paths = _open_paths(snap.base_url)
    st.warning(
        _(
            "The server answers the whole network. Its API key guards only the /v1 paths; these stay open "
            "to anyone who can reach this computer: {paths}"
        ).format(paths=", ".join(f"`{path}`" for path in paths)),
        icon=":material/door_open:",
    )


def guarded(action: str, handler: Any) -> Any:
    """An on_click handler that runs only for the presenter; `action` is an English msgid."""

    def run(*args: Any, **kwargs: Any) -> None:
        if require_presenter(ui_i18n.translator()(action)):
            handler(*args, **kwargs)

    return run


BURST = N_("Send it N times at once")  # what a playground load test's claim says is running
BURST_HOLD_S = 60.0  # about how long a playground load test holds the server (its orders are short)


@contextlib.contextmanager
def holding(manager: Any, what: str, seconds: float | None = None) -> Iterator[Any]:
    """Own the server while this session measures on it (the carousel's claim, in this session's name
    and role), so no other session applies, stops, changes the model or sends orders meanwhile and the
    figures belong to the server that answered. A plain server manager has no claim: nothing is held."""
    claim = getattr(manager, "claim", None)
    if not callable(claim):
        yield manager
        return
    until = time.time() + seconds if seconds else None
    with claim(owner=who(), what=what, who=role(), until=until) as view:
        yield view


def order_allowed(manager: Any, count: int = 1) -> bool:
    """A playground order may go: no measurement owns the server, and a visitor is within the limit."""
    claim = held(manager)
    if claim is not None:
        st.warning(held_problem(claim).text(ui_i18n.current_language()), icon=":material/lock_clock:")
        return False
    return allow_order(count)
