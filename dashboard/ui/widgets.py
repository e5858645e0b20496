"""Controls drawn from the flag catalog: one card per flag with the right widget, its factory analogy,
what the learner will observe, the risk, the real option name, the server's value and the pending one.

The pending values live in session state (PENDING_KEY) as a ServerConfig, apart from the widgets'
own keys: Streamlit forgets a widget's state when its page is not shown, so each widget is seeded
again from the pending config whenever its key is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import streamlit as st

from dashboard.engine import flag_texts, flags
from dashboard.engine.config import ServerConfig
from dashboard.engine.flags import Flag
from dashboard.ui import i18n as ui_i18n

PENDING_KEY = "factory.pending"
LADDER_LIMIT = 200  # more slider stops than this and the slider offers a ladder of round values


def widget_key(name: str) -> str:
    return f"factory.flag.{name}"


def auto_key(name: str) -> str:
    return f"factory.auto.{name}"


# ------------------------------------------------------------------------------------------ pending config


def pending_config(initial: Callable[[], ServerConfig]) -> ServerConfig:
    if PENDING_KEY not in st.session_state:
        st.session_state[PENDING_KEY] = initial()
    return st.session_state[PENDING_KEY]


def set_pending(config: ServerConfig, reseed: bool = True) -> None:
    """Replace the pending config; with reseed, every widget shows the new values on the next run."""
    st.session_state[PENDING_KEY] = config
    if reseed:
        forget_widgets()


def forget_widgets() -> None:
    for name in flags.catalog():
        for key in (widget_key(name), auto_key(name)):
            if key in st.session_state:
                del st.session_state[key]


# ------------------------------------------------------------------------------------------ values


def effective(flag: Flag, value: Any) -> Any:
    """What the server really uses: the value, or vLLM's own default when the flag is left out."""
    return flag.vllm_default if value is None else value


def is_changed(flag: Flag, old: Any, new: Any) -> bool:
    return effective(flag, old) != effective(flag, new)


def number_text(value: float | int, lang: str | None = None) -> str:
    if isinstance(value, float) and not value.is_integer():
        return ui_i18n.number(value, 2 if value >= 0.1 else 4, lang)
    return ui_i18n.number(value, 0, lang)


def value_text(flag: Flag, value: Any) -> str:
    """A value as the learner reads it, in the session's language."""
    _ = ui_i18n.translator()
    if value is None:
        if flag.vllm_default is None:
            return _("vLLM decides")
        value = flag.vllm_default
    if flag.kind == "bool":
        return _("on") if value else _("off")
    if flag.kind == "text":
        if flag.secret:
            return _("set") if value else _("none")
        return str(value) if value else _("empty")
    if flag.kind == "choice":
        return str(value)
    if isinstance(value, int | float) and flag.unit:
        return number_text(value)
    return str(value)  # numbers without a unit are names (a port, a seed): never grouped like 8,401


def choice_label(flag: Flag, choice: str, translate: Callable[[str], str] | None = None) -> str:
    """The friendly name of a choice; `translate` is bound to the language of the run that drew it."""
    friendly = flag_texts.texts_for(flag.texts).choices.get(choice)
    if not friendly:
        return choice
    return (translate or ui_i18n.translator())(friendly)


def uses_ladder(flag: Flag) -> bool:
    if flag.kind not in ("int", "float") or flag.min is None or flag.max is None or not flag.step:
        return False
    return (flag.max - flag.min) / flag.step > LADDER_LIMIT


def slider_max(flag: Flag, gpu_count: int | None = None) -> float:
    """The catalog's maximum, except where the machine sets a lower one (GPUs to split a model across)."""
    if flag.name != "tensor_parallel_size":
        return float(flag.max or 0)
    if gpu_count is None:
        from dashboard.ui import state  # late: state builds singletons at import time

        gpu_count = state.machine().gpu_count
    return float(min(flag.max or 1, max(1, gpu_count)))


def ladder(flag: Flag, extra: Iterable[Any] = ()) -> list[float | int]:
    """Round values between the flag's limits (powers of two and one and a half times them, kept when
    they are whole steps), plus any extra values that must be reachable (current, pending, suggested)."""
    assert flag.min is not None and flag.max is not None and flag.step
    values: set[float] = set()
    exponent = math.floor(math.log2(flag.min)) if flag.min > 0 else 0
    while 2.0**exponent <= flag.max:
        for candidate in (2.0**exponent, 1.5 * 2.0**exponent):
            if flag.min <= candidate <= flag.max and _whole_steps(candidate, flag.step):
                values.add(candidate)
        exponent += 1
    values.update((flag.min, flag.max))
    for value in extra:
        if isinstance(value, int | float) and not isinstance(value, bool) and flag.min <= value <= flag.max:
            values.add(float(value))
    cast = int if flag.kind == "int" else float
    return sorted({cast(v) for v in values})


