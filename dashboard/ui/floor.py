"""The live factory floor, drawn from the running server's /metrics several times a second.

`live_floor(key)` puts a switch and the floor on a page. The floor is an `st.fragment` that re-runs on
its own timer, so the rest of the page does not; it reads the process-wide `FloorSampler` (which
scrapes only while someone looks) and draws one HTML block of LEGO bricks: the lanes, the queue at the
door, the warehouse, copied worksheets, orders sent back, the conveyor and the cart. Each part says the
flag that sizes it, and says "not reported by this server" instead of a number it does not have.
A replay slider walks through the last busy stretch.
"""

from __future__ import annotations

import html
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboard.engine import flags
from dashboard.i18n import N_
from dashboard.measure import floor as floor_mod
from dashboard.measure.floor import FloorLimits, FloorSampler, FloorState, Part
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import state

REFRESH_S = 0.48  # the fragment's timer: about 2.1 redraws per second
SCRAPE_S = 0.45  # a little more often than the redraws, so each finds a fresh look
MAX_BRICKS = 32  # lanes drawn; beyond that one brick stands for several lanes
MAX_WAITING_BRICKS = 24
BAR_SEGMENTS = 20
LIVE, REPLAY = "live", "replay"

PART_TITLES = {
    "lanes": N_("Lanes busy"),
    "queue": N_("Queue at the door"),
    "warehouse": N_("Warehouse (KV cache)"),
    "worksheets": N_("Copied worksheets (prefix cache)"),
    "preemptions": N_("Orders sent back to wait"),
    "conveyor": N_("Conveyor speed"),
    "cart": N_("Batch on the cart (tokens per step)"),
}
PART_COLOURS = {  # the brick before each part's name, in the colour of its bricks
    "lanes": "lego-on",
    "queue": "lego-wait",
    "warehouse": "lego-fill",
    "worksheets": "lego-copy",
    "preemptions": "lego-back",
    "conveyor": "lego-speed",
    "cart": "lego-on",
}
STATUS_TEXTS = {
    floor_mod.NOT_REPORTED: N_("not reported by this server"),
    floor_mod.WARMING_UP: N_("measuring… (needs a second look)"),
    floor_mod.NOTHING_TO_MEASURE: N_("nothing to measure this moment"),
}

CSS = """
<style>
.lego-floor{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:10px;margin:4px 0 8px}
.lego-part{border:2px solid #d9d9d9;border-radius:10px;padding:8px 10px;background:#fafafa}
.lego-part h4{font-size:0.95rem;margin:0 0 4px;padding:0}
.lego-big{font-size:1.35rem;font-weight:700;line-height:1.3}
.lego-note{font-size:0.8rem;color:#555}
.lego-unknown{font-size:0.95rem;color:#777;font-style:italic}
.lego-row{display:flex;flex-wrap:wrap;gap:3px;margin:5px 0}
.lego-brick{width:20px;height:14px;border-radius:3px;position:relative;background:#d0d3d4;
 box-shadow:inset 0 -2px 0 rgba(0,0,0,.18)}
.lego-brick:before,.lego-brick:after{content:"";position:absolute;top:-4px;width:6px;height:4px;
 border-radius:2px 2px 0 0;background:inherit}
.lego-brick:before{left:3px}.lego-brick:after{right:3px}
.lego-on{background:#0055bf}.lego-wait{background:#f5cd2f}.lego-back{background:#d01012}
.lego-fill{background:#237841}.lego-copy{background:#7a3fb8}.lego-speed{background:#fe8a18}
.lego-bar .lego-brick{width:11px}
.lego-title{display:inline-block;width:16px;height:11px;margin-right:4px;vertical-align:-1px}
</style>
"""


@st.cache_resource(show_spinner=False)
def get_sampler() -> FloorSampler:
    """One sampler per app: every session looking at the floor shares its scrapes."""
    return FloorSampler(interval_s=SCRAPE_S)


def limits_for(snap: Any) -> FloorLimits:
    report = getattr(snap, "report", None)
    config = getattr(snap, "config", None)
    return FloorLimits.from_config(
        config.values if config is not None else {},
        kv_cache_tokens=getattr(report, "kv_cache_tokens", None),
        backend=state.backend(),
    )


