"""Named presets (configs/presets/*.toml): flag values plus the test request they go with."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dashboard.engine.config import ServerConfig

PRESETS_DIR = Path(__file__).resolve().parents[2] / "configs" / "presets"


@dataclass(frozen=True)
class RequestSpec:
    """One chat request: the messages and the sampling settings (these never need a restart)."""

    messages: tuple[dict[str, str], ...]
    temperature: float = 0.0
    max_tokens: int = 50
    schema: dict[str, Any] | None = None  # JSON schema the answer must follow, when JSON mode is on

    def with_user_text(self, text: str) -> RequestSpec:
        messages = [m for m in self.messages if m["role"] != "user"] + [{"role": "user", "content": text}]
        return replace(self, messages=tuple(messages))

    def payload(self, model: str, stream: bool = True, json_mode: bool | None = None) -> dict[str, Any]:
        """The body of a /v1/chat/completions call."""
        body: dict[str, Any] = {
            "model": model,
            "messages": list(self.messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        use_schema = self.schema is not None if json_mode is None else json_mode
        if use_schema and self.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": self.schema},
            }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body


@dataclass(frozen=True)
class Preset:
    name: str
    title: str  # English msgid
    description: str  # English msgid
    flags: dict[str, Any] = field(default_factory=dict)
    request: RequestSpec = RequestSpec(messages=())
    json_schema: dict[str, Any] | None = None  # available for the JSON switch even when off


def _load(path: Path) -> Preset:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    request = data.get("request", {})
    schema = data.get("schema")
    spec = RequestSpec(
        messages=tuple(dict(m) for m in request.get("messages", ())),
        temperature=float(request.get("temperature", 0.0)),
        max_tokens=int(request.get("max_tokens", 50)),
        schema=schema if request.get("json_schema") else None,
    )
    return Preset(
        name=data["name"],
        title=data["title"],
        description=data["description"],
        flags=dict(data.get("flags", {})),
        request=spec,
        json_schema=schema,
    )


@cache
def all_presets() -> dict[str, Preset]:
    presets = [_load(path) for path in sorted(PRESETS_DIR.glob("*.toml"))]
    order = {"pika": 0, "pika-json": 1, "classroom": 2}
    return {p.name: p for p in sorted(presets, key=lambda p: (order.get(p.name, 9), p.name))}


def get(name: str) -> Preset:
    try:
        return all_presets()[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(all_presets())}") from None


def pika_emotions() -> list[str]:
    schema = get("pika-json").json_schema or {}
    return list(schema["properties"]["emotion"]["enum"])


BRIEF_GPU_VALUES = {"dtype": "float16", "gpu_memory_utilization": 0.15}  # the brief's H100 settings


def brief_config(backend: str, port: int | None = None) -> ServerConfig:
    """The pika-json preset's settings as the brief ran them: on a GPU, float16 and 0.15 of its memory."""
    from dashboard.engine.config import default_config

    config = default_config(backend).with_values(get("pika-json").flags)
    if backend == "cuda":
        config = config.with_values(BRIEF_GPU_VALUES)
    return config.with_values({"port": port}) if port is not None else config
