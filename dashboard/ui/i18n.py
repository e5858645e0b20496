"""Streamlit glue for translations: the language of this browser session, and `_` bound to it per run.

The language comes from session state, then from `?lang=` in the address, then the default (vi);
it is written back to `?lang=` on every run so that a copied link opens in the same language.
Numbers and dates go through Babel with the session's locale (vi: 1.234,5; en: 1,234.5).
"""

from __future__ import annotations

import gettext
from collections.abc import Callable
from functools import cache

import streamlit as st
from babel.numbers import format_decimal, format_percent
from streamlit.runtime.scriptrunner import get_script_run_ctx

from dashboard import i18n as core_i18n

LANG_KEY = "lang"
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English"}


@cache
def _catalog(lang: str) -> gettext.NullTranslations:
    core_i18n.compile_catalogs()
    return gettext.translation(core_i18n.DOMAIN, core_i18n.LOCALES_DIR, [lang], fallback=True)


_last_language = core_i18n.DEFAULT_LANGUAGE  # for calls from outside any script run (see current_language)


def current_language() -> str:
    """The session's language: session state, then ?lang=, then the default.

    Outside a script run (AppTest calls a widget's format_func from the test's own thread) there is no
    session to ask, so the language of the most recent run is used."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return _last_language
    chosen = st.session_state.get(LANG_KEY)
    if chosen in core_i18n.LANGUAGES:
        return chosen
    return core_i18n.normalize(st.query_params.get(LANG_KEY))


def setup_language() -> str:
    """Settle the language for this run and write it back to ?lang=. Call once per run, first."""
    global _last_language
    lang = current_language()
    _last_language = lang
    st.session_state[LANG_KEY] = lang
    if st.query_params.get(LANG_KEY) != lang:
        st.query_params[LANG_KEY] = lang
    return lang


def translator() -> Callable[[str], str]:
    """`_` for this run's language."""
    return _catalog(current_language()).gettext


def plural_translator() -> Callable[[str, str, int], str]:
    """`ngettext` for this run's language (Vietnamese has a single plural form)."""
    return _catalog(current_language()).ngettext


def tr(message: str, **params: object) -> str:
    """Translate a msgid marked elsewhere with N_ and fill its {placeholders}."""
    text = translator()(message)
    return text.format(**params) if params else text


def number(value: float | int | None, digits: int = 0, lang: str | None = None) -> str:
    """A number in the session's locale (or `lang`); '–' when there is none."""
    if value is None:
        return "–"
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
    return format_decimal(value, format=pattern, locale=lang or current_language())


def percent(fraction: float | None, digits: int = 0) -> str:
    if fraction is None:
        return "–"
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "") + "%"
    return format_percent(fraction, format=pattern, locale=current_language())


def milliseconds(value: float | None) -> str:
    """A duration measured in ms; from one second up it is written in seconds (12.6 s, not 12,616 ms)."""
    _ = translator()
    if value is None:
        return "–"
    if value >= 1000:
        return _("{value} s").format(value=number(value / 1000, 2 if value < 10_000 else 1))
    return _("{value} ms").format(value=number(value, 0 if value >= 100 else 1))


def seconds(value: float | None) -> str:
    _ = translator()
    if value is None:
        return "–"
    return _("{value} s").format(value=number(value, 1))


def gib(value: float | None) -> str:
    _ = translator()
    if value is None:
        return "–"
    return _("{value} GiB").format(value=number(value, 2))