def _whole_steps(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-9


def shown_default(flag: Flag) -> Any:
    """The value a control shows when the flag is left to vLLM."""
    if flag.vllm_default is not None:
        return flag.vllm_default
    if flag.kind == "bool":
        return False
    if flag.kind == "choice":
        return flag.choices[0]
    if flag.kind == "text":
        return ""
    if flag.kind in ("int", "float") and flag.min is not None and flag.max is not None:
        middle = ladder(flag) if uses_ladder(flag) else [flag.min]
        preferred = 2048 if flag.kind == "int" else 1.0
        return preferred if flag.min <= preferred <= flag.max else middle[len(middle) // 2]
    return None


def needs_auto_switch(flag: Flag, backend: str) -> bool:
    """Numbers that vLLM sizes by itself (no fixed default): they get a "let vLLM choose" switch."""
    return flag.kind in ("int", "float") and flag.start_value(backend) is None and flag.vllm_default is None


def to_flag_value(flag: Flag, widget_value: Any, backend: str, auto: bool = False) -> Any:
    """The pending value of a control; None (leave it to vLLM) when it only repeats vLLM's default."""
    if auto:
        return None
    value = flag.coerce(widget_value)
    if flag.kind == "text" and value == "" and flag.start_value(backend) is None:
        return None
    if flag.start_value(backend) is None and flag.vllm_default is not None and value == flag.vllm_default:
        return None
    return value


# ------------------------------------------------------------------------------------------ drawing


def draw_flag_card(
    flag: Flag,
    pending: Any,
    baseline: Any,
    running: Any,
    backend: str,
    extra_values: Iterable[Any] = (),
) -> Any:
    """One control card. Returns the flag's new pending value."""
    _ = ui_i18n.translator()
    texts = flag_texts.texts_for(flag.texts)
    has_effect = flag.has_effect_on(backend)
    if not has_effect:
        _draw_folded_card(flag, texts, backend)
        return None
    with st.container(border=True, key=f"card_{flag.name}"):
        shown = current_value(flag, pending, backend) if has_effect else None
        _draw_card_header(flag, texts.label, shown, baseline, has_effect, backend)
        if has_effect:
            new_value = _draw_control(flag, texts.label, pending, backend, extra_values)
        else:
            _draw_control(flag, texts.label, None, backend, extra_values, disabled=True)
            new_value = None
        note = texts.notes.get(backend)
        if note:
            st.caption(f"{':material/info:' if has_effect else ':material/block:'} {ui_i18n.tr(note)}")
        if running is not None or baseline is not None:
            _draw_server_value(flag, running)
        st.markdown(f":material/toys: {ui_i18n.tr(texts.analogy)}")
        if flag.replaces:
            st.caption(
                _("Formerly {old}, which current vLLM no longer accepts.").format(old=f"`{flag.replaces}`")
            )
        with st.expander(_("What you will see, and the risk"), icon=":material/visibility:"):
            st.markdown("**" + _("What you will see") + f":** {ui_i18n.tr(texts.observe)}")
            st.markdown("**" + _("Risk") + f":** {ui_i18n.tr(texts.risk)}")
    return new_value


def _draw_folded_card(flag: Flag, texts: Any, backend: str) -> None:
    """A flag this machine cannot use: its name, why, and what it would do, folded away (no greyed
    control showing a value that means nothing here)."""
    _ = ui_i18n.translator()
    with st.container(border=True, key=f"card_{flag.name}"):
        _draw_card_header(flag, texts.label, None, None, False, backend)
        note = texts.notes.get(backend)
        if note:
            st.caption(f":material/block: {ui_i18n.tr(note)}")
        with st.expander(_("What it does on a machine with a GPU"), icon=":material/visibility:"):
            st.markdown(f":material/toys: {ui_i18n.tr(texts.analogy)}")
            st.markdown("**" + _("What you will see") + f":** {ui_i18n.tr(texts.observe)}")


def current_value(flag: Flag, pending: Any, backend: str) -> Any:
    """The value a flag's control holds in this run: its widget state, newer than the pending config while
    the page is being drawn; the pending value when the control is not on the page."""
    key = widget_key(flag.name)
    if key not in st.session_state:
        return pending
    auto = bool(st.session_state.get(auto_key(flag.name), False)) and needs_auto_switch(flag, backend)
    try:
        return to_flag_value(flag, st.session_state[key], backend, auto=auto)
    except flags.FlagValueError:
        return pending


def _draw_card_header(
    flag: Flag, label: str, pending: Any, baseline: Any, has_effect: bool, backend: str
) -> None:
    _ = ui_i18n.translator()
    unit = ui_i18n.tr(flag_texts.UNIT_TEXTS[flag.unit]) if flag.unit else ""
    option = f"`{flag.cli}`" + (f" · {unit}" if unit else "")
    st.markdown(f"**{ui_i18n.tr(label)}**  \n{option}")
    badges: list[tuple[str, str, str]] = []
    if not has_effect:
        backend_name = ui_i18n.tr(flag_texts.BACKEND_NAMES.get(backend, backend))
        badges.append((_("no effect on {backend}").format(backend=backend_name), "gray", ":material/block:"))
    elif is_changed(flag, baseline, pending):
        text = _("changed: {old} → {new}").format(
            old=value_text(flag, baseline), new=value_text(flag, pending)
        )
        badges.append((text, "orange", ":material/edit:"))
    if badges:
        with st.container(horizontal=True, gap="small"):
            for text, colour, icon in badges:
                st.badge(text, color=colour, icon=icon)


def _draw_server_value(flag: Flag, running: Any) -> None:
    _ = ui_i18n.translator()
    if running is None:
        return
    st.caption(_("Server now: {value}").format(value=value_text(flag, running)))


def _seed(key: str, value: Any) -> None:
    if key not in st.session_state:
        st.session_state[key] = value


def _draw_control(
    flag: Flag,
    label: str,
    pending: Any,
    backend: str,
    extra_values: Iterable[Any],
    disabled: bool = False,
) -> Any:
    _ = ui_i18n.translator()
    key = widget_key(flag.name)
    shown = shown_default(flag) if pending is None else pending
    auto = False
    if needs_auto_switch(flag, backend) and not disabled:
        _seed(auto_key(flag.name), pending is None)
        auto = st.checkbox(_("Let vLLM choose"), key=auto_key(flag.name))
    if disabled:
        # A control that changes nothing here: show it greyed out at vLLM's value, outside session state.
        return _control_widget(flag, label, shown, None, extra_values, disabled=True)
    _seed(key, _widget_value(flag, shown))
    widget_value = _control_widget(flag, label, None, key, extra_values, disabled=auto)
    return to_flag_value(flag, widget_value, backend, auto=auto)


def _widget_value(flag: Flag, value: Any) -> Any:
    if flag.kind == "int":
        return int(value)
    if flag.kind == "float":
        return float(value)
    if flag.kind == "bool":
        return bool(value)
    return value if value is not None else ""


def _control_widget(
    flag: Flag, label: str, value: Any, key: str | None, extra_values: Iterable[Any], disabled: bool
) -> Any:
    """The Streamlit widget for one flag; either `value` (disabled display) or `key` (live) is given."""
    _ = ui_i18n.translator()
    common: dict[str, Any] = {"label_visibility": "collapsed", "disabled": disabled}
    if key is not None:
        common["key"] = key
    text_label = ui_i18n.tr(label)
    current = st.session_state.get(key) if key else value
    if flag.kind == "bool":
        toggle_label = _("on") if current else _("off")
        kwargs = {"disabled": disabled, "key": key} if key else {"value": bool(value), "disabled": disabled}
        return st.toggle(toggle_label, **kwargs)
    if flag.kind == "choice":
        options = list(flag.choices)
        kwargs = dict(common)
        if key is None:
            kwargs["index"] = options.index(value) if value in options else 0
        return st.selectbox(text_label, options, format_func=lambda c: choice_label(flag, c, _), **kwargs)
    if flag.kind == "text":
        kwargs = dict(common)
        if key is None:
            kwargs["value"] = value or ""
        placeholder = _("hidden key") if flag.secret else _("empty")
        return st.text_input(
            text_label, type="password" if flag.secret else "default", placeholder=placeholder, **kwargs
        )
    if not flag.unit:
        kwargs = dict(common)
        if key is None:
            kwargs["value"] = int(value)
        return st.number_input(
            text_label,
            min_value=int(flag.min or 0),
            max_value=int(flag.max or 0),
            step=int(flag.step or 1),
            **kwargs,
        )
    if uses_ladder(flag):
        options = ladder(flag, [current, *extra_values])
        kwargs = dict(common)
        if key is None:
            kwargs["value"] = min(options, key=lambda v: abs(v - float(value)))
        lang = ui_i18n.current_language()  # bound now: the format is also called outside this run
        return st.select_slider(
            text_label, options=options, format_func=lambda v: number_text(v, lang), **kwargs
        )
    kwargs = dict(common)
    if key is None:
        kwargs["value"] = value
    number_format = "%.2f" if flag.kind == "float" else "%d"
    cast = float if flag.kind == "float" else int
    highest = slider_max(flag)
    if highest <= float(flag.min or 0):  # one GPU: nothing to split across, but keep the control visible
        kwargs["disabled"] = True
        highest = float(flag.min or 0) + float(flag.step or 1)
    return st.slider(
        text_label,
        min_value=cast(flag.min),
        max_value=cast(highest),
        step=cast(flag.step),
        format=number_format,
        **kwargs,
    )
