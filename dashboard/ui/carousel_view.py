"""The carousel strip on the factory floor: every warm, paused, asleep or starting server as a card,
with what differs from the one in use, the memory it holds, and a click to flip to it."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from dashboard.classroom import doors
from dashboard.engine import flags
from dashboard.engine.config import ServerConfig
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import roles as ui_roles
from dashboard.ui import state, widgets

GIB = 1024**3
SEEN_EVENTS_KEY = "carousel.seen_events"
MODEL_KEY = "factory.model"  # the factory page's model box


def is_carousel(manager: Any) -> bool:
    return callable(getattr(manager, "cards", None))


def last_start_launched(manager: Any) -> bool:
    """True when the last failed Apply got as far as starting a process (not refused before)."""
    failure = getattr(manager, "last_failure", None)
    return bool(is_carousel(manager) and failure is not None and failure.startup)


# ------------------------------------------------------------------------------------------ actions


def _flip(manager: Any, slot_id: int) -> None:
    _ = ui_i18n.translator()
    if ui_roles.require_presenter(_("switch servers")) and ui_roles.not_held(manager):
        manager.flip(slot_id, owner=ui_roles.who())
        follow_the_server(manager)


def follow_the_server(manager: Any) -> None:
    """After this session flipped the carousel, its controls show the server now in use (no change is
    left waiting that only says which server was used before)."""
    snap = manager.snapshot()
    if snap.status != "ready" or snap.config is None:
        return
    served = doors.hide_secrets(snap.config)
    widgets.set_pending(served)
    st.session_state[MODEL_KEY] = served.model


def _pin(manager: Any, slot_id: int, pinned: bool) -> None:
    _ = ui_i18n.translator()
    if ui_roles.require_presenter(_("pin a server")):
        manager.pin(slot_id, pinned)


def _evict(manager: Any, slot_id: int) -> None:
    _ = ui_i18n.translator()
    if ui_roles.require_presenter(_("stop a warm server")) and ui_roles.not_held(manager):
        manager.evict(slot_id, owner=ui_roles.who())


# ------------------------------------------------------------------------------------------ texts


def state_badge(state: str) -> tuple[str, str, str]:
    _ = ui_i18n.translator()
    return {
        "active": (_("In use"), "green", ":material/play_circle:"),
        "warm": (_("Warm, waiting"), "blue", ":material/local_fire_department:"),
        "paused": (_("Paused, ready in a second"), "blue", ":material/pause_circle:"),
        "asleep": (_("Asleep, wakes in a second"), "violet", ":material/bedtime:"),
        "starting": (_("Starting…"), "orange", ":material/hourglass_top:"),
    }.get(state, (state, "gray", ":material/help:"))


def start_kind_text(kind: str) -> str:
    _ = ui_i18n.translator()
    return {
        "cold": _("cold start"),
        "forked": _("quick start from the prepared starter"),
        "reused": _("flip to a warm server"),
        "woken": _("woken from sleep"),
    }.get(kind, kind)


def difference_lines(card: Any, active: ServerConfig | None) -> list[str]:
    _ = ui_i18n.translator()
    if active is None or card.state == "active":
        return []
    if not card.differences:
        return [_("Same settings as the server in use.")]
    lines = []
    for name in card.differences:
        if name == "port":
            continue
        flag = flags.get(name)
        lines.append(f"`{flag.cli}` {widgets.value_text(flag, card.config.get(name))}")
    return lines or [_("Same settings as the server in use.")]


def memory_text(card: Any) -> str:
    """What the server holds, beside what the budget predicted before it started."""
    _ = ui_i18n.translator()
    if card.memory_bytes is None:
        return _("memory held: unknown")
    held = ui_i18n.gib(card.memory_bytes / GIB)
    if not card.predicted_bytes or card.state == "asleep":
        return _("holds {memory}").format(memory=held)
    error = (card.predicted_bytes - card.memory_bytes) / card.memory_bytes
    return _("holds {memory} (predicted {predicted}, {error} off)").format(
        memory=held, predicted=ui_i18n.gib(card.predicted_bytes / GIB), error=ui_i18n.percent(abs(error))
    )


def whole_footprint_caption(manager: Any, pending: ServerConfig) -> None:
    """The prediction made whole: weights and KV cache plus the runtime's share, as the budget counts it."""
    if not is_carousel(manager):
        return
    _ = ui_i18n.translator()
    if state.model_facts(pending.model)[1] is None:  # an unknown model: nothing to add up
        return
    try:
        footprint = manager.predict_footprint(pending)
    except Exception:  # an unknown model: the checks already say what is wrong
        return
    if footprint.runtime_measured:
        text = _(
            "The whole server should hold about {total}: weights and warehouse plus {runtime} for Python, "
            "PyTorch and the tokenizer, as this machine's earlier starts measured."
        )
    else:
        text = _(
            "The whole server should hold about {total}: weights and warehouse plus about {runtime} for "
            "Python, PyTorch and the tokenizer (a first guess until this machine has measured a start)."
        )
    st.caption(
        ":material/memory: "
        + text.format(
            total=ui_i18n.gib(footprint.total_bytes / GIB),
            runtime=ui_i18n.gib((footprint.runtime_bytes or 0) / GIB),
        )
    )


