"""What a start of the server produced (StartupReport) and how the server looks right now (ServerSnapshot).

Plain frozen records: the server manager writes them, pages, the CLI and the history read them.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboard.engine import flags
from dashboard.engine.config import API_KEY_ENV, API_KEY_PLACEHOLDER, ServerConfig
from dashboard.engine.problems import Problem
from dashboard.engine.startup_log import Phase

STATUSES = ("stopped", "starting", "ready", "failed", "stopping")
MASK = "***"


def mask_secrets(command: Sequence[str]) -> list[str]:
    """The command with the values of secret flags (the API key) replaced by ***."""
    secret_options = {flag.cli for flag in flags.catalog().values() if flag.secret}
    masked: list[str] = []
    hide_next = False
    for word in command:
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        option, sep, _ = word.partition("=")
        if option in secret_options:
            if sep:
                masked.append(option + "=" + MASK)
            else:
                masked.append(word)
                hide_next = True
            continue
        masked.append(word)
    return masked


def mask_config(config: ServerConfig | None) -> dict[str, Any]:
    if config is None:
        return {}
    data = config.to_dict()
    for name, flag in flags.catalog().items():
        if flag.secret and data["values"].get(name):
            data["values"][name] = MASK
    return data


@dataclass(frozen=True)
class StartupReport:
    """One start of the server, from launch to ready or failure. Secrets are masked."""

    config: dict[str, Any]
    command: list[str]  # the exact argv, API key masked
    started_at: float  # epoch seconds
    backend: str
    vllm_version: str = ""
    ready_s: float | None = None  # launch -> /health answered 200
    startup: list[dict[str, Any]] = field(default_factory=list)  # [{phase, seconds, detail}]
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    kv_cache_gib: float | None = None
    weights_gib: float | None = None
    error: Problem | None = None
    log_tail: list[str] = field(default_factory=list)
    log_path: str = ""
    base_url: str = ""
    served_name: str = ""
    # how this server came to answer: {"kind": "cold" | "forked" | "reused" | "woken", "ready_s": seconds}
    server_start: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.ready_s is not None

    @property
    def command_text(self) -> str:
        """The command as a shell line; a server with an API key gets it through VLLM_API_KEY, so the
        line starts with that variable and a placeholder, never the key."""
        values = self.config.get("values") or {}
        prefix = f"{API_KEY_ENV}={API_KEY_PLACEHOLDER} " if values.get("api_key") else ""
        return prefix + shlex.join(self.command)

    def phase_seconds(self, name: str) -> float | None:
        for entry in self.startup:
            if entry["phase"] == name:
                return entry["seconds"]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "command": list(self.command),
            "command_text": self.command_text,
            "started_at": self.started_at,
            "backend": self.backend,
            "vllm_version": self.vllm_version,
            "ready_s": self.ready_s,
            "startup": [dict(entry) for entry in self.startup],
            "kv_cache_tokens": self.kv_cache_tokens,
            "max_concurrency": self.max_concurrency,
            "kv_cache_gib": self.kv_cache_gib,
            "weights_gib": self.weights_gib,
            "error": self.error.to_dict() if self.error else None,
            "log_tail": list(self.log_tail),
            "log_path": self.log_path,
            "base_url": self.base_url,
            "served_name": self.served_name,
            "server_start": dict(self.server_start) if self.server_start else None,
        }


def refused_report(
    config: ServerConfig, problem: Problem, backend: str, started_at: float, command: Sequence[str] = ()
) -> StartupReport:
    """The report of a start that never launched: the config was refused before any process ran."""
    return StartupReport(
        config=mask_config(config),
        command=mask_secrets(command),
        started_at=started_at,
        backend=backend,
        error=problem,
    )


@dataclass(frozen=True)
class ServerSnapshot:
    """The server as it is now; safe to read from any thread (a copy, never updated in place)."""

    status: str  # one of STATUSES
    config: ServerConfig | None = None  # the running or starting config
    phases: tuple[Phase, ...] = ()
    report: StartupReport | None = None  # the last start's report (final once ready or failed)
    problem: Problem | None = None
    base_url: str = ""
    served_name: str = ""
    pid: int | None = None
    log_path: str = ""
    started_at: float | None = None

    @property
    def busy(self) -> bool:
        return self.status in ("starting", "stopping")

    @property
    def ready(self) -> bool:
        return self.status == "ready"
