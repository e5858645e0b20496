"""The impact page's background job against the real server: a refused value and a measured one, each
saved to the history as it is measured, with the latency budget of one request and the memory timeline
marked. One real start."""

from __future__ import annotations

import pytest

from dashboard.engine import presets
from dashboard.engine.config import default_config
from dashboard.engine.server import ServerManager
from dashboard.history.store import HistoryStore
from dashboard.measure.loadgen import LoadPlan, Workload
from dashboard.measure.memory import MemorySampler
from dashboard.ui import measure_jobs as jobs
from tests.integration.backend import BACKEND

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]

PORT = 8313


def test_the_job_keeps_a_refused_value_and_measures_the_next_one(tmp_path) -> None:
    manager = ServerManager(tmp_path / "runs", backend=BACKEND)
    store = HistoryStore(tmp_path / "history.sqlite3")
    sampler = MemorySampler(backend=BACKEND, interval_s=0.5)
    jobs.bind_sampler(sampler, manager)
    sampler.start()
    preset = presets.get("pika-json")
    request = jobs.JobRequest(
        sweeps=(("max_model_len", (100000, 1024)),),
        base=default_config(BACKEND).with_values({"port": PORT}),
        workload=Workload.from_request(preset.request, label=preset.name),
        plan=LoadPlan(concurrency=2, requests=3, timeout_s=300),
        backend=BACKEND,
        budget_payload=preset.request.payload("", stream=True),
        start_timeout=300,
    )
    job = jobs.SweepJob()
    try:
        assert job.start(request, manager, store, sampler) is None
        snapshot = job.wait(800)
        timeline = sampler.snapshot()
    finally:
        sampler.stop()
        manager.close()

    assert snapshot.status == "done" and snapshot.restore == "left"
    refused, measured = snapshot.flags[0].values
    assert refused.stage == "failed" and refused.row["error"]["code"] == "max_model_len_above_model"
    assert measured.stage == "done" and measured.row["e2e_p50_ms"] > 0
    segments = {s["key"]: s["ms"] for s in measured.budget["segments"]}
    assert {"prefill", "decode"} <= set(segments) and segments["decode"] > 0
    run = store.get_run(snapshot.flags[0].run_id)
    assert [row.data["value"] for row in run.rows] == [100000, 1024]
    assert run.rows[1].data["budget"] == measured.budget
    kinds = [mark.kind for mark in timeline.marks]
    assert {"restart", "ready", "load_start", "load_end"} <= set(kinds)
    assert timeline.peak_process_rss_bytes() > 0
    print(
        f"\nmax_model_len=1024: ready {measured.row['ready_s']:.1f} s, "
        f"e2e p50 {measured.row['e2e_p50_ms']:.0f} ms; "
        f"budget ({measured.budget['source']}): "
        + ", ".join(f"{key} {ms:.1f} ms" for key, ms in segments.items())
    )
