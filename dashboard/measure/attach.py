"""Attach mode: measure an OpenAI-compatible vLLM server the factory did not start.

    server = attach("http://10.0.0.5:8000", api_key_env="VLLM_API_KEY")
    run_load(server.base_url, server.served_name, workload, plan, api_key=server.api_key)

The API key is read from the environment variable the user names (never from a command line, where
other users of the machine could read it). The served model name comes from `GET /v1/models`.
Problems are `AttachError`s carrying an English msgid and its parameters, for the caller to translate.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from dashboard.engine.presets import RequestSpec
from dashboard.i18n import N_
from dashboard.measure import budget, metrics, probe
from dashboard.measure.client import auth_headers, chat_once, tls_context

MODELS_PATH = "/v1/models"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class AttachError(Exception):
    """Why a server cannot be attached: an English msgid with its parameters."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message.format(**params) if params else message)
        self.message = message
        self.params = params


@dataclass(frozen=True)
class AttachedServer:
    """A running server the factory measures but does not own: it never restarts or stops it."""

    base_url: str
    served_name: str
    api_key: str | None = None
    models: tuple[str, ...] = ()
    max_model_len: int | None = None

    def describe(self) -> dict[str, Any]:
        """What the history keeps about it (no key)."""
        return {
            "attached_url": self.base_url,
            "model": self.served_name,
            "max_model_len": self.max_model_len,
            "api_key": "(set)" if self.api_key else None,
        }


def normalize_url(url: str) -> str:
    """`http(s)://host[:port]` without a trailing slash or `/v1`; AttachError when it is not a URL."""
    text = (url or "").strip().rstrip("/")
    if text.endswith("/v1"):
        text = text[: -len("/v1")]
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AttachError(
            N_("The address {url} is not a server address; write it like http://host:8000."), url=url
        )
    return text


def api_key_from_env(name: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The key in the environment variable `name`; None without a name; AttachError when it is empty."""
    if not name:
        return None
    if not ENV_NAME.fullmatch(name):  # maybe the key itself: never repeat it in a message
        raise AttachError(
            N_("--api-key-env takes the name of an environment variable (like VLLM_API_KEY), not the key.")
        )
    value = (environ if environ is not None else os.environ).get(name, "").strip()
    if not value:
        raise AttachError(
            N_("The environment variable {name} is empty or not set; put the API key in it first."),
            name=name,
        )
    return value


def served_models(base_url: str, api_key: str | None, timeout: float = 10.0) -> list[dict[str, Any]]:
    try:
        response = httpx.get(
            base_url + MODELS_PATH, headers=auth_headers(api_key), timeout=timeout, verify=tls_context()
        )
    except httpx.HTTPError as exc:
        raise AttachError(
            N_("No server answers at {url} ({detail})."), url=base_url, detail=type(exc).__name__
        ) from None
    if response.status_code in (401, 403):
        raise AttachError(
            N_("The server at {url} refused the API key (HTTP {status}); check --api-key-env."),
            url=base_url,
            status=response.status_code,
        )
    if response.status_code != 200:
        raise AttachError(
            N_("The server at {url} answered HTTP {status} to {path}; is it an OpenAI-compatible server?"),
            url=base_url,
            status=response.status_code,
            path=MODELS_PATH,
        )
    try:
        data = response.json().get("data") or []
    except (ValueError, AttributeError):
        data = []
    if not data:
        raise AttachError(N_("The server at {url} serves no model."), url=base_url)
    return list(data)


def attach(
    url: str,
    api_key_env: str | None = None,
    model: str | None = None,
    environ: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> AttachedServer:
    """Check the server answers and name the model to measure (the first served one unless `model`)."""
    base_url = normalize_url(url)
    api_key = api_key_from_env(api_key_env, environ)
    entries = served_models(base_url, api_key, timeout)
    names = tuple(str(entry.get("id")) for entry in entries if entry.get("id"))
    chosen = model or (names[0] if names else "")
    if model and model not in names:
        raise AttachError(
            N_("The server at {url} does not serve {model}; it serves {names}."),
            url=base_url,
            model=model,
            names=", ".join(names),
        )
    entry = next((e for e in entries if e.get("id") == chosen), {})
    max_len = entry.get("max_model_len")
    return AttachedServer(
        base_url=base_url,
        served_name=chosen,
        api_key=api_key,
        models=names,
        max_model_len=int(max_len) if isinstance(max_len, int) else None,
    )


def probe_attached(
    server: AttachedServer,
    request: RequestSpec,
    requests: int = 3,
    on_request: Callable[[int, dict[str, Any]], None] | None = None,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """The `probe` report for a server the factory did not start: no startup facts, the same request
    records and medians, one latency budget (queue, prefill, decode, HTTP) and the /metrics gauges."""
    payload = request.payload(server.served_name)
    records: list[dict[str, Any]] = []
    for index in range(requests):
        timing = chat_once(server.base_url, payload, server.api_key, timeout=timeout)
        records.append(probe.request_record(timing))
        if on_request is not None:
            on_request(index, records[-1])
    latency, _timing = budget.measure_budget(server.base_url, payload, server.api_key, timeout)
    snapshot = metrics.try_scrape(server.base_url)
    problem = probe.request_problem(records)
    return {
        "attached": server.describe(),
        "requests": records,
        "summary": probe.summarize(records),
        "budget": latency.to_dict(),
        "metrics": snapshot.gauges() if snapshot is not None else None,
        "error": problem.to_dict() if problem else None,
        "finished_at": time.time(),
    }
