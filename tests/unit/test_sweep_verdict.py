"""The sweep's one-sentence verdict, and its bookkeeping when a start fails (fake server manager)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from dashboard.engine.config import default_config
from dashboard.engine.problems import Problem
from dashboard.engine.report import StartupReport
from dashboard.measure.loadgen import Workload
from dashboard.measure.sweep import SweepRow, run_sweep, verdict, verdict_message


def _row(value, e2e: float | None, ok: bool = True) -> SweepRow:
    return SweepRow(flag="x", value=value, ok=ok, e2e_p50_ms=e2e)


def test_switch_slower_when_on():
    rows = [_row(False, 400.0), _row(True, 1000.0)]
    text = verdict(rows, "enforce_eager", "en")
    assert text == "Turning on --enforce-eager made each answer 2.5x slower here."


def test_switch_faster_when_on_whatever_the_order():
    rows = [_row(True, 250.0), _row(False, 1000.0)]
    message, params = verdict_message(rows, "enable_prefix_caching")
    assert message == "Turning on {flag} made each answer {ratio}x faster here."
    assert params["ratio"] == pytest.approx(4.0)


def test_small_change_is_no_clear_difference():
    rows = [_row(False, 1000.0), _row(True, 1050.0)]
    assert "no clear difference" in verdict(rows, "enable_prefix_caching", "en")


def test_numeric_values_compare_first_and_last():
    rows = [_row(4, 900.0), _row(16, 450.0)]
    assert verdict(rows, "max_num_seqs", "en") == (
        "Going from --max-num-seqs 4 to 16 made each answer 2.0x faster here."
    )


def test_failed_rows_are_left_out_and_one_measured_row_is_not_enough():
    rows = [_row(4, None, ok=False), _row(16, 450.0)]
    assert verdict(rows, "max_num_seqs", "en").startswith("Not enough values")


def test_vietnamese_uses_a_decimal_comma():
    rows = [_row(False, 400.0), _row(True, 1000.0)]
    assert "2,5" in verdict(rows, "enforce_eager", "vi")


class FakeManager:
    """Refuses every start with a problem; counts restarts."""

    def __init__(self) -> None:
        self.configs = []
        self.base_url, self.served_name, self.api_key = "http://unused", "m", None

    def restart(self, config, wait=True, timeout=600) -> StartupReport:
        self.configs.append(config)
        problem = Problem("kv_cache_too_small", "Too small.", "max_model_len", suggestion=2048)
        return StartupReport(
            config=config.to_dict(), command=["python"], started_at=0.0, backend="cpu", error=problem
        )

    def snapshot(self):
        return SimpleNamespace(pid=None)


def test_failed_starts_become_rows_and_the_sweep_continues():
    manager = FakeManager()
    rows: list[SweepRow] = []
    result = run_sweep(
        "max_model_len",
        [4096, 8192],
        default_config("cpu"),
        Workload.synthetic(4, 2),
        manager,
        on_row=rows.append,
    )
    assert [r.value for r in rows] == [4096, 8192]
    assert all(not r.ok and r.error["code"] == "kv_cache_too_small" for r in rows)
    assert [c.get("max_model_len") for c in manager.configs] == [4096, 8192]
    assert result.rows == rows


def test_a_value_the_flag_cannot_take_becomes_a_row_without_a_restart():
    manager = FakeManager()
    result = run_sweep("max_num_seqs", [-5], default_config("cpu"), Workload.synthetic(4, 2), manager)
    assert not result.rows[0].ok and manager.configs == []


def test_stop_event_ends_the_sweep_before_the_next_value():
    stop = threading.Event()
    stop.set()
    manager = FakeManager()
    result = run_sweep(
        "max_num_seqs", [4, 8], default_config("cpu"), Workload.synthetic(4, 2), manager, stop=stop
    )
    assert result.stopped and result.rows == [] and manager.configs == []


def test_unknown_flag_is_refused_before_any_restart():
    manager = FakeManager()
    with pytest.raises(KeyError):
        run_sweep("no_such_flag", [1], default_config("cpu"), Workload.synthetic(4, 2), manager)
    assert manager.configs == []


def _spread_row(value, p50: float, p90: float) -> SweepRow:
    return SweepRow(flag="x", value=value, ok=True, e2e_p50_ms=p50, load={"e2e_ms": {"p50": p50, "p90": p90}})


def test_a_gap_inside_the_spread_of_the_measurements_is_not_called_an_effect():
    rows = [_spread_row(4, 1000.0, 2500.0), _spread_row(16, 2000.0, 2600.0)]
    text = verdict(rows, "max_num_seqs", "en")
    assert "changed nothing clear" in text and "slower" not in text


def test_a_gap_beyond_the_spread_is_still_reported():
    rows = [_spread_row(False, 60.0, 70.0), _spread_row(True, 360.0, 400.0)]
    assert (
        verdict(rows, "enforce_eager", "en")
        == "Turning on --enforce-eager made each answer 6.0x slower here."
    )
