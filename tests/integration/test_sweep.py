"""A real sweep: the server restarted once per value, the same workload measured each time."""

from __future__ import annotations

import json

import pytest

from dashboard.engine import presets
from dashboard.engine.config import default_config
from dashboard.engine.server import ServerManager
from dashboard.measure.loadgen import LoadPlan, Workload
from dashboard.measure.sweep import SweepRow, run_sweep
from tests.integration.backend import BACKEND, kv_tokens_hold

pytestmark = [
    pytest.mark.server,
    pytest.mark.timeout(900),
]

PORT = 8230


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    manager = ServerManager(tmp_path_factory.mktemp("sweep"), backend=BACKEND)
    yield manager
    manager.close()


@pytest.fixture(scope="module")
def base_config():
    return default_config(BACKEND).with_values({"port": PORT, "max_model_len": 2048})


def test_two_value_sweep_yields_two_measured_rows_delivered_one_by_one(manager, base_config):
    delivered: list[dict] = []
    progress: list[tuple[int, int, str]] = []
    workload = Workload.from_request(presets.get("pika-json").request)
    result = run_sweep(
        "max_num_seqs",
        [4, 16],
        base_config,
        workload,
        manager,
        on_progress=lambda i, n, stage: progress.append((i, n, stage)),
        on_row=lambda row: delivered.append(json.loads(json.dumps(row.to_dict()))),
        plan=LoadPlan(concurrency=1, requests=3),
        start_timeout=240,
    )
    assert [row["value"] for row in delivered] == [4, 16]
    for row in result.rows:
        assert row.ok and row.measured, row.error
        assert row.sent == 3 and row.request_errors == 0
        assert row.ready_s and row.ready_s > 1
        assert kv_tokens_hold(row.kv_cache_tokens, 2048)
        assert 0 < row.ttft_p50_ms < row.e2e_p50_ms
        assert row.requests_per_s > 0 and row.output_tokens_per_s > 0
        assert row.process_rss_bytes > 200 * 1024**2
        assert "--max-num-seqs" in row.command
    assert "--max-num-seqs 16" in result.rows[1].command
    assert progress[0] == (0, 2, "starting") and progress[-1] == (2, 2, "done")
    assert "--max-num-seqs" in result.verdict("en")
    json.dumps(result.to_dict())


def test_a_refused_value_becomes_a_row_with_the_error_and_the_sweep_goes_on(manager, base_config):
    rows: list[SweepRow] = []
    result = run_sweep(
        "max_model_len",
        [99_999],  # longer than SmolLM2 can read: refused before launching
        base_config,
        Workload.synthetic(8, 2),
        manager,
        on_row=rows.append,
        start_timeout=240,
    )
    assert len(rows) == 1 and result.rows == rows
    assert not rows[0].ok
    assert rows[0].error["code"] == "max_model_len_above_model"
    assert rows[0].error["suggestion"] == 8192
    assert result.verdict("en").startswith("Not enough values")
