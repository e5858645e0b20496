"""Roles in a classroom, without Streamlit: the presenter key, the role of a browser session, the
visitors' order rate limit and the folder local models must live in.

The presenter is the person at the machine (a browser connected over loopback) or a browser that
opened the presenter link (`?presenter=KEY`, the key made fresh by `./run.sh --share`). Everyone
else is a visitor: they watch everything and may send playground orders within a rate limit.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dashboard.engine.problems import Problem
from dashboard.i18n import N_

PRESENTER = "presenter"
VISITOR = "visitor"

SHARE_ENV = "LEGO_FACTORY_SHARE"  # 1: listen on the network for a class
KEY_ENV = "LEGO_FACTORY_PRESENTER_KEY"  # the presenter link's key (set by run.sh, never on a command line)
MODEL_ROOT_ENV = "LEGO_FACTORY_MODEL_ROOT"  # local model folders must be inside this folder
VISITOR_RATE_ENV = "LEGO_FACTORY_VISITOR_ORDERS"  # playground orders per visitor per minute
DEFAULT_VISITOR_ORDERS_PER_MINUTE = 6
KEY_BYTES = 24

HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
BUILT_IN_MODELS = frozenset({"embedded", "HuggingFaceTB/SmolLM2-135M-Instruct"})


# ------------------------------------------------------------------------------------------ sharing


def truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def is_shared(environ: dict[str, str] | None = None) -> bool:
    """True when the app was started for a class (`./run.sh --share` or LEGO_FACTORY_SHARE=1)."""
    return truthy((environ if environ is not None else os.environ).get(SHARE_ENV))


def new_presenter_key() -> str:
    """A fresh random key for the presenter link (URL-safe, 192 bits)."""
    return secrets.token_urlsafe(KEY_BYTES)


_key_lock = threading.Lock()
_process_key: list[str | None] = []  # read once from the environment, then kept only in memory


def presenter_key(environ: dict[str, str] | None = None) -> str | None:
    """The presenter link's key. Read from LEGO_FACTORY_PRESENTER_KEY once and removed from this
    process's environment, so the servers it starts (and their logs) never get it."""
    if environ is not None:
        return environ.get(KEY_ENV, "").strip() or None
    with _key_lock:
        if not _process_key:
            _process_key.append(os.environ.pop(KEY_ENV, "").strip() or None)
        return _process_key[0]


def set_presenter_key(key: str | None) -> None:
    """Keep `key` as this process's presenter key (the launcher), without putting it in the environment."""
    with _key_lock:
        _process_key[:] = [key or None]
    os.environ.pop(KEY_ENV, None)


def key_matches(offered: str | None, expected: str | None) -> bool:
    """Constant-time comparison; no key set means no link can make a presenter."""
    if not offered or not expected:
        return False
    return secrets.compare_digest(offered.encode("utf-8"), expected.encode("utf-8"))


def presenter_link(address: str, port: int, key: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/?presenter={key}"


# ------------------------------------------------------------------------------------------ roles


def is_loopback(client_ip: str | None) -> bool:
    if not client_ip:
        return False
    try:
        return ipaddress.ip_address(client_ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def decide_role(client_ip: str | None, offered_key: str | None, expected_key: str | None) -> str:
    """The role of a new browser session. The TCP peer decides "at the machine" (never a header the
    browser could write); a matching presenter key makes a presenter from anywhere."""
    if key_matches(offered_key, expected_key):
        return PRESENTER
    if is_loopback(client_ip):
        return PRESENTER
    return VISITOR


def refusal(action: str) -> Problem:
    """What a visitor reads when the server refuses an action that changes the factory."""
    return Problem(
        "presenter_only",
        N_("Only the presenter can {action}. You are watching as a visitor."),
        params={"action": action},
    )


# ------------------------------------------------------------------------------------------ rate limit


@dataclass
class RateLimiter:
    """At most `per_minute` events per visitor in any 60 s window (thread-safe, process-wide)."""

    per_minute: int = DEFAULT_VISITOR_ORDERS_PER_MINUTE
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _events: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def try_acquire(self, who: str) -> float:
        """0.0 when `who` may go now (and the event is counted); else the seconds to wait."""
        now = self.clock()
        with self._lock:
            events = self._events.setdefault(who, deque())
            while events and events[0] <= now - self.window_s:
                events.popleft()
            if self.per_minute <= 0:
                return self.window_s
            if len(events) >= self.per_minute:
                return max(0.1, events[0] + self.window_s - now)
            events.append(now)
            return 0.0

    def set_rate(self, per_minute: int) -> None:
        with self._lock:
            self.per_minute = max(0, int(per_minute))


def visitor_rate(environ: dict[str, str] | None = None) -> int:
    raw = (environ if environ is not None else os.environ).get(VISITOR_RATE_ENV, "")
    try:
        return max(0, int(raw))
    except ValueError:
        return DEFAULT_VISITOR_ORDERS_PER_MINUTE


# ------------------------------------------------------------------------------------------ models


def model_root(environ: dict[str, str] | None = None) -> Path | None:
    raw = (environ if environ is not None else os.environ).get(MODEL_ROOT_ENV, "").strip()
    return Path(raw).expanduser().resolve() if raw else None


def looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") != 1


def is_built_in(model: str) -> bool:
    return model.strip() in BUILT_IN_MODELS


def check_model_choice(model: str, root: Path | None) -> tuple[str, Problem | None]:
    """The model text to use, or a problem. Accepts the built-in model, a Hugging Face id, or a folder
    inside `root`. A path outside the root gets the same answer whether it exists or not, so the box
    never tells anyone what is on this computer."""
    text = model.strip()
    if not text or is_built_in(text):
        return text or "embedded", None
    if not looks_like_path(text) and HF_ID.match(text):
        return text, None
    if root is None:
        return text, Problem(
            "local_models_off",
            N_(
                "Local model folders are turned off. Type a Hugging Face id (like Qwen/Qwen3-0.6B), "
                "or ask the presenter to set a folder for local models."
            ),
            flag=None,
        )
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        return text, Problem(
            "model_outside_root",
            N_(
                "Only Hugging Face ids or folders inside the local model folder can be used. "
                "Type a Hugging Face id, or a folder name inside the local model folder."
            ),
        )
    return str(resolved), None
