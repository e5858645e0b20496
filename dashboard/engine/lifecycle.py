"""The app's life around its servers: reap what an earlier app left behind before anything is shown,
stop every server on SIGHUP (a closed terminal) as well as SIGINT and SIGTERM, keep the app's and the
CLI's server records apart, and rotate old server logs.

Records: the app's servers live under `runs/app/` (a carousel keeps one folder per slot below it), the
CLI's under `runs/cli/`; each folder with a running server holds a `server.json` naming the server's
session and the process that owns it. A record whose owner is gone is an orphan: its server is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace

from dashboard.engine import models, starter
from dashboard.engine.server import STATE_FILE, ServerManager, stop_all

LOGS_KEPT = 20
RECORD_DEPTH = 3  # runs/app/server.json, runs/app/slots/N/server.json
HANGUP_SIGNALS = ("SIGHUP",)

_installed: set[int] = set()
_install_lock = threading.Lock()


def runs_root() -> Path:
    return models.cache_root() / "runs"


def app_runs_dir() -> Path:
    return runs_root() / "app"


def cli_runs_dir() -> Path:
    return runs_root() / "cli"


def app_record_folders() -> list[Path]:
    """Where the app keeps server records: runs/app (and below), plus runs/ itself, used by earlier
    versions. runs/cli is the CLI's own and is never touched here."""
    return [app_runs_dir(), runs_root()]


def record_files(folder: Path, depth: int = RECORD_DEPTH) -> list[Path]:
    """The server records in `folder` and its sub-folders, the CLI's folder left out."""
    found: list[Path] = []
    if not folder.is_dir():
        return found
    if (folder / STATE_FILE).is_file():
        found.append(folder / STATE_FILE)
    if depth <= 0:
        return found
    with contextlib.suppress(OSError):
        for child in sorted(folder.iterdir()):
            if child.is_dir() and child.resolve() != cli_runs_dir().resolve() and child.name != "logs":
                found += record_files(child, depth - 1)
    return found


def reap_leftovers(folders: Iterable[Path] | None = None) -> list[int]:
    """Kill the servers of earlier apps (their owner process is gone); the ids of the processes killed.
    A record whose owner still runs (another app on this home) is left alone."""
    killed: list[int] = []
    seen: set[Path] = set()
    chosen = list(folders) if folders is not None else app_record_folders()
    for folder in chosen:
        starter.reap_starter(Path(folder))  # the carousel's prepared starter, when its app is gone
        for record in record_files(Path(folder), depth=0 if Path(folder) == runs_root() else RECORD_DEPTH):
            if record in seen:
                continue
            seen.add(record)
            # The manager's own reaping, without building a manager (that would register exit hooks).
            killed += ServerManager.reap_orphans(SimpleNamespace(workdir=record.parent))  # type: ignore[arg-type]
    return killed


def rotate_logs(folder: Path, keep: int = LOGS_KEPT) -> list[Path]:
    """Delete all but the newest `keep` server logs in folder/logs (and in each slot's logs); never the
    log of a server that is running (its record names it)."""
    removed: list[Path] = []
    for logs in [folder / "logs", *sorted(folder.glob("slots/*/logs"))]:
        if not logs.is_dir():
            continue
        in_use = _logs_in_use(logs.parent)
        files = sorted(logs.glob("server-*.log"), key=_mtime, reverse=True)
        for path in files[keep:]:
            if str(path) in in_use:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _logs_in_use(folder: Path) -> set[str]:
    import json

    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(state.get("log_path", ""))}


# ------------------------------------------------------------------------------------------ signals


def _hangup_handler(previous: Callable | int | None) -> Callable:
    def handler(signum: int, frame) -> None:  # noqa: ANN001 (a signal frame)
        stop_all()
        if callable(previous):
            previous(signum, frame)
            return
        # Let the web server shut down the way it does for SIGTERM (its own handler), then exit.
        os.kill(os.getpid(), signal.SIGTERM)

    return handler


def install_hangup_handler() -> bool:
    """Stop every server when the terminal closes (SIGHUP). Must run on the main thread; True when the
    handler is in place. SIGINT and SIGTERM already end in the exit hooks of dashboard.engine.server."""
    if threading.current_thread() is not threading.main_thread():
        return False
    with _install_lock:
        for name in HANGUP_SIGNALS:
            number = getattr(signal, name, None)
            if number is None or number in _installed:
                continue
            with contextlib.suppress(ValueError, OSError):
                signal.signal(number, _hangup_handler(signal.getsignal(number)))
                _installed.add(number)
    return bool(_installed)


def hangup_handler_installed() -> bool:
    return bool(_installed)
