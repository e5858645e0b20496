"""A problem the user can fix: why a config was refused or why a start failed, and what to change."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dashboard.i18n import normalize, translate


@dataclass(frozen=True)
class Problem:
    code: str  # stable machine name, e.g. "out_of_range", "port_busy", "kv_cache_too_small"
    message: str  # English msgid with {placeholders}; translated on display
    flag: str | None = None  # catalog name of the flag to change, when there is one
    params: dict[str, Any] = field(default_factory=dict)
    suggestion: Any = None  # a value for `flag` that should work (vLLM's estimate when it gives one)
    root_cause: str = ""  # the line of the server log that explains the failure

    def text(self, lang: str | None) -> str:
        return translate(self.message, lang, **localized_params(self.params, lang, self.flag))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["text_vi"] = self.text("vi")
        data["text_en"] = self.text("en")
        return data


# Whole numbers that are amounts (written 131,072 / 131.072); ports, exit codes and ids stay bare.
_AMOUNT_KEYS = {
    "tokens",
    "length",
    "limit",
    "value",
    "seconds",
    "needed",
    "available",
    "lanes",
    "prompt",
    "answer",
    "room",
}


def localized_params(params: dict[str, Any], lang: str | None, flag: str | None = None) -> dict[str, Any]:
    """Numbers written for the language: decimals with a comma in Vietnamese, thousands grouped."""
    from babel.numbers import format_decimal

    locale = normalize(lang)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, float):
            out[key] = format_decimal(value, format="#,##0.##", locale=locale)
        elif isinstance(value, int) and key in _AMOUNT_KEYS and flag != "port":
            out[key] = format_decimal(value, format="#,##0", locale=locale)
        else:
            out[key] = value
    return out
