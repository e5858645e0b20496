"""The flag catalog: every vLLM server flag the factory knows, read from configs/flags.toml."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).resolve().parents[2] / "configs" / "flags.toml"

GROUPS = ("warehouse", "conveyor", "lanes", "shortcuts", "materials", "doors")
BACKENDS = ("cpu", "cuda")


class FlagValueError(ValueError):
    """A value that a flag cannot take. Carries the flag so callers can name it."""

    def __init__(self, flag: Flag, value: Any, reason: str) -> None:
        super().__init__(f"{flag.cli}: {reason} (got {value!r})")
        self.flag = flag
        self.value = value
        self.reason = reason


@dataclass(frozen=True)
class Flag:
    name: str
    cli: str
    group: str
    kind: str
    texts: str
    backends: tuple[str, ...]
    restart: bool = True
    default: Any = None
    cpu_default: Any = None
    cuda_default: Any = None
    vllm_default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    unit: str = ""
    choices: tuple[str, ...] = field(default_factory=tuple)
    secret: bool = False
    replaces: str = ""

    def start_value(self, backend: str) -> Any:
        """The factory's starting value on this backend; None leaves the flag to vLLM."""
        per_backend = {"cpu": self.cpu_default, "cuda": self.cuda_default}.get(backend)
        return per_backend if per_backend is not None else self.default

    def has_effect_on(self, backend: str) -> bool:
        return backend in self.backends

    def coerce(self, value: Any) -> Any:
        """Turn a raw value (from a widget, TOML or the CLI's text) into this flag's type, or raise."""
        if value is None:
            return None
        try:
            if self.kind == "bool":
                return _to_bool(value)
            if self.kind == "int":
                number: float = int(_human_int(value))
            elif self.kind == "float":
                number = _finite_float(value)
            elif self.kind == "choice":
                text = canonical_json(value) if _is_json_object(value) else str(value)
                if text not in self.choices:
                    raise FlagValueError(self, value, f"choose one of {', '.join(self.choices)}")
                return text
            else:
                return str(value)
        except FlagValueError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise FlagValueError(self, value, f"expected a {self.kind}") from exc
        if self.min is not None and number < self.min:
            raise FlagValueError(self, value, f"must be at least {self.min:g}")
        if self.max is not None and number > self.max:
            raise FlagValueError(self, value, f"must be at most {self.max:g}")
        return number

    def argv(self, value: Any) -> list[str]:
        """The command-line words for this value; [] when vLLM's own default applies."""
        if value is None or (self.kind == "text" and value == ""):
            return []
        if self.kind == "choice" and value == "none":
            return []
        if self.kind == "bool":
            if self.vllm_default is not None and bool(value) == bool(self.vllm_default):
                return []
            return [self.cli] if value else ["--no-" + self.cli.removeprefix("--")]
        if self.name == "kv_cache_memory_gib":
            return [self.cli, str(int(float(value) * 1024**3))]
        if self.kind == "float":
            return [self.cli, f"{float(value):g}"]
        return [self.cli, str(value)]


def canonical_json(value: Any) -> str:
    """One spelling of a JSON object (a dict or its text): compact, keys sorted. JSON-valued options
    (--speculative-config, --structured-outputs-config) keep their catalog choices in this form, so
    `{"backend": "xgrammar"}` typed with other spaces or key order still matches."""
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, dict):
        raise ValueError(value)
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _is_json_object(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, str) and value.strip().startswith("{"))


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _finite_float(value: Any) -> float:
    """A float that is a real number: nan, inf and overflowing text (1e400) are refused."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _human_int(value: Any) -> int:
    """Accept 2048, '2048', '2k' and '1m' the way vLLM does."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(value)
    if isinstance(value, int | float):
        if float(value) != int(value):
            raise ValueError(value)
        return int(value)
    text = str(value).strip().lower().replace("_", "")
    multipliers = {"k": 1000, "m": 1000**2, "g": 1000**3}
    if text and text[-1] in multipliers:
        return int(_finite_float(text[:-1]) * multipliers[text[-1]])
    return int(text)


@cache
def catalog() -> dict[str, Flag]:
    """All flags by name, in catalog order."""
    data = tomllib.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    flags: dict[str, Flag] = {}
    for entry in data["flag"]:
        entry = dict(entry)
        entry["backends"] = tuple(entry["backends"])
        entry["choices"] = tuple(entry.get("choices", ()))
        flag = Flag(**entry)
        if flag.group not in GROUPS:
            raise ValueError(f"{flag.name}: unknown group {flag.group}")
        flags[flag.name] = flag
    return flags


def get(name: str) -> Flag:
    try:
        return catalog()[name]
    except KeyError:
        known = ", ".join(catalog())
        raise KeyError(f"unknown flag {name!r}; known flags: {known}") from None


def by_cli(option: str) -> Flag | None:
    for flag in catalog().values():
        if option in (flag.cli, flag.replaces) or option == "--no-" + flag.cli.removeprefix("--"):
            return flag
    return None


def in_group(group: str) -> list[Flag]:
    return [flag for flag in catalog().values() if flag.group == group]
