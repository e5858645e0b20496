"""The table runner with a stand-in server and load generator: the A/A pair starts twice (fresh), each
measured flag twice, settings that are not speed settings never; more orders are sent until the verdict
is settled; the start kind of each server is copied into its row."""

from __future__ import annotations

import math
import random

import pytest

from dashboard.engine.config import default_config
from dashboard.engine.report import StartupReport
from dashboard.measure import loadgen, table
from dashboard.measure.client import RequestTiming
from dashboard.measure.loadgen import Workload


class StandInServer:
    def __init__(self) -> None:
        self.starts: list[tuple[dict, bool]] = []
        self.config = None
        self.base_url, self.served_name, self.api_key = "http://unused", "m", None

    def restart(self, config, wait=True, timeout=600, fresh=False, on_phase=None) -> StartupReport:
        self.config = config
        self.starts.append((dict(config.values), fresh))
        return StartupReport(
            config=config.to_dict(),
            command=["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m"],
            started_at=0.0,
            backend="cpu",
            ready_s=30.0,
            server_start={"kind": "cold", "ready_s": 30.0},
        )

    def snapshot(self):
        return type("Snap", (), {"pid": None})()


@pytest.fixture
def server(monkeypatch) -> StandInServer:
    stand_in = StandInServer()
    rng = random.Random(7)
    sent: list[int] = []

    def run_load(base_url, model, workload, plan, api_key=None, stop=None, **_):
        caching = stand_in.config.get("enable_prefix_caching")
        ttft = 80.0 if caching and workload.label == "repeated_long_prompt" else 400.0
        sent.append(plan.requests)
        timings = []
        for _ in range(plan.requests):
            first = ttft * math.exp(rng.gauss(0, 0.05))
            timings.append(
                RequestTiming(
                    ok=True, error=None, text="x", ttft_ms=first, e2e_ms=first + 90, completion_tokens=4
                )
            )
        return loadgen.summarize(timings, plan, workload, 1.0, 0.0)

    monkeypatch.setattr(table.loadgen, "run_load", run_load)
    monkeypatch.setattr(Workload, "calibrated", lambda self, *a, **k: self)
    stand_in.sent = sent
    return stand_in


def test_a_table_run_starts_the_aa_pair_and_each_flag_twice_and_never_the_risky_settings(server) -> None:
    plan = table.table_plan(
        default_config("cpu"),
        "cpu",
        ["enable_prefix_caching", "trust_remote_code", "host"],
        orders=3,
        minutes=30,
    )
    events: list[table.TableEvent] = []
    result = table.run_table(plan, server, on_event=events.append)

    assert result.starts == 4 == len(server.starts)
    assert [fresh for _values, fresh in server.starts] == [True] * 4  # a carousel must really start again
    assert all(not values.get("trust_remote_code") for values, _ in server.starts)
    assert all(values.get("host") != "0.0.0.0" for values, _ in server.starts)
    rows = {row.flag: row.to_dict() for row in result.rows}
    assert rows["enable_prefix_caching"]["effect"] == "faster"
    assert rows["trust_remote_code"]["effect"] == rows["host"]["effect"] == "not_a_speed_setting"
    caching = rows["enable_prefix_caching"]
    assert caching["server_start"] == [{"kind": "cold", "ready_s": 30.0}] * 2
    assert caching["ratio"] == pytest.approx(0.2, rel=0.15)
    assert caching["n"] >= 3
    stages = [(e.step, e.stage) for e in events if e.stage in ("starting", "row")]
    assert stages[:2] == [(table.AA, "starting"), (table.AA, "starting")]
    assert ("enable_prefix_caching", "row") in stages and ("host", "row") in stages
    data = result.to_dict()
    assert data["noise"]["figures"] and data["command"].startswith("python -m vllm")


def test_orders_are_added_until_the_figures_are_steady(server) -> None:
    plan = table.table_plan(default_config("cpu"), "cpu", ["enable_prefix_caching"], orders=2, minutes=30)
    table.run_table(plan, server)
    assert len(server.sent) > 4  # more batches than one per start


def test_no_orders_are_added_when_the_time_is_spent(server) -> None:
    plan = table.table_plan(default_config("cpu"), "cpu", ["enable_prefix_caching"], orders=2, minutes=0.01)
    result = table.run_table(plan, server)
    assert server.sent == [2, 2, 2, 2]  # only the first batch of each start
    assert result.rows[0].comparison.n == 2
