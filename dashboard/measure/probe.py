"""A probe: start a real server for a preset (plus changes), send its request a few times, stop the
server, and return one JSON-able report of the start and the requests."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dashboard.engine import config as config_mod
from dashboard.engine import hardware, presets
from dashboard.engine.carousel import Carousel
from dashboard.engine.config import ServerConfig, default_config
from dashboard.engine.problems import Problem
from dashboard.engine.startup_log import Phase
from dashboard.measure import request_errors
from dashboard.measure.cards import environment
from dashboard.measure.client import RequestTiming, chat_once

REQUEST_TIMEOUT_S = 120.0


def probe_config(
    preset: presets.Preset, overrides: Mapping[str, Any], backend: str, model: str = "embedded"
) -> ServerConfig:
    """The factory's starting values, then the preset's flags, then the caller's changes."""
    return default_config(backend, model=model).with_values(preset.flags).with_values(overrides)


def pick_port(config: ServerConfig, overrides: Mapping[str, Any]) -> ServerConfig:
    """Keep a port the caller chose; otherwise move off a busy default port to a free one."""
    port = config.get("port")
    if "port" in overrides or port is None or config_mod.port_is_free(int(port)):
        return config
    free = config_mod.next_free_port(int(port))
    return config.with_values({"port": free}) if free else config


def request_record(timing: RequestTiming) -> dict[str, Any]:
    return {
        "ok": timing.ok,
        "error": timing.error,
        "ttft_ms": _round(timing.ttft_ms),
        "itl_ms": _round(timing.mean_itl_ms()),
        "e2e_ms": _round(timing.e2e_ms),
        "prompt_tokens": timing.prompt_tokens,
        "completion_tokens": timing.completion_tokens,
        "finish_reason": timing.finish_reason,
        "text": timing.text,
        "started_at": timing.started_at,
    }


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the requests that succeeded."""
    ok = [r for r in records if r["ok"]]

    def median(key: str) -> float | None:
        values = [r[key] for r in ok if r[key] is not None]
        return _round(statistics.median(values)) if values else None

    return {
        "requests_ok": len(ok),
        "requests_failed": len(records) - len(ok),
        "ttft_ms_median": median("ttft_ms"),
        "itl_ms_median": median("itl_ms"),
        "e2e_ms_median": median("e2e_ms"),
        "completion_tokens_median": median("completion_tokens"),
    }


def run_probe(
    preset_name: str,
    overrides: Mapping[str, Any],
    workdir: Path,
    requests: int = 3,
    backend: str | None = None,
    on_phase: Callable[[Phase], None] | None = None,
    on_request: Callable[[int, dict[str, Any]], None] | None = None,
    timeout: float = 600,
    model: str = "embedded",
) -> dict[str, Any]:
    """Start, measure, stop (always). The report's `error` is None or a Problem as a dict."""
    preset = presets.get(preset_name)
    backend = backend or hardware.detect_backend()
    config = pick_port(probe_config(preset, overrides, backend, model), overrides)
    manager = Carousel(Path(workdir), backend=backend, use_starter=False)  # a bare start, as people run it
    records: list[dict[str, Any]] = []
    problem: Problem | None = None
    try:
        startup = manager.start(config, wait=True, timeout=timeout, on_phase=on_phase)
        if startup.ok:
            payload = preset.request.payload(manager.served_name)
            for index in range(requests):
                timing = chat_once(manager.base_url, payload, manager.api_key, timeout=REQUEST_TIMEOUT_S)
                records.append(request_record(timing))
                if on_request is not None:
                    on_request(index, records[-1])
            problem = request_problem(records)
        else:
            problem = startup.error
    finally:
        manager.close()
    report = startup.to_dict()
    report.update(
        {
            "preset": preset.name,
            "environment": environment(backend, config.model, startup.vllm_version or None),
            "requests": records,
            "summary": summarize(records),
            "error": problem.to_dict() if problem else None,
            "finished_at": time.time(),
        }
    )
    return report


def request_problem(records: list[dict[str, Any]]) -> Problem | None:
    failed = [r for r in records if not r["ok"]]
    if not failed:
        return None
    cause = request_errors.explain(str(failed[0]["error"]))  # in words, vLLM's text kept as root cause
    return Problem(
        cause.code,
        cause.message,
        cause.flag,
        {**cause.params, "failed": len(failed), "total": len(records)},
        suggestion=cause.suggestion,
        root_cause=cause.root_cause,
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return round(value, digits) if value is not None else None
