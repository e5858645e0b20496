"""Fold the translations waiting in locales/incoming/*.po into the vi and en catalogs.

Run through scripts/i18n_merge.sh, which extracts the template and updates the catalogs first, and
holds a lock so that two people adding translations at once never overwrite each other.
An incoming file is a plain .po file: msgid (English, as in the code) and msgstr (Vietnamese).
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
INCOMING = ROOT / "locales" / "incoming"
VI_PO = ROOT / "locales" / "vi" / "LC_MESSAGES" / "messages.po"


def _read(path: Path):
    with open(path, "rb") as handle:
        return read_po(handle)


def _filled(string: object) -> bool:
    return all(string) if isinstance(string, tuple | list) else bool(string)


def main() -> int:
    vietnamese = _read(VI_PO)
    waiting: dict[object, object] = {}
    for path in sorted(INCOMING.glob("*.po")):
        for message in _read(path):
            if message.id and message.string and (isinstance(message.id, str) or all(message.string)):
                waiting[message.id] = message.string  # plural entries: (singular, plural) -> (forms,)
    filled = 0
    for message in vietnamese:
        if not message.id or message.id not in waiting:
            continue
        wanted = waiting[message.id]
        if not _filled(message.string) or message.fuzzy or message.string != wanted:
            message.string = wanted
            message.flags.discard("fuzzy")
            filled += 1
    with open(VI_PO, "wb") as handle:
        write_po(handle, vietnamese, width=110, sort_by_file=True)
    missing = [m.id for m in vietnamese if m.id and isinstance(m.id, str) and not m.string]
    print(f"filled {filled} Vietnamese texts; {len(missing)} still missing")
    for text in missing[:40]:
        print("  missing:", text[:100])
    return 0


if __name__ == "__main__":
    sys.exit(main())
