"""The whole-table run on a real NVIDIA GPU: eager mode and prefix caching must come out as the H100
figures say (CUDA graphs many times faster per token; a repeated long prompt's first token faster with
prefix caching), each clear of the noise measured in the same run. Skipped without a GPU.

Real server starts: 6 (the A/A pair, and two per flag).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.engine import hardware
from dashboard.engine.config import default_config
from dashboard.engine.server import ServerManager
from dashboard.measure import table
from tests.gpu.results import save_result

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(hardware.gpu_count() == 0, reason="needs an NVIDIA GPU"),
    pytest.mark.timeout(1800),
]


def test_eager_mode_and_prefix_caching_are_clear_on_a_gpu(tmp_path: Path) -> None:
    base = default_config("cuda").with_values({"gpu_memory_utilization": 0.15, "port": 8760})
    plan = table.table_plan(base, "cuda", ["enable_prefix_caching", "enforce_eager"], orders=8, minutes=20)
    manager = ServerManager(tmp_path / "runs", backend="cuda")
    try:
        result = table.run_table(plan, manager)
    finally:
        manager.close()
    data = result.to_dict()
    save_result("table", data)
    rows = {row["flag"]: row for row in data["rows"]}
    assert result.starts == 6
    assert rows["enable_prefix_caching"]["effect"] == "faster", rows["enable_prefix_caching"]["verdict"]["en"]
    eager = rows["enforce_eager"]  # on -> off: CUDA graphs make each token faster
    assert eager["effect"] == "faster", eager["verdict"]["en"]
    assert eager["interval"][1] < 0.5
    assert eager["start_time_s"][0] and eager["start_time_s"][1]
