"""The history store: runs and their rows survive crashes, concurrent writers and reopening."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from dashboard.history.records import RunRecord
from dashboard.history.store import SCHEMA_VERSION, HistoryStore, default_path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"model": "embedded", "values": {"max_model_len": 2048, "enforce_eager": True}}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite3"


@pytest.fixture
def store(db_path: Path):
    with HistoryStore(db_path) as opened:
        yield opened


def _child(code: str, db_path: Path, **popen: object) -> subprocess.Popen:
    script = "from pathlib import Path\nfrom dashboard.history.store import HistoryStore\n"
    script += f"store = HistoryStore(Path({str(db_path)!r}))\n" + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", script], env=env, text=True, **popen)


def test_a_run_keeps_what_was_written(store: HistoryStore) -> None:
    run_id = store.create_run("probe", CONFIG, label="Pika", backend="cpu")
    assert store.add_row(run_id, {"ttft_ms": 97.0}) == 1
    assert store.add_row(run_id, {"ttft_ms": 101.5, "tokens": {"out": 19}}) == 2
    store.set_startup(run_id, {"phases": [{"name": "weights", "seconds": 0.58}]})
    store.finish_run(run_id, {"p50_ms": 99.25})

    run = store.get_run(run_id)

    assert isinstance(run, RunRecord)
    assert (run.kind, run.status, run.label, run.backend) == ("probe", "done", "Pika", "cpu")
    assert run.config == CONFIG
    assert run.summary == {"p50_ms": 99.25}
    assert [row.seq for row in run.rows] == [1, 2]
    assert run.rows[1].data == {"ttft_ms": 101.5, "tokens": {"out": 19}}
    assert run.startup == {"phases": [{"name": "weights", "seconds": 0.58}]}
    assert run.finished_at is not None and run.finished_at >= run.created_at
    assert run.row_count == 2


def test_a_run_is_running_until_finished(store: HistoryStore) -> None:
    run_id = store.create_run("sweep", CONFIG)
    assert store.get_run(run_id).status == "running"
    assert store.get_run(run_id).finished_at is None
    store.finish_run(run_id, {"error": "boom"}, status="failed")
    assert store.get_run(run_id).status == "failed"


def test_unknown_kinds_and_statuses_are_refused(store: HistoryStore) -> None:
    with pytest.raises(ValueError):
        store.create_run("benchmark", CONFIG)
    run_id = store.create_run("load", CONFIG)
    with pytest.raises(ValueError):
        store.finish_run(run_id, {}, status="running")
    with pytest.raises(KeyError):
        store.finish_run(run_id + 1, {})
    with pytest.raises(KeyError):
        store.get_run(run_id + 1)


def test_list_runs_is_newest_first_filtered_and_limited(store: HistoryStore) -> None:
    ids = [store.create_run(kind, CONFIG) for kind in ("probe", "sweep", "probe", "load", "probe")]
    store.add_row(ids[0], {"x": 1})

    assert [run.id for run in store.list_runs()] == ids[::-1]
    assert [run.id for run in store.list_runs(kind="probe")] == [ids[4], ids[2], ids[0]]
    assert [run.id for run in store.list_runs(kind="probe", limit=2)] == [ids[4], ids[2]]
    listed = {run.id: run for run in store.list_runs()}
    assert listed[ids[0]].row_count == 1
    assert listed[ids[0]].rows == ()


def test_delete_run_removes_its_rows_and_startup_report(store: HistoryStore, db_path: Path) -> None:
    kept = store.create_run("probe", CONFIG)
    gone = store.create_run("startup", CONFIG)
    store.add_row(gone, {"x": 1})
    store.add_row(kept, {"x": 2})
    store.set_startup(gone, {"ok": True})

    store.delete_run(gone)

    assert [run.id for run in store.list_runs()] == [kept]
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == 1
        assert other.execute("SELECT COUNT(*) FROM startup_reports").fetchone()[0] == 0


def test_the_file_is_in_wal_mode_with_a_schema_version(store: HistoryStore, db_path: Path) -> None:
    with sqlite3.connect(db_path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert store.schema_version() == SCHEMA_VERSION


def test_reopening_keeps_runs_and_does_not_migrate_twice(db_path: Path) -> None:
    with HistoryStore(db_path) as first:
        run_id = first.create_run("probe", CONFIG)
        first.finish_run(run_id, {"n": 1})
    with HistoryStore(db_path) as second:
        assert second.get_run(run_id).summary == {"n": 1}
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


def test_each_row_is_visible_to_another_connection_before_the_run_finishes(
    store: HistoryStore, db_path: Path
) -> None:
    run_id = store.create_run("load", CONFIG)
    with sqlite3.connect(db_path) as other:
        for expected in (1, 2, 3):
            store.add_row(run_id, {"level": expected})
            count = other.execute("SELECT COUNT(*) FROM rows WHERE run_id = ?", (run_id,)).fetchone()[0]
            assert count == expected
        status = other.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        assert status == "running"


@pytest.mark.parametrize("death", ["os._exit(3)", "os.kill(os.getpid(), signal.SIGKILL)"])
def test_a_run_killed_mid_way_keeps_its_rows_and_is_marked_interrupted(db_path: Path, death: str) -> None:
    child = _child(
        f"""
        import os, signal
        run_id = store.create_run("sweep", {{"max_num_seqs": 8}})
        for level in range(3):
            store.add_row(run_id, {{"level": level}})
        print(run_id, flush=True)
        {death}
        store.finish_run(run_id, {{}})
        """,
        db_path,
        stdout=subprocess.PIPE,
    )
    out, _ = child.communicate(timeout=60)
    assert child.returncode != 0
    run_id = int(out.strip())

    with HistoryStore(db_path) as reopened:
        run = reopened.get_run(run_id)

    assert run.status == "interrupted"
    assert [row.data["level"] for row in run.rows] == [0, 1, 2]
    assert run.summary is None


def test_a_run_of_a_process_still_alive_is_not_marked_interrupted(db_path: Path) -> None:
    child = _child(
        """
        import sys
        run_id = store.create_run("probe", {})
        print(run_id, flush=True)
        sys.stdin.readline()
        """,
        db_path,
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
    )
    try:
        run_id = int(child.stdout.readline())
        with HistoryStore(db_path) as beside:
            assert beside.get_run(run_id).status == "running"
    finally:
        child.kill()
        child.wait(timeout=30)
    with HistoryStore(db_path) as after:
        assert after.get_run(run_id).status == "interrupted"


def test_a_second_store_in_the_same_process_leaves_running_runs_alone(store: HistoryStore, db_path) -> None:
    run_id = store.create_run("playground", {})
    with HistoryStore(db_path) as second:
        assert second.get_run(run_id).status == "running"


def test_threads_writing_at_once_lose_no_rows(store: HistoryStore) -> None:
    run_ids = [store.create_run("load", CONFIG) for _ in range(2)]
    threads_per_run, rows_per_thread = 4, 50

    def write(run_id: int, worker: int) -> None:
        for i in range(rows_per_thread):
            store.add_row(run_id, {"worker": worker, "i": i})

    threads = [
        threading.Thread(target=write, args=(run_id, worker))
        for run_id in run_ids
        for worker in range(threads_per_run)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for run_id in run_ids:
        rows = store.get_run(run_id).rows
        assert [row.seq for row in rows] == list(range(1, threads_per_run * rows_per_thread + 1))
        written = {(row.data["worker"], row.data["i"]) for row in rows}
        assert len(written) == threads_per_run * rows_per_thread


def test_separate_stores_on_one_file_lose_no_rows(db_path: Path) -> None:
    with HistoryStore(db_path) as setup:
        run_id = setup.create_run("sweep", CONFIG)

    def write(worker: int) -> None:
        with HistoryStore(db_path) as own:
            for i in range(40):
                own.add_row(run_id, {"worker": worker, "i": i})

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with HistoryStore(db_path) as check:
        assert [row.seq for row in check.get_run(run_id).rows] == list(range(1, 161))


def test_compare_lists_changed_flags_and_metric_deltas(store: HistoryStore) -> None:
    a = store.create_run(
        "probe", {"model": "embedded", "values": {"max_model_len": 2048, "dtype": "bfloat16"}}
    )
    b = store.create_run(
        "probe", {"model": "embedded", "values": {"max_model_len": 4096, "dtype": "bfloat16"}}
    )
    store.finish_run(a, {"p50_ms": 100.0, "ttft": {"p50": 50}, "model": "x", "zero": 0})
    store.finish_run(b, {"p50_ms": 150.0, "ttft": {"p50": 40}, "only_b": 1, "zero": 3})

    comparison = store.compare(a, b)

    assert (comparison.run_a, comparison.run_b) == (a, b)
    assert [(d.name, d.a, d.b) for d in comparison.flag_differences] == [("max_model_len", 2048, 4096)]
    deltas = {d.name: d for d in comparison.metric_deltas}
    assert set(deltas) == {"p50_ms", "ttft.p50", "zero"}
    assert (deltas["p50_ms"].delta, deltas["p50_ms"].ratio, deltas["p50_ms"].percent) == (50.0, 1.5, 50.0)
    assert deltas["ttft.p50"].percent == pytest.approx(-20.0)
    assert deltas["zero"].ratio is None and deltas["zero"].percent is None


def test_compare_hides_api_keys_but_still_shows_that_they_differ(store: HistoryStore) -> None:
    a = store.create_run("apply", {"api_key": "first-secret"})
    b = store.create_run("apply", {"api_key": "second-secret"})
    [difference] = store.compare(a, b).flag_differences
    assert (difference.name, difference.a, difference.b) == ("api_key", "***", "***")


def test_records_with_to_dict_are_stored_as_their_dict(store: HistoryStore) -> None:
    class Report:
        def to_dict(self) -> dict:
            return {"ready": True}

    run_id = store.create_run("startup", CONFIG)
    store.set_startup(run_id, Report())
    assert store.get_run(run_id).startup == {"ready": True}


def test_default_path_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEGO_FACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_path() == tmp_path / "home" / "history.sqlite3"
    monkeypatch.delenv("LEGO_FACTORY_HOME")
    assert default_path() == tmp_path / "xdg" / "lego-factory" / "history.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_path() == tmp_path / "user" / ".local" / "share" / "lego-factory" / "history.sqlite3"


def test_a_store_without_a_path_creates_its_file_in_the_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LEGO_FACTORY_HOME", str(tmp_path / "fresh" / "dir"))
    with HistoryStore() as opened:
        opened.create_run("probe", {})
    assert (tmp_path / "fresh" / "dir" / "history.sqlite3").is_file()
