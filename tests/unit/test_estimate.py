"""Sweep durations: a range from this machine's measured times, every restart counted, warm values cheap."""

from __future__ import annotations

from dashboard.engine.config import default_config
from dashboard.history.records import RowRecord, RunRecord
from dashboard.measure import estimate
from dashboard.measure.estimate import MachineTimes, estimate_sweep

BASE = default_config("cpu")
MEASURED = MachineTimes(eager_starts=(38.0, 41.5, 45.3, 40.0), answers=(0.3, 0.35, 0.4))


def run(run_id: int, kind: str, summary=None, rows=(), status="done", backend="cpu") -> RunRecord:
    return RunRecord(
        run_id,
        kind,
        "2026-12-02T06:00:00+00:00",
        status,
        BASE.to_dict(),
        backend=backend,
        summary=summary,
        rows=tuple(RowRecord(i, "", data) for i, data in enumerate(rows)),
    )


def test_the_restore_restart_is_counted():
    sweep = [("max_num_seqs", [4, 16, 64])]
    without = estimate_sweep(sweep, BASE, 8, 1, "cpu", MEASURED)
    with_restore = estimate_sweep(sweep, BASE, 8, 1, "cpu", MEASURED, restore=BASE)
    assert (without.starts, with_restore.starts) == (3, 4)
    assert with_restore.low_s - without.low_s >= 38.0


def test_the_range_spans_what_this_machine_measured():
    result = estimate_sweep([("max_num_seqs", [4, 16])], BASE, 8, 1, "cpu", MEASURED, restore=BASE)
    assert result.measured
    assert result.low_s < result.high_s
    # three starts between 38 s and 45.3 s, and 2 x 10 answers between 0.3 s and 0.4 s
    assert 3 * 38.0 + 20 * 0.3 <= result.low_s <= 3 * 41.5 + 20 * 0.35
    assert result.high_s == 3 * 45.3 + 20 * 0.4


def test_a_value_the_carousel_holds_warm_costs_a_flip_not_a_start():
    warm = {4}
    result = estimate_sweep(
        [("max_num_seqs", [4, 16])],
        BASE,
        8,
        1,
        "cpu",
        MEASURED,
        restore=BASE,
        is_warm=lambda config: config.get("max_num_seqs") in warm or config == BASE,
    )
    assert (result.starts, result.flips) == (1, 2)


def test_without_history_the_typical_figures_give_a_wide_range_marked_unmeasured():
    result = estimate_sweep([("max_num_seqs", [4, 16])], BASE, 8, 1, "cpu", MachineTimes())
    assert not result.measured
    assert result.high_s > 2 * result.low_s


def test_times_come_from_finished_starts_sweep_rows_and_playground_orders_of_this_backend():
    runs = [
        run(1, "startup", {"ready_s": 41.5}),
        run(2, "apply", {"ready_s": 45.3}),
        run(3, "sweep", {}, rows=[{"flag": "max_num_seqs", "value": 4, "ready_s": 39.0, "e2e_p50_ms": 320}]),
        run(4, "playground", {"e2e_ms": 350.0}),
        run(
            7,
            "sweep",
            {},
            rows=[{"flag": "max_num_seqs", "value": 8, "ready_s": 1.2, "server_start": {"kind": "reused"}}],
        ),
        run(5, "startup", {"ready_s": 99.0}, status="failed"),
        run(6, "startup", {"ready_s": 120.0}, backend="cuda"),
    ]
    times = estimate.times_from_history(runs, "cpu")
    assert sorted(times.eager_starts) == [39.0, 41.5, 45.3]
    assert sorted(times.answers) == [0.32, 0.35]
