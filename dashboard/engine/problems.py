"""A problem the user can fix: why a config was refused or why a start failed, and what to change."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dashboard.i18n import translate


@dataclass(frozen=True)
class Problem:
    code: str  # stable machine name, e.g. "out_of_range", "port_busy", "kv_cache_too_small"
    message: str  # English msgid with {placeholders}; translated on display
    flag: str | None = None  # catalog name of the flag to change, when there is one
    params: dict[str, Any] = field(default_factory=dict)
    suggestion: Any = None  # a value for `flag` that should work (vLLM's estimate when it gives one)
    root_cause: str = ""  # the line of the server log that explains the failure

    def text(self, lang: str | None) -> str:
        return translate(self.message, lang, **self.params)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["text_vi"] = self.text("vi")
        data["text_en"] = self.text("en")
        return data
