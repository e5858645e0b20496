"""The dangerous switches and the doors the API key does not guard.

Three settings can hurt the computer or open it to strangers: trust_remote_code (the model's own Python
runs here), a model that is not the built-in one (files from the internet or a folder), and host 0.0.0.0
(the server answers the whole network). Each needs the presenter and an explicit confirmation that
says what it allows. Measurements (sweeps, the whole-table run) never turn any of them on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from dashboard.classroom.roles import is_built_in
from dashboard.engine.config import ServerConfig
from dashboard.i18n import N_

# vLLM's AuthenticationMiddleware checks the key only under these prefixes (vllm/entrypoints/serve/
# middleware/authenticate.py, GUARDED_PREFIX); tests/integration compares this with the installed vLLM.
GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")
# Served without the key by vLLM's OpenAI server whatever /openapi.json lists (it can be slow to build):
# Prometheus, the docs pages, health, and the tokenizer.
ALWAYS_OPEN = ("/metrics", "/tokenize", "/detokenize", "/docs", "/openapi.json", "/health", "/version")
OPEN_HOSTS = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True)
class Danger:
    code: str  # "remote_code" | "outside_model" | "open_host"
    title: str  # msgid
    allows: str  # msgid: what saying yes allows


REMOTE_CODE = Danger(
    "remote_code",
    N_("Trust the model's own code (--trust-remote-code)"),
    N_(
        "I understand: Python files that come with the model will run on this computer, with my user's "
        "rights, and nobody checks them first. I trust the people who made this model."
    ),
)
OUTSIDE_MODEL = Danger(
    "outside_model",
    N_("A model that is not the built-in one"),
    N_(
        "I understand: the factory will download this model from the internet (or read it from the "
        "folder), which can take many GB of disk and memory, and the class will see what it answers."
    ),
)
OPEN_HOST = Danger(
    "open_host",
    N_("Open the server to the whole network (--host 0.0.0.0)"),
    N_(
        "I understand: every computer that can reach this one can talk to the vLLM server. The API key "
        "guards only the /v1 paths; /metrics, /tokenize, /docs, /health and others stay open to everyone."
    ),
)


def dangers(config: ServerConfig) -> list[Danger]:
    """The dangerous switches this config turns on."""
    found = []
    if config.get("trust_remote_code"):
        found.append(REMOTE_CODE)
    if not is_built_in(config.model or "embedded"):
        found.append(OUTSIDE_MODEL)
    if config.get("host") in OPEN_HOSTS:
        found.append(OPEN_HOST)
    return found


def unconfirmed(config: ServerConfig, confirmed: Iterable[str]) -> list[Danger]:
    """The dangers of `config` that were not confirmed (by code)."""
    said_yes = set(confirmed)
    return [danger for danger in dangers(config) if danger.code not in said_yes]


def unsafe_sweep_values(flag: str, values: Sequence[Any]) -> list[Any]:
    """Values a measurement must never use: it would run a model's code or open the server's door."""
    if flag == "trust_remote_code":
        return [value for value in values if bool(value)]
    if flag == "host":
        return [value for value in values if value in OPEN_HOSTS]
    return []


# ------------------------------------------------------------------------------------------ open doors


def listens_beyond_loopback(config: ServerConfig | None) -> bool:
    return config is not None and config.get("host") in OPEN_HOSTS


def is_guarded(path: str) -> bool:
    return path.startswith(GUARDED_PREFIXES)


def unguarded_paths(paths: Iterable[str]) -> list[str]:
    """The paths a client can use without the API key, sorted, the always-open ones first."""
    open_paths = {path for path in paths if not is_guarded(path)}
    first = [path for path in ALWAYS_OPEN]
    return first + sorted(open_paths - set(first))


def served_paths(base_url: str, timeout: float = 15.0) -> list[str]:
    """The paths the running server lists in its /openapi.json (itself served without the key);
    [] when it does not answer."""
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as http:
            answer = http.get(base_url + "/openapi.json")
            answer.raise_for_status()
            return sorted(answer.json().get("paths", {}))
    except (httpx.HTTPError, ValueError):
        return []


# ------------------------------------------------------------------------------------------ secrets

HIDDEN = "***"  # what a session's key box holds for a key it did not type itself


def hide_secrets(config: ServerConfig | None) -> ServerConfig | None:
    """The config as a browser session may hold it: a secret the server has is shown as HIDDEN, so
    the key never reaches another session's widget."""
    if config is None:
        return None
    values = {
        name: (HIDDEN if name in SECRET_FLAGS and value else value) for name, value in config.values.items()
    }
    return ServerConfig(model=config.model, values=values)


def reveal_secrets(config: ServerConfig, running: ServerConfig | None) -> ServerConfig:
    """The config to start: a HIDDEN secret means "keep the running server's", on the server side."""
    values = dict(config.values)
    for name in SECRET_FLAGS:
        if values.get(name) == HIDDEN:
            kept = running.get(name) if running is not None else None
            if kept:
                values[name] = kept
            else:
                values.pop(name, None)
    return ServerConfig(model=config.model, values=values)


SECRET_FLAGS = ("api_key",)
