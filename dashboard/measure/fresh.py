"""Restarting a server so that it really starts again.

The carousel of warm servers turns a restart with a config it already holds into a fast flip to the
running server. An A/A pair (the same settings measured on two separate starts) needs two real starts,
so it asks for `fresh=True` wherever the server object accepts it; a plain ServerManager always starts
anew and takes no such argument.
"""

from __future__ import annotations

import inspect
from typing import Any

from dashboard.engine.config import ServerConfig


def accepts(method: Any, name: str) -> bool:
    """True when `method` takes a keyword argument `name` (or any keyword argument)."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def restart(server: Any, config: ServerConfig, timeout: float, fresh: bool = False, **extra: Any) -> Any:
    """`server.restart(config, wait=True, timeout=...)`, asking for a new start when `fresh` and the
    server knows the word; extra keywords (on_phase) are passed only when accepted."""
    method = server.restart
    kwargs = {key: value for key, value in extra.items() if accepts(method, key)}
    if fresh and accepts(method, "fresh"):
        kwargs["fresh"] = True
    return method(config, wait=True, timeout=timeout, **kwargs)