def preview_caption(manager: Any, pending: ServerConfig, changed: bool) -> None:
    """Before the click: will Apply flip to a warm server or start a new one, and how long it takes."""
    if not is_carousel(manager) or not changed:
        return
    _ = ui_i18n.translator()
    try:
        preview = manager.preview(pending)
    except Exception:  # an unknown model: the checks above already say what is wrong
        return
    if preview.kind == "flip":
        st.caption(
            ":material/bolt: "
            + _("A server with these settings is already warm: Apply flips to it in about {seconds}.").format(
                seconds=ui_i18n.seconds(preview.seconds)
            )
        )
        return
    if preview.seconds is None:
        text = _("Apply starts a new server; this machine has not timed such a start yet.")
    else:
        text = _(
            "Apply starts a new server: about {seconds} on this machine, judging by earlier starts."
        ).format(seconds=ui_i18n.seconds(preview.seconds))
    st.caption(":material/hourglass_top: " + text)
    if preview.evicts:
        st.caption(
            _("To make room, {count} warm server(s) will be stopped (the least recently used).").format(
                count=len(preview.evicts)
            )
        )


# ------------------------------------------------------------------------------------------ strip


def strip(manager: Any) -> None:
    if not is_carousel(manager):
        return
    _ = ui_i18n.translator()
    cards = manager.cards()
    events_notice(manager)
    with st.container(border=True, key="carousel_strip"):
        st.markdown("**:material/view_carousel: " + _("The carousel of warm servers") + "**")
        st.caption(
            _(
                "Every setting you tried stays warm here, so going back to it is a flip of about a second "
                "instead of a new start. Servers that wait are paused and take no processor time."
            )
        )
        if not cards:
            st.caption(
                _("No server yet: press Start, and each new setting you apply will join the carousel.")
            )
            return
        active = next((card.config for card in cards if card.state == "active"), None)
        presenter = ui_roles.is_presenter()
        held = ui_roles.held(manager) is not None
        columns = st.columns(max(len(cards), 3))
        for column, card in zip(columns, cards, strict=False):
            with column.container(border=True):
                _card(manager, card, active, presenter, held)
        budget_line(manager)


def _card(manager: Any, card: Any, active: ServerConfig | None, presenter: bool, held: bool) -> None:
    _ = ui_i18n.translator()
    text, colour, icon = state_badge(card.state)
    st.badge(text, color=colour, icon=icon)
    for line in difference_lines(card, active):
        st.markdown(line)
    details = [memory_text(card)]
    if card.ready_s is not None:
        details.append(
            _("started in {seconds} ({how})").format(
                seconds=ui_i18n.seconds(card.ready_s), how=start_kind_text(card.start_kind)
            )
        )
    st.caption(" · ".join(details))
    if card.background:
        st.caption(_("Started ahead of time on spare cores, for the next step of the sweep."))
    if card.state == "starting":
        return
    with st.container(horizontal=True, gap="small"):
        if card.state != "active":
            st.button(
                _("Flip to this one"),
                icon=":material/swap_horiz:",
                key=f"carousel.flip.{card.slot_id}",
                on_click=_flip,
                args=(manager, card.slot_id),
                disabled=not presenter or held,
                type="primary",
            )
        st.button(
            _("Unpin") if card.pinned else _("Pin"),
            icon=":material/keep_off:" if card.pinned else ":material/keep:",
            key=f"carousel.pin.{card.slot_id}",
            on_click=_pin,
            args=(manager, card.slot_id, not card.pinned),
            disabled=not presenter,
            help=_("A pinned server is never stopped to make room."),
        )
        if card.state != "active":
            st.button(
                _("Stop"),
                icon=":material/close:",
                key=f"carousel.evict.{card.slot_id}",
                on_click=_evict,
                args=(manager, card.slot_id),
                disabled=not presenter or held,
            )


def budget_line(manager: Any) -> None:
    _ = ui_i18n.translator()
    runtime, learned = manager.runtime_share()
    used = manager.used_bytes() / GIB
    budget = manager.budget_bytes / GIB
    where = _("GPU memory") if manager.backend == "cuda" else _("RAM")
    line = _("Carousel budget: {used} of {budget} of {where}, at most {count} servers.").format(
        used=ui_i18n.gib(used), budget=ui_i18n.gib(budget), where=where, count=manager.max_servers
    )
    if learned:
        share = _(
            "Each server also needs about {runtime} for Python, PyTorch and the tokenizer, "
            "learned from this machine's earlier starts."
        )
    else:
        share = _(
            "Each server also needs about {runtime} for Python, PyTorch and the tokenizer "
            "(assumed until this machine has measured a start)."
        )
    st.caption(line + " " + share.format(runtime=ui_i18n.gib(runtime / GIB)))


def events_notice(manager: Any) -> None:
    """Say once per session what the carousel did on its own: a server crashed or was evicted."""
    _ = ui_i18n.translator()
    seen = st.session_state.setdefault(SEEN_EVENTS_KEY, time.time())
    events = manager.events(since=seen)
    if not events:
        return
    st.session_state[SEEN_EVENTS_KEY] = max(event.at for event in events)
    for event in events:
        if event.kind == "crashed":
            st.warning(
                _("A warm server stopped on its own and was removed from the carousel."),
                icon=":material/heart_broken:",
            )
            if event.detail:
                with st.expander(_("Its last log line")):
                    st.code(event.detail, language=None, wrap_lines=True)
        elif event.kind == "evicted":
            st.info(_("A warm server was stopped to make room for a new one."), icon=":material/info:")
