"""A real vLLM server for the inspector's integration tests, started and stopped by the ServerManager."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from dashboard.engine.config import default_config
from dashboard.engine.server import ServerManager
from tests.integration.backend import BACKEND

START_TIMEOUT_S = 240  # several engineers' servers may share this 2-core machine


@contextlib.contextmanager
def running_server(
    workdir: Path,
    port: int,
    extra_argv: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    **values,
) -> Iterator[ServerManager]:
    """Yield a ServerManager whose server is ready; the whole process tree is stopped afterwards.
    `extra_argv`/`extra_env` are added to the server's start (the request X-ray's span endpoint)."""
    manager = ServerManager(workdir, backend=BACKEND)
    manager.extra_argv = list(extra_argv)
    manager.extra_env = dict(extra_env or {})
    config = default_config(BACKEND).with_values({"port": port, "max_model_len": 2048, **values})
    try:
        report = manager.start(config, timeout=START_TIMEOUT_S)
        if not report.ok:
            message = report.error.text("en") if report.error else "not ready"
            pytest.fail(f"vLLM did not start: {message}\n" + "\n".join(report.log_tail[-20:]))
        yield manager
    finally:
        manager.close()