# ------------------------------------------------------------------------------------------ bricks


def _note(text: str) -> str:
    return f'<div class="lego-note">{text}</div>'


def _bricks(count: int, kind: str, total: int | None = None) -> str:
    total = max(count, total or 0)
    cells = [f'<span class="lego-brick {kind}"></span>'] * count
    cells += ['<span class="lego-brick"></span>'] * (total - count)
    return '<div class="lego-row">' + "".join(cells) + "</div>"


def _bar(fraction: float | None, kind: str) -> str:
    if fraction is None:
        return ""
    share = max(0.0, min(1.0, fraction))
    filled = math.ceil(share * BAR_SEGMENTS) if share > 0 else 0  # anything above zero shows a brick
    return '<div class="lego-bar">' + _bricks(filled, kind, BAR_SEGMENTS) + "</div>"


def _flag_line(part: Part, _: Callable[[str], str]) -> str:
    if not part.flag:
        return ""
    try:
        option = flags.get(part.flag).cli
    except KeyError:
        option = part.flag
    return _note(_("sized by {flag}").format(flag=f"<code>{option}</code>"))


def _unknown(part: Part, _: Callable[[str], str]) -> str:
    text = html.escape(_(STATUS_TEXTS[part.status]))
    return f'<div class="lego-unknown">{text}</div>'


def _lanes(part: Part, _: Callable[[str], str]) -> str:
    running = int(part.value or 0)
    if part.limit:
        limit = int(part.limit)
        per_brick = max(1, math.ceil(limit / MAX_BRICKS))
        shown = math.ceil(limit / per_brick)
        filled = min(shown, math.ceil(running / per_brick))
        body = f'<div class="lego-big">{ui_i18n.number(running)} / {ui_i18n.number(limit)}</div>'
        body += _bricks(filled, "lego-on", shown)
        if per_brick > 1:
            body += _note(_("each brick = {n} lanes").format(n=per_brick))
        return body
    body = f'<div class="lego-big">{ui_i18n.number(running)}</div>' + _bricks(
        min(running, MAX_BRICKS), "lego-on"
    )
    return body + _note(_("how many lanes are open is not known"))


def _queue(part: Part, _: Callable[[str], str]) -> str:
    waiting = int(part.value or 0)
    body = f'<div class="lego-big">{ui_i18n.number(waiting)}</div>'
    if waiting == 0:
        return body + _note(_("nobody waits: every order found a free lane"))
    body += _bricks(min(waiting, MAX_WAITING_BRICKS), "lego-wait")
    if waiting > MAX_WAITING_BRICKS:
        body += f'<div class="lego-note">+{ui_i18n.number(waiting - MAX_WAITING_BRICKS)}</div>'
    return body


def _warehouse(part: Part, _: Callable[[str], str], limits: FloorLimits) -> str:
    body = f'<div class="lego-big">{ui_i18n.percent(part.value, 1)}</div>' + _bar(part.fill(), "lego-fill")
    if limits.kv_cache_tokens:
        used = float(part.value or 0.0) * limits.kv_cache_tokens
        body += _note(
            _("about {used} of {total} token places").format(
                used=ui_i18n.number(used), total=ui_i18n.number(limits.kv_cache_tokens)
            )
        )
    return body


def _worksheets(part: Part, _: Callable[[str], str]) -> str:
    body = f'<div class="lego-big">{ui_i18n.percent(part.value)}</div>' + _bar(part.fill(), "lego-copy")
    return body + _note(_("of the prompt tokens read just now were copied"))


def _preemptions(part: Part, _: Callable[[str], str]) -> str:
    now = int(part.value or 0)
    body = f'<div class="lego-big">{ui_i18n.number(now)}</div>'
    if now:
        body += _bricks(min(now, MAX_WAITING_BRICKS), "lego-back")
    return body + (
        _note(_("just now · {total} since the server started").format(total=ui_i18n.number(part.total)))
    )


