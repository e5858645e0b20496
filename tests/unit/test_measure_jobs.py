"""The impact page's job: what it tries, one measurement at a time, every row kept the moment it exists.

The server here is a stand-in that refuses every start (so no vLLM runs); the real path is covered by
tests/integration/test_sweep_job_real.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from dashboard.engine.config import ServerConfig, default_config
from dashboard.engine.problems import Problem
from dashboard.engine.report import ServerSnapshot, refused_report
from dashboard.history.store import HistoryStore
from dashboard.measure.loadgen import LoadPlan, Workload
from dashboard.measure.memory import MemorySampler
from dashboard.ui import measure_jobs as jobs


class RefusingManager:
    """Every restart is refused at once, like a config the server would not accept; `gate` can hold it."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.restarts: list[ServerConfig] = []

    def restart(self, config, wait=True, timeout=600, on_phase=None):
        if self.gate is not None:
            self.gate.wait(10)
        self.restarts.append(config)
        return refused_report(
            config, Problem("port_busy", "Port {port} is taken.", "port", {"port": 1}), "cpu", 0
        )

    def is_busy(self) -> bool:
        return False

    def snapshot(self) -> ServerSnapshot:
        return ServerSnapshot(status="stopped")

    base_url = ""
    served_name = ""
    api_key = None


def request(values=(4, 16), restore: ServerConfig | None = None) -> jobs.JobRequest:
    return jobs.JobRequest(
        sweeps=(("max_num_seqs", tuple(values)),),
        base=default_config("cpu"),
        workload=Workload.synthetic(16, 4),
        plan=LoadPlan(concurrency=1, requests=2),
        restore_config=restore,
        backend="cpu",
    )


def test_values_typed_by_the_learner_become_the_flags_types() -> None:
    assert jobs.parse_values("enable_prefix_caching", "on, off") == [True, False]
    assert jobs.parse_values("max_num_seqs", "4,16, 64") == [4, 16, 64]
    assert jobs.parse_values("kv_cache_memory_gib", "0.5; 2") == [0.5, 2.0]
    with pytest.raises(ValueError, match="max-num-seqs"):
        jobs.parse_values("max_num_seqs", "4, many")


def test_default_values_follow_the_brief_and_the_backend() -> None:
    assert jobs.default_values("max_num_seqs", "cpu") == [4, 16, 64]
    assert jobs.default_values("max_model_len", "cuda") == [512, 1024, 2048]
    assert jobs.default_values("enforce_eager", "cpu") == [True, False]
    assert jobs.default_values("gpu_memory_utilization", "cpu") == []
    cpu = jobs.sweepable_flags("cpu")
    assert "gpu_memory_utilization" not in cpu and "port" not in cpu and "max_num_seqs" in cpu
    assert "gpu_memory_utilization" in jobs.sweepable_flags("cuda")


def test_the_whole_table_sizes_the_warehouse_in_gib_on_cpu_and_by_share_on_gpu() -> None:
    cpu = dict(jobs.table_plan("cpu"))
    cuda = dict(jobs.table_plan("cuda"))
    assert "kv_cache_memory_gib" in cpu and "gpu_memory_utilization" not in cpu
    assert "gpu_memory_utilization" in cuda and "kv_cache_dtype" in cuda and "kv_cache_dtype" not in cpu
    not_speed = {"host", "trust_remote_code"}  # measured at their safe value only
    assert all(len(values) >= 2 for name, values in cpu.items() if name not in not_speed)
    assert cpu["host"] == ["127.0.0.1"] and cpu["trust_remote_code"] == [False]


def test_a_chart_row_takes_memory_from_the_gpus_when_there_are_some() -> None:
    row = {"value": 4, "e2e_p50_ms": 700.0, "process_rss_bytes": 3 * 1024**3, "gpu_used_bytes": []}
    assert jobs.chart_row(row, "4")["memory_gib"] == pytest.approx(3.0)
    row["gpu_used_bytes"] = [1024**3, 1024**3]
    assert jobs.chart_row(row, "4")["memory_gib"] == pytest.approx(2.0)


