"""A CLI sweep writes its --json report as it goes: a failure after the first row keeps that row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboard.cli import build_parser
from dashboard.cli import sweep as sweep_cli
from dashboard.measure.sweep import SweepRow


class NoServers:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_sweep_that_fails_midway_keeps_the_rows_measured_so_far(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LEGO_FACTORY_HOME", str(tmp_path / "home"))
    report = tmp_path / "sweep.json"

    def failing_sweep(flag, values, base, workload, manager, on_progress, on_row, **kwargs):
        on_row(SweepRow(flag=flag, value=values[0], ok=True, e2e_p50_ms=123.0))
        assert json.loads(report.read_text())["rows"][0]["e2e_p50_ms"] == 123.0  # already on disk
        raise OSError("No space left on device")

    monkeypatch.setattr(sweep_cli, "Carousel", NoServers)
    monkeypatch.setattr(sweep_cli, "run_sweep", failing_sweep)
    args = build_parser("en").parse_args(
        [
            "sweep",
            "--preset",
            "pika",
            "--flag",
            "max_num_seqs",
            "--values",
            "4,16",
            "--no-history",
            "--json",
            str(report),
        ]
    )
    with pytest.raises(OSError):
        sweep_cli.run(args)
    data = json.loads(report.read_text())
    assert data["status"] == "failed"
    assert [row["value"] for row in data["rows"]] == [4]