def _conveyor(part: Part, _: Callable[[str], str], top: float | None) -> str:
    body = (
        '<div class="lego-big">'
        + _("{n} tokens/s").format(n=ui_i18n.number(part.value, 0 if (part.value or 0) >= 10 else 1))
        + "</div>"
    )
    fraction = (part.value or 0) / top if top else None
    return body + _bar(fraction, "lego-speed") + _note(_("answer tokens made"))


def _cart(part: Part, _: Callable[[str], str]) -> str:
    if part.limit:
        body = f'<div class="lego-big">{ui_i18n.number(part.value)} / {ui_i18n.number(part.limit)}</div>'
        return body + _bar(part.fill(), "lego-on")
    body = f'<div class="lego-big">{ui_i18n.number(part.value)}</div>'
    return body + _note(_("the step budget is vLLM's own default, not reported"))


def part_body(part: Part, _: Callable[[str], str], limits: FloorLimits, top_speed: float | None) -> str:
    if not part.known:
        return _unknown(part, _)
    if part.key == "lanes":
        return _lanes(part, _)
    if part.key == "queue":
        return _queue(part, _)
    if part.key == "warehouse":
        return _warehouse(part, _, limits)
    if part.key == "worksheets":
        return _worksheets(part, _)
    if part.key == "preemptions":
        return _preemptions(part, _)
    if part.key == "conveyor":
        return _conveyor(part, _, top_speed)
    return _cart(part, _)


def floor_html(
    floor_state: FloorState, limits: FloorLimits, _: Callable[[str], str], top_speed: float | None = None
) -> str:
    """The whole floor as one HTML block (one element to send, whatever the number of bricks)."""
    cards = []
    for key in floor_mod.PART_KEYS:
        part = floor_state.parts.get(key)
        if part is None:
            continue
        name = html.escape(_(PART_TITLES[key]))
        title = f'<span class="lego-brick lego-title {PART_COLOURS[key]}"></span> {name}'
        cards.append(
            f'<div class="lego-part" data-part="{key}" data-status="{part.status}"><h4>{title}</h4>'
            + part_body(part, _, limits, top_speed)
            + _flag_line(part, _)
            + "</div>"
        )
    return CSS + '<div class="lego-floor">' + "".join(cards) + "</div>"


def top_speed(states: list[FloorState]) -> float | None:
    speeds = [
        s.parts["conveyor"].value for s in states if "conveyor" in s.parts and s.parts["conveyor"].known
    ]
    best = max((v for v in speeds if v), default=None)
    return float(best) if best else None


# ------------------------------------------------------------------------------------------ the fragment


def _header(snap: Any, sampler: FloorSampler, latest: FloorState | None) -> bool:
    """A line over the floor; False when there is nothing to draw."""
    _ = ui_i18n.translator()
    if snap.status != "ready" or not snap.base_url:
        st.caption(":material/power_settings_new: " + _("The factory is not running: the floor is empty."))
        return False
    if latest is None:
        if sampler.failures and sampler.last_error:
            st.caption(
                ":material/cloud_off: "
                + _("The server did not answer /metrics: {error}").format(error=sampler.last_error)
            )
        else:
            st.caption(":material/hourglass_top: " + _("Looking at the floor…"))
        return False
    return True


_DRAWN: dict[tuple[Any, ...], str] = {}  # one drawing per look and language, shared by every session
_DRAWN_LOCK = threading.Lock()
_DRAWN_KEEP = 64


def cached_html(floor_state: FloorState, limits: FloorLimits, top: float | None) -> str:
    """The floor's HTML, built once per look, language and sizes (a class of visitors shares it)."""
    lang = ui_i18n.current_language()
    key = (floor_state.taken_at, lang, limits, top)
    with _DRAWN_LOCK:
        found = _DRAWN.get(key)
    if found is not None:
        return found
    drawn = floor_html(floor_state, limits, ui_i18n.translator(), top)
    with _DRAWN_LOCK:
        _DRAWN[key] = drawn
        while len(_DRAWN) > _DRAWN_KEEP:
            _DRAWN.pop(next(iter(_DRAWN)))
    return drawn


def draw_state(floor_state: FloorState, limits: FloorLimits, states: list[FloorState]) -> None:
    st.markdown(cached_html(floor_state, limits, top_speed(states)), unsafe_allow_html=True)


