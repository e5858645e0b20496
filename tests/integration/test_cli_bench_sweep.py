"""`python -m dashboard sweep` and `bench` against the real CPU server: rows measured, kept in the history
the moment they exist, written to JSON, and drawn by the impact page's chart builder.

Three real starts in all (two for the sweep, one for the bench); the refused config starts nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.engine import models
from dashboard.history.store import HistoryStore
from dashboard.ui import measure_charts
from dashboard.ui.measure_jobs import chart_row

pytestmark = [pytest.mark.server, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
SWEEP_PORT, BENCH_PORT = 8311, 8312
CLI_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("home")
    shared_models = models.embedded_dir().parent
    if shared_models.exists():
        (folder / "models").symlink_to(shared_models)
    return folder


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEGO_FACTORY_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "dashboard", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def sweep(home: Path) -> tuple[subprocess.CompletedProcess, dict]:
    out = home / "sweep.json"
    done = cli(
        home,
        "sweep", "--lang", "vi", "--preset", "pika-json", "--flag", "max_num_seqs", "--values", "4,16",
        "--no-noise-pair", "--requests", "3", "--concurrency", "2", "--set", f"port={SWEEP_PORT}",
        "--set", "max_model_len=1024", "--json", str(out),
    )  # fmt: skip
    print(done.stdout[-3000:], done.stderr[-3000:])
    return done, json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}


def test_a_two_value_sweep_measures_two_rows_and_says_what_changed(sweep) -> None:
    done, report = sweep
    assert done.returncode == 0, done.stderr[-2000:]
    rows = report["rows"]
    assert [row["value"] for row in rows] == [4, 16]
    assert all(row["ok"] and row["e2e_p50_ms"] > 0 and row["ready_s"] > 0 for row in rows)
    assert all(row["sent"] == 3 and row["request_errors"] == 0 for row in rows)
    assert report["verdict_vi"] in done.stdout  # --lang vi: the verdict is printed in Vietnamese
    for row in rows:
        print(
            f"max_num_seqs={row['value']}: ready {row['ready_s']:.1f} s, "
            f"TTFT p50 {row['ttft_p50_ms']:.0f} ms, "
            f"ITL p50 {row['itl_p50_ms']:.1f} ms, e2e p50 {row['e2e_p50_ms']:.0f} ms, "
            f"{row['output_tokens_per_s']:.1f} tok/s, RSS {row['process_rss_bytes'] / 1024**3:.2f} GiB"
        )


def test_each_sweep_row_is_in_the_history_and_the_chart_has_two_points_per_metric(sweep, home) -> None:
    _done, report = sweep
    with HistoryStore(home / "history.sqlite3") as store:
        run = store.get_run(report["history_run_id"])
    assert run.kind == "sweep" and run.status == "done"
    assert [row.data["value"] for row in run.rows] == [4, 16]
    assert run.summary["verdict_en"] == report["verdict_en"]
    figure = measure_charts.sweep_figure([chart_row(r.data, str(r.data["value"])) for r in run.rows], "x")
    assert (
        measure_charts.sweep_points(figure) == {name: 2 for name in measure_charts.sweep_points(figure)}
        and len(figure.data) == 6
    )


def test_bench_measures_each_concurrency_level_with_its_percentiles(home) -> None:
    out = home / "bench.json"
    done = cli(
        home,
        "bench", "--lang", "en", "--preset", "pika-json", "--concurrency", "1,2", "--requests", "2",
        "--set", f"port={BENCH_PORT}", "--set", "max_model_len=1024", "--json", str(out),
    )  # fmt: skip
    print(done.stdout[-3000:], done.stderr[-2000:])
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    levels = report["levels"]
    assert [level["concurrency"] for level in levels] == [1, 2]
    for level in levels:
        assert level["ok"] == 2 and level["errors"] == 0
        assert level["ttft_p50_ms"] <= level["ttft_p90_ms"] <= level["ttft_p99_ms"]
        assert level["e2e_p50_ms"] <= level["e2e_p99_ms"]
        assert level["requests_per_s"] > 0 and level["output_tokens_per_s"] > 0
    assert "2 at once: first token" in done.stdout
    with HistoryStore(home / "history.sqlite3") as store:
        run = store.get_run(report["history_run_id"])
    assert run.kind == "load" and run.status == "done" and len(run.rows) == 2
    assert run.startup["ready_s"] == report["startup"]["ready_s"] > 0


def test_a_config_the_server_refuses_fails_with_a_reason_and_a_non_zero_exit(home) -> None:
    done = cli(home, "bench", "--lang", "en", "--preset", "classroom", "--set", "max_model_len=100000",
               "--set", f"port={BENCH_PORT}", "--requests", "1")  # fmt: skip
    assert done.returncode == 1
    assert "--max-model-len" in done.stderr
    with HistoryStore(home / "history.sqlite3") as store:
        assert store.list_runs(kind="load")[0].status == "failed"


def test_an_unknown_flag_is_refused_before_anything_starts(home) -> None:
    done = cli(home, "sweep", "--preset", "pika", "--flag", "warp_speed", "--values", "1,2", "--lang", "en")
    assert done.returncode == 2
    assert "Unknown flag: warp_speed" in done.stderr
