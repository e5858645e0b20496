"""The catalogs are complete and current: every English msgid has its Vietnamese text, the template
matches what the code marks today, and translations keep every {placeholder} of their msgid."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
POT = ROOT / "locales" / "messages.pot"
VI_PO = ROOT / "locales" / "vi" / "LC_MESSAGES" / "messages.po"
EN_PO = ROOT / "locales" / "en" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"\{(\w*)\}")


def _read(path: Path):
    with open(path, "rb") as handle:
        return read_po(handle)


def _ids(catalog) -> set[str]:
    return {message.id if isinstance(message.id, str) else message.id[0] for message in catalog if message.id}


def _untranslated(catalog) -> list[str]:
    missing = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple | list) else (message.string,)
        if not all(strings) or message.fuzzy:
            missing.append(message.id if isinstance(message.id, str) else message.id[0])
    return missing


def test_every_msgid_has_a_vietnamese_translation() -> None:
    template, vietnamese = _read(POT), _read(VI_PO)
    missing_entries = sorted(_ids(template) - _ids(vietnamese))
    assert not missing_entries, f"not in vi catalog (run scripts/i18n.sh): {missing_entries[:10]}"
    untranslated = _untranslated(vietnamese)
    assert not untranslated, f"{len(untranslated)} msgids lack Vietnamese text, e.g. {untranslated[:5]}"


def test_template_is_current_with_the_code(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.pot"
    env = dict(os.environ, OUT=str(fresh), PYTHON=os.environ.get("PYTHON", _python()))
    subprocess.run(["bash", "scripts/i18n.sh", "extract"], cwd=ROOT, env=env, check=True, capture_output=True)
    extracted, committed = _ids(_read(fresh)), _ids(_read(POT))
    assert extracted == committed, (
        "locales/messages.pot is stale: run scripts/i18n.sh "
        f"(new: {sorted(extracted - committed)[:5]}, gone: {sorted(committed - extracted)[:5]})"
    )


def test_english_catalog_knows_every_msgid() -> None:
    assert _ids(_read(POT)) <= _ids(_read(EN_PO))


def test_vietnamese_has_a_single_plural_form() -> None:
    assert _read(VI_PO).plural_forms == "nplurals=1; plural=0;"


@pytest.mark.parametrize("catalog_path", [VI_PO], ids=["vi"])
def test_translations_keep_every_placeholder(catalog_path: Path) -> None:
    broken = []
    for message in _read(catalog_path):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple | list) else (message.id,)
        strings = message.string if isinstance(message.string, tuple | list) else (message.string,)
        wanted = set(PLACEHOLDER.findall(ids[-1])) | set(PLACEHOLDER.findall(ids[0]))
        for text in strings:
            if (
                text
                and set(PLACEHOLDER.findall(text)) != wanted
                and not (len(ids) > 1 and set(PLACEHOLDER.findall(text)) <= wanted)
            ):
                broken.append(ids[0])
    assert not broken, f"placeholders differ from the msgid in: {broken[:5]}"


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else "python3"


def test_no_translation_call_hides_inside_an_f_string() -> None:
    """Babel cannot see `_("...")` written inside an f-string (on Python 3.11), so that text would never
    reach the catalogs and would stay English: translate first, then format."""
    import io
    import tokenize

    call = re.compile(r"(?<![\w.])(?:_|N_|ngettext)\(")
    hidden = []
    for path in sorted((ROOT / "dashboard").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            prefix = token.string[:2].lower()
            if token.type == tokenize.STRING and "f" in prefix and call.search(token.string):
                hidden.append(f"{path.relative_to(ROOT)}:{token.start[0]}")
    assert not hidden, f"translation calls inside f-strings: {hidden}"
