"""The playground's guard rails: count the prompt before sending, explain a failed order in the user's
language, label each answer with the settings of the server that gave it, keep the chosen preset in the
address, and the Pika notes (the brief's cut-off echo; whether the answer stays the same at temperature 0
when a setting changes)."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from dashboard.engine import flags, presets
from dashboard.engine.carousel import config_key
from dashboard.engine.config import ServerConfig, default_config
from dashboard.engine.problems import Problem
from dashboard.measure import request_errors, tokens
from dashboard.measure.client import RequestTiming
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import state, widgets

PRESET_PARAM = "preset"
FREE_TEXT_PRESET, JSON_PRESET = "pika", "pika-json"
SHOWN_FLAGS = (
    "max_model_len",
    "max_num_seqs",
    "enable_prefix_caching",
    "kv_cache_memory_gib",
    "enforce_eager",
)


# ------------------------------------------------------------------------------ preset in the address


def remember_preset(key: str) -> None:
    """Seed the preset from ?preset= (a reload keeps it) and write the choice back to the address."""
    names = list(presets.all_presets())
    wanted = st.query_params.get(PRESET_PARAM)
    if key not in st.session_state and wanted in names:
        st.session_state[key] = wanted


def write_preset(name: str) -> None:
    if st.query_params.get(PRESET_PARAM) != name:
        st.query_params[PRESET_PARAM] = name


# ------------------------------------------------------------------------------ which server answered


def server_identity(snap: Any) -> tuple[float | None, str]:
    """What makes two answers come from the same server: its start time and its settings."""
    config = snap.config.to_dict() if snap.config is not None else {}
    return snap.started_at, json.dumps(config, sort_keys=True, default=str)


def settings_line(config: ServerConfig | None) -> str:
    """The settings of the server that answered, short: model and the flags that matter most here."""
    _ = ui_i18n.translator()
    if config is None:
        return ""
    base = default_config(state.backend())
    parts = [f"`{config.model}`"]
    for name in SHOWN_FLAGS:
        flag = flags.get(name)
        value = config.get(name)
        if value is None and base.get(name) is None:
            continue
        parts.append(f"`{flag.cli}` {widgets.value_text(flag, value)}")
    return _("Answered by the factory with: {settings}").format(settings=" · ".join(parts))


# ------------------------------------------------------------------------------------------ before sending


def problem_box(problem: Problem, key: str) -> None:
    """A problem in the user's words, vLLM's own text one click away, and the fix when there is one."""
    _ = ui_i18n.translator()
    st.error(problem.text(ui_i18n.current_language()), icon=":material/error:")
    if problem.root_cause:
        with st.expander(_("vLLM's own words"), icon=":material/bug_report:"):
            st.code(problem.root_cause, language=None, wrap_lines=True)


def refuse_if_too_long(snap: Any, payload: dict[str, Any], max_tokens_key: str) -> bool:
    """Count the prompt on the server; when question + longest answer cannot fit, say so and offer the
    fix (a shorter longest answer). True when the order must not be sent."""
    _ = ui_i18n.translator()
    counted = tokens.count_prompt(snap.base_url, payload, api_key=state.get_manager().api_key)
    if counted is None:
        return False
    problem = counted.problem(payload.get("max_tokens"))
    if problem is None:
        return False
    problem_box(problem, "playground.too_long")
    room = problem.suggestion
    if isinstance(room, int) and room > 0:
        st.button(
            _("Use {value} for the longest answer").format(value=ui_i18n.number(room)),
            icon=":material/build:",
            key="playground.fix_max_tokens",
            on_click=_set_value,
            args=(max_tokens_key, room),
        )
    return True


def _set_value(key: str, value: Any) -> None:
    st.session_state[key] = value


# ------------------------------------------------------------------------------------------ after sending


def explain_failure(timing: RequestTiming, max_tokens: int | None) -> None:
    problem_box(request_errors.explain(timing.error, max_tokens), "playground.failed")


# ------------------------------------------------------------------------------------------ Pika notes


def echoes_the_question(answer: str, question: str) -> bool:
    """The free-text answer repeats the child's sentence instead of judging it."""
    words = [w for w in question.replace("\n", " ").split(" ") if len(w) > 3][-12:]
    if not words or not answer:
        return False
    return sum(1 for w in words if w in answer) >= max(2, len(words) // 2)


def pika_free_text_note(preset_name: str, timing: RequestTiming, question: str) -> None:
    _ = ui_i18n.translator()
    if preset_name != FREE_TEXT_PRESET or not timing.ok:
        return
    cut = timing.finish_reason == "length"
    echo = echoes_the_question(timing.text, question)
    if not (cut or echo):
        return
    st.warning(
        _(
            "This is exactly the robot's complaint in the brief: in free text the model repeats the child's "
            "sentence and is cut off, so the robot gets no emotion it can read. The JSON preset fixes the "
            "format: the answer must be one emotion from the list and true or false."
        ),
        icon=":material/smart_toy:",
    )
    st.button(
        _("Try the JSON preset"),
        icon=":material/data_object:",
        key="playground.try_json",
        on_click=_set_value,
        args=("playground.preset", JSON_PRESET),
    )


def judgement_note(preset_name: str) -> None:
    """Which settings can change the model's judgement at temperature 0, and which cannot."""
    _ = ui_i18n.translator()
    if preset_name not in (FREE_TEXT_PRESET, JSON_PRESET):
        return
    with st.expander(
        _("Why does it say \u201cafraid\u201d for a happy sentence?"), icon=":material/psychology:"
    ):
        st.markdown(
            _(
                "The JSON form only guarantees the **shape** of the answer; the choice of emotion is the "
                "small model's own, and at temperature 0 it picks the same most likely words every time.\n\n"
                "- Settings that only change **how fast or how many** (lanes `--max-num-seqs`, the memory "
                "share, prefix caching, the warehouse size) do not change the answer: the same numbers go "
                "through the same steps.\n"
                "- Settings that change **how the words are chosen or computed** can change it: on an H200 "
                "the xgrammar structured-output backend without extra spaces turned \u201cafraid\u201d into "
                "\u201chappy\u201d for this very sentence; another data type (`--dtype`) or quantization can "
                "too.\n\n"
                "Change one setting, send the same order again, and watch the badge below the answer."
            )
        )


@dataclass
class _Answers:
    """The last answer at temperature 0 per request, and the settings that gave it (all sessions)."""

    seen: dict[str, tuple[str, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@st.cache_resource(show_spinner=False)
def _answers() -> _Answers:
    return _Answers()


def request_key(payload: dict[str, Any]) -> str:
    content = {k: v for k, v in payload.items() if k not in ("model", "stream", "stream_options")}
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def answer_change(payload: dict[str, Any], timing: RequestTiming, snap: Any) -> str | None:
    """At temperature 0, after a setting changed: "same" or "changed" answer to the same order; else None."""
    if not timing.ok or payload.get("temperature") not in (0, 0.0) or snap.config is None:
        return None
    key = request_key(payload)
    settings = config_key(snap.config)  # the port is no setting of the answer (the carousel moves it)
    with _answers().lock:
        before = _answers().seen.get(key)
        _answers().seen[key] = (settings, timing.text)
    if before is None or before[0] == settings:
        return None
    return "same" if before[1] == timing.text else "changed"


def answer_change_badge(change: str | None) -> None:
    _ = ui_i18n.translator()
    if change == "same":
        st.badge(_("Same answer as before the settings changed"), color="green", icon=":material/check:")
    elif change == "changed":
        st.badge(_("The answer changed with the settings"), color="orange", icon=":material/swap_horiz:")
