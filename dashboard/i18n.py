"""Translations for every face of the product (pages, CLI, errors), with no Streamlit in sight.

English msgids live in the code; `locales/<lang>/LC_MESSAGES/messages.po` holds the translations.
A translator is bound per call or per page run, never installed globally, so one user's language
never leaks into another session.
"""

from __future__ import annotations

import gettext
import subprocess
import sys
from functools import cache
from pathlib import Path

LOCALES_DIR = Path(__file__).resolve().parents[1] / "locales"
DOMAIN = "messages"
LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"


def N_(message: str) -> str:
    """Mark a string for extraction without translating it yet."""
    return message


def normalize(lang: str | None) -> str:
    lang = (lang or "").strip().lower()[:2]
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


def compile_catalogs() -> None:
    """Build the .mo files from the .po files when they are missing or older."""
    for po in LOCALES_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        subprocess.run(
            [sys.executable, "-m", "babel.messages.frontend", "compile", "-i", str(po), "-o", str(mo)],
            check=True,
            capture_output=True,
        )


@cache
def _translations(lang: str) -> gettext.NullTranslations:
    compile_catalogs()
    return gettext.translation(DOMAIN, LOCALES_DIR, [lang], fallback=True)


def translator(lang: str | None):
    """Return a `_` function for one language."""
    return _translations(normalize(lang)).gettext


def translate(message: str, lang: str | None, **params: object) -> str:
    text = translator(lang)(message)
    return text.format(**params) if params else text
