"""The history of runs in one SQLite file: every measured item is committed the moment it exists.

A run left 'running' by a process that is gone (crash, kill, power cut) is marked 'interrupted'
the next time a store opens the file; its rows stay. Many threads (browser sessions, background
workers) and several processes (the app and the CLI) may write at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from dashboard.history.records import (
    FINAL_STATUSES,
    RUN_KINDS,
    RowRecord,
    RunComparison,
    RunRecord,
    compare_runs,
)

FILE_NAME = "history.sqlite3"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

# MIGRATIONS[n] brings the schema from version n to n + 1.
MIGRATIONS = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        created_at TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        config_json TEXT NOT NULL,
        summary_json TEXT,
        backend TEXT NOT NULL DEFAULT '',
        finished_at TEXT,
        owner_pid INTEGER,
        owner_started REAL
    );
    CREATE INDEX runs_by_kind ON runs (kind, id);
    CREATE INDEX runs_by_status ON runs (status);
    CREATE TABLE rows (
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        data_json TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE startup_reports (
        run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        report_json TEXT NOT NULL
    );
    """,
)


def default_path() -> Path:
    """$LEGO_FACTORY_HOME/history.sqlite3, else $XDG_DATA_HOME/lego-factory/history.sqlite3."""
    home = os.environ.get("LEGO_FACTORY_HOME")
    if home:
        return Path(home).expanduser() / FILE_NAME
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / "lego-factory" / FILE_NAME


class HistoryStore:
    """One SQLite file in WAL mode behind one connection and one lock; safe to share between threads."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self.recover_interrupted()

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def recover_interrupted(self) -> int:
        """Mark runs still 'running' whose owning process is gone as 'interrupted'; return how many."""
        with self._lock:
            running = self._db.execute(
                "SELECT id, owner_pid, owner_started FROM runs WHERE status = 'running'"
            ).fetchall()
            orphans = [run_id for run_id, pid, started in running if not _process_alive(pid, started)]
            for run_id in orphans:
                self._db.execute(
                    "UPDATE runs SET status = 'interrupted' WHERE id = ? AND status = 'running'", (run_id,)
                )
        return len(orphans)

    # --- writing -----------------------------------------------------------------------------

    def create_run(self, kind: str, config: Mapping[str, Any], label: str = "", backend: str = "") -> int:
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}; expected one of {RUN_KINDS}")
        pid, started = _this_process()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO runs (kind, created_at, label, status, config_json, backend, owner_pid,"
                " owner_started) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                (kind, _now(), label, _dumps(config), backend, pid, started),
            )
        return int(cursor.lastrowid)

    def add_row(self, run_id: int, data: Mapping[str, Any] | Any) -> int:
        """Store one measured item now (committed before this returns); return its sequence number."""
        data_json = _dumps(data)
        with self._lock, self._transaction():
            seq = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM rows WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            self._db.execute(
                "INSERT INTO rows (run_id, seq, created_at, data_json) VALUES (?, ?, ?, ?)",
                (run_id, seq, _now(), data_json),
            )
        return int(seq)

    def set_startup(self, run_id: int, report: Mapping[str, Any] | Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO startup_reports (run_id, report_json) VALUES (?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET report_json = excluded.report_json",
                (run_id, _dumps(report)),
            )

    def finish_run(self, run_id: int, summary: Mapping[str, Any] | Any, status: str = "done") -> None:
        if status not in FINAL_STATUSES:
            raise ValueError(f"a finished run's status is one of {FINAL_STATUSES}, not {status!r}")
        with self._lock:
            cursor = self._db.execute(
                "UPDATE runs SET summary_json = ?, status = ?, finished_at = ? WHERE id = ?",
                (_dumps(summary), status, _now(), run_id),
            )
        if cursor.rowcount == 0:
            raise KeyError(run_id)

    def delete_run(self, run_id: int) -> None:
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM rows WHERE run_id = ?", (run_id,))
            self._db.execute("DELETE FROM startup_reports WHERE run_id = ?", (run_id,))
            self._db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # --- reading -----------------------------------------------------------------------------

    def list_runs(self, kind: str | None = None, limit: int = 200) -> list[RunRecord]:
        """Newest first, without rows (row_count says how many there are)."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs"
        params: tuple[Any, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            params = (kind,)
        query += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            found = self._db.execute(query, (*params, limit)).fetchall()
        return [_run_from_row(row) for row in found]

    def get_run(self, run_id: int) -> RunRecord:
        with self._lock:
            row = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            rows = self._db.execute(
                "SELECT seq, created_at, data_json FROM rows WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
            startup = self._db.execute(
                "SELECT report_json FROM startup_reports WHERE run_id = ?", (run_id,)
            ).fetchone()
        run = _run_from_row(row)
        return dataclasses.replace(
            run,
            rows=tuple(RowRecord(seq, created, json.loads(data)) for seq, created, data in rows),
            startup=None if startup is None else json.loads(startup[0]),
        )

    def compare(self, run_a: int, run_b: int) -> RunComparison:
        return compare_runs(self.get_run(run_a), self.get_run(run_b))

    # --- schema ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock, self._transaction():
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            for version in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, taken up front so that concurrent writers wait instead of failing."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


_RUN_COLUMNS = (
    "id, kind, created_at, label, status, config_json, summary_json, backend, finished_at,"
    " (SELECT COUNT(*) FROM rows WHERE rows.run_id = runs.id)"
)


def _run_from_row(row: tuple[Any, ...]) -> RunRecord:
    run_id, kind, created_at, label, status, config, summary, backend, finished_at, count = row
    return RunRecord(
        id=run_id,
        kind=kind,
        created_at=created_at,
        status=status,
        config=json.loads(config),
        label=label,
        backend=backend,
        summary=None if summary is None else json.loads(summary),
        finished_at=finished_at,
        row_count=count,
    )


def _plain(data: Any) -> Any:
    """Mappings as they are; records with to_dict() or dataclasses as dicts."""
    if isinstance(data, Mapping):
        return dict(data)
    if hasattr(data, "to_dict"):
        return data.to_dict()
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return dataclasses.asdict(data)
    raise TypeError(f"expected a dict or a record, got {type(data).__name__}")


def _dumps(data: Any) -> str:
    return json.dumps(_plain(data), ensure_ascii=False, default=str)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _this_process() -> tuple[int, float]:
    pid = os.getpid()
    return pid, psutil.Process(pid).create_time()


def _process_alive(pid: int | None, started: float | None) -> bool:
    """Whether the process that owns a run still runs (the same one, not a later one with its pid)."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and (
            started is None or abs(process.create_time() - started) < 1.0
        )
    except psutil.Error:
        return False