def test_the_estimate_adds_a_compile_step_when_eager_mode_is_off() -> None:
    base = default_config("cpu")
    eager = jobs.estimate_seconds([("max_num_seqs", [4, 16])], base, 8, 2, "cpu")
    compiled = jobs.estimate_seconds([("enforce_eager", [True, False])], base, 8, 2, "cpu")
    assert compiled - eager == pytest.approx(jobs.COMPILE_S["cpu"])


def test_each_value_is_saved_as_a_row_even_when_its_start_fails(tmp_path) -> None:
    store = HistoryStore(tmp_path / "history.sqlite3")
    sampler = MemorySampler(backend="cpu")
    job = jobs.SweepJob()
    assert job.start(request(), RefusingManager(), store, sampler) is None
    snapshot = job.wait(30)

    assert snapshot.status == "done"
    assert snapshot.finished_values == snapshot.total_values == 2
    assert [v.stage for v in snapshot.flags[0].values] == ["failed", "failed"]
    run = store.get_run(snapshot.flags[0].run_id)
    assert run.kind == "sweep" and run.status == "failed"
    assert [row.data["value"] for row in run.rows] == [4, 16]
    assert run.summary["flag"] == "max_num_seqs"
    assert "Not enough values" in run.summary["verdict_en"]
    assert run.summary["verdict_message"].startswith("Not enough values of {flag}")
    assert [m.kind for m in sampler.snapshot().marks].count("restart") == 2
    assert snapshot.restore == "left"


def test_a_second_measurement_is_refused_while_one_runs() -> None:
    gate = threading.Event()
    job = jobs.SweepJob()
    assert job.start(request(), RefusingManager(gate)) is None
    refusal = job.start(request(), RefusingManager())
    gate.set()
    assert refusal is not None and "already running" in refusal
    assert job.wait(30).status == "done"
    assert job.start(request(), RefusingManager()) is None  # free again once it ended
    job.wait(30)


def test_stop_ends_the_job_before_the_next_value_and_keeps_what_was_measured() -> None:
    gate = threading.Event()
    manager = RefusingManager(gate)
    job = jobs.SweepJob()
    job.start(request(values=(4, 16, 64)), manager)
    time.sleep(0.2)
    job.stop()
    gate.set()
    snapshot = job.wait(30)
    assert snapshot.status == "stopped"
    assert len(manager.restarts) == 1
    assert [v.stage for v in snapshot.flags[0].values] == ["failed", "waiting", "waiting"]


def test_the_server_is_put_back_as_it_was_when_asked() -> None:
    manager = RefusingManager()
    before = default_config("cpu").with_values({"max_num_seqs": 128})
    job = jobs.SweepJob()
    job.start(request(restore=before), manager)
    snapshot = job.wait(30)
    assert manager.restarts[-1] == before
    assert snapshot.restore == "restore_failed"  # the stand-in refuses every start, the real one would not


def test_the_whole_table_runs_one_sweep_per_flag_each_kept_as_its_own_run(tmp_path) -> None:
    store = HistoryStore(tmp_path / "history.sqlite3")
    table = jobs.JobRequest(
        sweeps=(("max_num_seqs", (4, 64)), ("host", ("127.0.0.1",))),
        base=default_config("cpu"),
        workload=Workload.synthetic(16, 4),
        plan=LoadPlan(concurrency=1, requests=2),
        mode="table",
        backend="cpu",
    )
    manager = RefusingManager()
    job = jobs.SweepJob()
    job.start(table, manager, store)
    snapshot = job.wait(30)
    assert [state.flag for state in snapshot.flags] == ["max_num_seqs", "host"]
    assert snapshot.finished_values == 3
    runs = store.list_runs(kind="sweep")
    assert sorted(run.summary["flag"] for run in runs) == ["host", "max_num_seqs"]
    assert all(config.get("host") != "0.0.0.0" for config in manager.restarts)  # loopback only
