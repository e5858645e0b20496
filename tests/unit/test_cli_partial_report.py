"""A CLI run writes its --json report as it goes: a failure after the first row keeps that row, and the
report says whether the run is still going, was done, failed or was interrupted."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from dashboard.cli import bench as bench_cli
from dashboard.cli import build_parser
from dashboard.cli import sweep as sweep_cli
from dashboard.cli import table as table_cli
from dashboard.cli import tune as tune_cli
from dashboard.measure.loadgen import LoadResult, Summary
from dashboard.measure.sweep import SweepRow


class NoServers:
    """A server manager that starts nothing; `start` answers like a server that became ready."""

    base_url, served_name, api_key = "http://127.0.0.1:9", "smol", None

    def __init__(self, *args, **kwargs) -> None:
        pass

    def start(self, config, **kwargs):
        return SimpleNamespace(
            ok=True,
            ready_s=1.0,
            kv_cache_tokens=1000,
            max_concurrency=4.0,
            kv_cache_gib=0.1,
            weights_gib=0.2,
            command_text="vllm serve smol",
            error=None,
        )

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("LEGO_FACTORY_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def parse(*words: str):
    return build_parser("en").parse_args(list(words))


def on_disk(report: Path) -> dict:
    return json.loads(report.read_text(encoding="utf-8"))


def a_level(concurrency: int, e2e_ms: float) -> LoadResult:
    summary = Summary.of([e2e_ms])
    return LoadResult(
        mode="concurrency",
        concurrency=concurrency,
        rate=None,
        planned_requests=2,
        duration_limit_s=None,
        workload={},
        started_at=0.0,
        duration_s=1.0,
        sent=2,
        ok=2,
        errors=0,
        error_kinds={},
        ttft_ms=summary,
        itl_ms=summary,
        tpot_ms=summary,
        e2e_ms=summary,
        requests_per_s=2.0,
        output_tokens_per_s=20.0,
        mean_prompt_tokens=10.0,
        mean_output_tokens=10.0,
    )


# ---------------------------------------------------------------------------------------------- sweep


def test_a_sweep_that_fails_midway_keeps_the_rows_measured_so_far(tmp_path: Path, monkeypatch):
    report = tmp_path / "sweep.json"

    def failing_sweep(flag, values, base, workload, manager, on_progress, on_row, **kwargs):
        on_row(SweepRow(flag=flag, value=values[0], ok=True, e2e_p50_ms=123.0))
        data = on_disk(report)  # already on disk, and marked as still going
        assert data["status"] == "running"
        assert data["rows"][0]["e2e_p50_ms"] == 123.0
        raise OSError("No space left on device")

    monkeypatch.setattr(sweep_cli, "Carousel", NoServers)
    monkeypatch.setattr(sweep_cli, "run_sweep", failing_sweep)
    args = parse(
        "sweep", "--preset", "pika", "--flag", "max_num_seqs", "--values", "4,16", "--no-history",
        "--json", str(report),
    )  # fmt: skip
    with pytest.raises(OSError):
        sweep_cli.run(args)
    data = on_disk(report)
    assert data["status"] == "failed"
    assert [row["value"] for row in data["rows"]] == [4]


# ---------------------------------------------------------------------------------------------- bench


def bench_args(report: Path):
    return parse(
        "bench", "--preset", "pika", "--concurrency", "1,4", "--requests", "2", "--no-history",
        "--json", str(report),
    )  # fmt: skip


def test_a_bench_that_fails_after_its_first_level_keeps_that_level(tmp_path: Path, monkeypatch):
    report = tmp_path / "bench.json"

    def failing_levels(base_url, model, workload, levels, on_level, **kwargs):
        on_level(a_level(levels[0], 250.0))
        data = on_disk(report)
        assert data["status"] == "running"
        assert data["startup"]["kv_cache_tokens"] == 1000
        raise OSError("No space left on device")

    monkeypatch.setattr(bench_cli, "Carousel", NoServers)
    monkeypatch.setattr(bench_cli.loadgen, "run_levels", failing_levels)
    with pytest.raises(OSError):
        bench_cli.run(bench_args(report))
    data = on_disk(report)
    assert data["status"] == "failed"
    assert [level["concurrency"] for level in data["levels"]] == [1]
    assert data["levels"][0]["e2e_p50_ms"] == 250.0


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(143)], ids=["ctrl-c", "sigterm"])
def test_a_bench_stopped_with_ctrl_c_or_sigterm_says_it_was_interrupted(
    tmp_path: Path, monkeypatch, stop: BaseException
):
    report = tmp_path / "bench.json"

    def interrupted_levels(base_url, model, workload, levels, on_level, **kwargs):
        on_level(a_level(levels[0], 250.0))
        raise stop

    monkeypatch.setattr(bench_cli, "Carousel", NoServers)
    monkeypatch.setattr(bench_cli.loadgen, "run_levels", interrupted_levels)
    with pytest.raises(type(stop)):
        bench_cli.run(bench_args(report))
    data = on_disk(report)
    assert data["status"] == "interrupted"
    assert len(data["levels"]) == 1


def test_a_bench_that_ends_well_is_marked_done(tmp_path: Path, monkeypatch):
    report = tmp_path / "bench.json"

    def all_levels(base_url, model, workload, levels, on_level, **kwargs):
        for level in levels:
            on_level(a_level(level, 100.0 * level))

    monkeypatch.setattr(bench_cli, "Carousel", NoServers)
    monkeypatch.setattr(bench_cli.loadgen, "run_levels", all_levels)
    assert bench_cli.run(bench_args(report)) == 0
    data = on_disk(report)
    assert data["status"] == "done"
    assert [level["e2e_p50_ms"] for level in data["levels"]] == [100.0, 400.0]


# ---------------------------------------------------------------------------------------------- table


class FakeRow:
    def to_dict(self) -> dict:
        return {
            "flag": "max_num_seqs",
            "cli": "--max-num-seqs",
            "effect": "faster",
            "verdict": {"en": "clearly faster", "vi": "nhanh hơn rõ"},
        }


def test_a_table_that_fails_after_its_first_row_keeps_that_row(tmp_path: Path, monkeypatch):
    report = tmp_path / "table.json"

    def failing_table(plan, server, on_event=None, **kwargs):
        failed_start = SimpleNamespace(
            ok=False, error={"message": "no memory"}, to_dict=lambda: {"ok": False}
        )
        on_event(table_cli.table.TableEvent("aa", 0, "failed", measured=failed_start))
        on_event(table_cli.table.TableEvent("max_num_seqs", 1, "row", row=FakeRow()))
        data = on_disk(report)
        assert data["status"] == "running"
        assert data["measured"] == [{"step": "aa", "value": None, "ok": False}]
        raise OSError("No space left on device")

    monkeypatch.setattr(table_cli, "Carousel", NoServers)
    monkeypatch.setattr(table_cli.table, "run_table", failing_table)
    args = parse("table", "--flags", "max_num_seqs", "--no-history", "--json", str(report))
    with pytest.raises(OSError):
        table_cli.run(args)
    data = on_disk(report)
    assert data["status"] == "failed"
    assert [row["flag"] for row in data["rows"]] == ["max_num_seqs"]
    assert data["plan"]["flags"] == ["max_num_seqs"]


# ---------------------------------------------------------------------------------------------- tune


def tune_args(report: Path):
    return parse(
        "tune", "--preset", "pika", "--goal", "p50-e2e", "--minutes", "1", "--no-history",
        "--json", str(report),
    )  # fmt: skip


def a_trial(number: int) -> dict:
    return {"number": number, "changes": {"max_num_seqs": 4}, "figures": {}, "state": "measured"}


def test_a_tuning_that_fails_after_its_first_trial_keeps_that_trial(tmp_path: Path, monkeypatch):
    report = tmp_path / "tune.json"

    def failing_tune(question, base, workload, server, *, on_event=None, **kwargs):
        on_event("phase", {"phase": "search"})
        on_event("trial", a_trial(0))
        data = on_disk(report)
        assert data["status"] == "running"
        assert data["question"]["preset"] == "pika"
        raise OSError("database is locked")

    monkeypatch.setattr(tune_cli, "Carousel", NoServers)
    monkeypatch.setattr(tune_cli, "run_tune", failing_tune)
    with pytest.raises(OSError):
        tune_cli.run(tune_args(report))
    data = on_disk(report)
    assert data["status"] == "failed"
    assert [trial["number"] for trial in data["trials"]] == [0]


def test_a_tuning_stopped_early_is_reported_as_interrupted(tmp_path: Path, monkeypatch):
    report = tmp_path / "tune.json"

    def stopped_tune(question, base, workload, server, *, on_event=None, **kwargs):
        on_event("trial", a_trial(0))
        return {"stopped": True, "best": None, "trials": [a_trial(0)], "verdict": {"en": "-", "vi": "-"}}

    monkeypatch.setattr(tune_cli, "Carousel", NoServers)
    monkeypatch.setattr(tune_cli, "run_tune", stopped_tune)
    assert tune_cli.run(tune_args(report)) == 1
    data = on_disk(report)
    assert data["status"] == "interrupted"
    assert len(data["trials"]) == 1


def test_a_table_that_ends_is_marked_done(tmp_path: Path, monkeypatch):
    report = tmp_path / "table.json"

    def finished_table(plan, server, on_event=None, **kwargs):
        return table_cli.table.TableResult(plan=plan, started_at=0.0, duration_s=1.0)

    monkeypatch.setattr(table_cli, "Carousel", NoServers)
    monkeypatch.setattr(table_cli.table, "run_table", finished_table)
    args = parse("table", "--flags", "max_num_seqs", "--no-history", "--json", str(report))
    assert table_cli.run(args) == 0
    data = on_disk(report)
    assert data["status"] == "done"
    assert data["kind"] == "table" and data["rows"] == []
