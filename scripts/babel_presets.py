"""Babel extractor for configs/presets/*.toml: a preset's `title` and `description` are English msgids."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import IO, Any

TRANSLATED_KEYS = ("title", "description")


def extract(
    fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: dict[str, Any]
) -> Iterator[tuple[int, str | None, str, list[str]]]:
    text = fileobj.read().decode("utf-8")
    data = tomllib.loads(text)
    for key in TRANSLATED_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value:
            yield _line_of(text, key), None, value, [f"preset {data.get('name', '')}: {key}"]


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith(f"{key} ") or line.strip().startswith(f"{key}="):
            return number
    return 1