def _replay(key: str, limits: FloorLimits, sampler: FloorSampler) -> None:
    _ = ui_i18n.translator()
    run = sampler.last_run()
    if len(run) < 2:
        st.caption(_("No run to replay yet: send some orders or start a load test, then come back."))
        return
    start = run[0].taken_at
    index = st.slider(
        _("Moment of the last run"),
        0,
        len(run) - 1,
        floor_mod.busiest(run),  # opens on the busiest moment
        key=f"{key}.replay_at",
        format="%d",
        help=_("Each step is one look at the server, about {ms} apart.").format(
            ms=ui_i18n.milliseconds(REFRESH_S * 1000)
        ),
    )
    chosen = run[index]
    st.caption(
        _("{at} after the run began · {n} looks kept").format(
            at=ui_i18n.seconds(chosen.taken_at - start), n=ui_i18n.number(len(run))
        )
    )
    draw_state(chosen, limits, run)


def _watched() -> tuple[Any, FloorSampler, FloorLimits]:
    snap = state.get_manager().snapshot()
    sampler = get_sampler()
    limits = limits_for(snap)
    if snap.status == "ready" and snap.base_url:
        sampler.watch(snap.base_url, limits)
    return snap, sampler, limits


def draw_live(key: str) -> None:
    """The newest look at the server (no widgets: it can be drawn again in the same run)."""
    _ = ui_i18n.translator()
    started = time.perf_counter()
    snap, sampler, limits = _watched()
    states = sampler.states()
    latest = states[-1] if states else None
    if not _header(snap, sampler, latest):
        return
    assert latest is not None
    age = max(0.0, time.time() - latest.taken_at)
    draw_state(latest, limits, states)
    st.caption(
        ":material/sensors: "
        + _("Live from the server's /metrics · {per_s} looks per second · last look {age} ago").format(
            per_s=ui_i18n.number(1 / REFRESH_S, 1), age=ui_i18n.seconds(age)
        )
    )
    st.session_state[f"{key}.draw_ms"] = (time.perf_counter() - started) * 1000


def floor_body(key: str) -> None:
    """One look: what the fragment draws each time its timer fires."""
    _ = ui_i18n.translator()
    mode = st.segmented_control(
        _("Floor view"),
        [LIVE, REPLAY],
        default=LIVE,
        format_func=lambda m: _("Live") if m == LIVE else _("Replay the last run"),
        key=f"{key}.mode",
        label_visibility="collapsed",
    )
    if mode == REPLAY:
        _snap, sampler, limits = _watched()
        _replay(key, limits, sampler)
        return
    draw_live(key)


@st.fragment(run_every=REFRESH_S)
def _live_fragment(key: str) -> None:
    floor_body(key)


def live_floor(key: str = "floor", open_by_default: bool = True) -> None:
    """The floor with a switch to close it (closed: nothing is scraped for this session)."""
    _ = ui_i18n.translator()
    with st.container(border=True, key=f"{key}.box"):
        shown = st.toggle(
            ":material/factory: " + _("Live factory floor"),
            value=open_by_default,
            key=f"{key}.open",
            help=_(
                "The real server's own numbers, read several times a second while this is open. "
                "Each part says which flag sizes it."
            ),
        )
        if shown:
            _live_fragment(key)


def while_watching(work: Callable[[], Any], key: str = "floor") -> Any:
    """Run `work` in a worker thread and redraw the floor here until it ends, then return its result.

    A page's own script run (a burst of orders) blocks the session's fragments, so the floor of this
    session would freeze for exactly the moment worth watching; this draws it from the script itself.
    The worker makes no Streamlit calls."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # re-raised in the script's thread below
            box["error"] = exc

    from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

    worker = threading.Thread(target=run, name="floor-watched-work", daemon=True)
    add_script_run_ctx(worker, get_script_run_ctx())  # cached singletons answer it as they answer us
    worker.start()
    placeholder = st.empty()
    while worker.is_alive():
        with placeholder.container():
            draw_live(f"{key}.during")
        worker.join(REFRESH_S)
    placeholder.empty()
    if "error" in box:
        raise box["error"]
    return box.get("result")
