"""The memory, impact and history pages, run by AppTest with the real history store in a temporary
LEGO_FACTORY_HOME. The server is a stand-in (these tests are about the pages); the memory sampler is the
real one, on the CPU or on a fake NVML with two GPUs."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import streamlit as st

from dashboard.engine import models
from dashboard.engine.config import default_config
from dashboard.engine.problems import Problem
from dashboard.history.store import HistoryStore
from dashboard.measure.compare import BeforeAfter, Probe, Side
from dashboard.measure.memory import Mark, MemorySampler
from dashboard.ui import measure_jobs, state
from tests.app.conftest import StandInManager, open_app, ready_snapshot, texts
from tests.unit.test_measure_charts import TwoGpuNvml
from tests.unit.test_measure_jobs import RefusingManager, request

MEMORY, IMPACT, HISTORY = "app_pages/memory.py", "app_pages/impact.py", "app_pages/history.py"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder (the built-in model linked in, so nothing is converted again)."""
    models_dir = models.embedded_dir().parent
    monkeypatch.setenv("LEGO_FACTORY_HOME", str(tmp_path))
    if models_dir.exists():
        (tmp_path / "models").symlink_to(models_dir)
    st.cache_resource.clear()
    yield tmp_path
    st.cache_resource.clear()


@pytest.fixture
def stand_in(home: Path, monkeypatch: pytest.MonkeyPatch) -> StandInManager:
    manager = StandInManager()
    monkeypatch.setattr(state, "get_manager", lambda: manager)
    return manager


@pytest.fixture
def cpu_sampler(monkeypatch: pytest.MonkeyPatch) -> MemorySampler:
    sampler = MemorySampler(root_pid=os.getpid(), backend="cpu")
    for _ in range(3):
        sampler.sample_once()
    monkeypatch.setattr(state, "get_sampler", lambda: sampler)
    return sampler


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch) -> measure_jobs.SweepJob:
    fresh = measure_jobs.SweepJob()
    monkeypatch.setattr(measure_jobs, "get_job", lambda: fresh)
    return fresh


def charts_of(at) -> list[dict]:
    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")]


def chart_titled(at, title: str) -> dict:
    for chart in charts_of(at):
        if chart["layout"].get("title", {}).get("text") == title:
            return chart
    raise AssertionError(f"no chart titled {title!r}")


def store(home: Path) -> HistoryStore:
    return HistoryStore(home / "history.sqlite3")


# ---------------------------------------------------------------------------------------------- memory


def test_memory_page_on_cpu_says_ram_of_the_vllm_processes_and_draws_the_live_chart(
    stand_in, cpu_sampler
) -> None:
    cpu_sampler.mark("restart", "--max-num-seqs 16")
    at = open_app("en", MEMORY)
    assert at.title[0].value == "Warehouse & memory, live"
    assert "RAM of the vLLM processes" in [m.label for m in at.metric]
    live = chart_titled(at, "Memory and work, live")
    names = [trace.get("name") for trace in live["data"]]
    assert "RAM of the vLLM processes" in names and "KV cache used (%)" in names
    assert any("Restart" in a["text"] for a in live["layout"]["annotations"] if "text" in a)
    assert "Start the factory to compare" in texts(at)


def test_memory_page_draws_one_line_and_one_bar_per_gpu_on_a_two_gpu_machine(
    stand_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampler = MemorySampler(root_pid=os.getpid(), nvml=TwoGpuNvml(os.getpid()))
    sampler.sample_once()
    monkeypatch.setattr(state, "get_sampler", lambda: sampler)
    at = open_app("en", MEMORY)
    assert not at.exception
    assert "GPU memory held by vLLM" in [m.label for m in at.metric]
    live = chart_titled(at, "Memory and work, live")
    used = [t["name"] for t in live["data"] if t.get("name", "").endswith(": used")]
    assert used == ["GPU 0: used", "GPU 1: used"]
    bars = chart_titled(at, "Each GPU now")
    assert len(bars["data"][0]["y"]) == 2


def test_memory_page_compares_predicted_and_measured_for_the_running_server(stand_in, cpu_sampler) -> None:
    stand_in.snap = ready_snapshot(default_config("cpu"))
    at = open_app("en", MEMORY)
    labels = [m.label for m in at.metric]
    assert {"Predicted", "Measured", "Gap (measured minus predicted)"} <= set(labels)
    assert any(h.value.endswith("Where the memory goes") for h in at.subheader)
    weights_name = "Model bricks (weights)"
    breakdown = next(c for c in charts_of(at) if any(t.get("name") == weights_name for t in c["data"]))
    assert not breakdown["layout"].get("title", {}).get("text"), "the heading above the chart says it once"
    assert all(t.get("texttemplate") == "%{y:.2f}" for t in breakdown["data"])  # 0,25 in Vietnamese
    weights = next(t for t in breakdown["data"] if t["name"] == "Model bricks (weights)")
    assert weights["y"][1] == pytest.approx(0.25)  # the startup report's figure
    assert weights["y"][0] == pytest.approx(0.25, abs=0.02)  # the prediction from the model's shape


def test_memory_page_speaks_the_chosen_language(stand_in, cpu_sampler) -> None:
    english = open_app("en", MEMORY)
    vietnamese = open_app("vi", MEMORY)
    assert not vietnamese.exception
    assert vietnamese.title[0].value != english.title[0].value
    assert [m.label for m in vietnamese.metric] != [m.label for m in english.metric]


# ---------------------------------------------------------------------------------------------- impact


def test_impact_page_offers_a_flag_its_values_a_workload_and_a_measure_button(
    stand_in, cpu_sampler, job
) -> None:
    at = open_app("en", IMPACT)
    assert at.title[0].value == "What does each flag do to response time?"
    assert at.selectbox(key="impact.flag").value == "max_num_seqs"
    assert at.text_input(key="impact.values.max_num_seqs").value == "4, 16, 64"
    assert at.number_input(key="impact.requests").value == 8
    assert at.number_input(key="impact.concurrency").value == 2
    assert not at.button(key="impact.run.one").disabled
    at.selectbox(key="impact.flag").set_value("enable_prefix_caching").run()
    assert at.text_input(key="impact.values.enable_prefix_caching").value == "off, on"


def test_a_bad_value_is_explained_and_blocks_the_measurement(stand_in, cpu_sampler, job) -> None:
    at = open_app("en", IMPACT)
    at.text_input(key="impact.values.max_num_seqs").set_value("4, lots").run()
    assert "does not fit this flag" in texts(at)
    assert at.button(key="impact.run.one").disabled


def test_while_a_measurement_runs_its_progress_shows_and_no_second_one_can_start(
    stand_in, cpu_sampler, job
) -> None:
    gate = threading.Event()
    job.start(request(values=(4, 16)), RefusingManager(gate))
    try:
        at = open_app("en", IMPACT)
        page = texts(at)
        assert "Measuring now" in page
        assert "A measurement is running" in page
        assert at.button(key="impact.run.one").disabled
        assert len(at.get("progress")) == 1
    finally:
        gate.set()
        job.wait(30)


def test_a_stored_sweep_shows_its_verdict_chart_and_table(stand_in, cpu_sampler, job, home) -> None:
    history = store(home)
    run_id = history.create_run(
        "sweep", {"model": "embedded", "values": {}, "sweep": {"flag": "max_num_seqs"}}
    )
    for value, e2e in ((4, 700.0), (16, 650.0)):
        history.add_row(run_id, {"flag": "max_num_seqs", "value": value, "ok": True, "ttft_p50_ms": 95.0,
                                 "itl_p50_ms": 30.0, "e2e_p50_ms": e2e, "output_tokens_per_s": 25.0,
                                 "ready_s": 35.0, "process_rss_bytes": 3 * 1024**3})  # fmt: skip
    history.finish_run(
        run_id, {"flag": "max_num_seqs", "verdict_en": "No clear difference.", "verdict_vi": "x"}
    )
    at = open_app("en", IMPACT)
    assert "No clear difference." in [s.value for s in at.success]
    chart = chart_titled(at, "What changed when the value changed · --max-num-seqs")
    assert all(len(trace["x"]) == 2 for trace in chart["data"])


def test_a_refused_value_of_a_stored_sweep_is_said_in_a_whole_sentence_under_the_table(
    stand_in, cpu_sampler, job, home
) -> None:
    history = store(home)
    run_id = history.create_run(
        "sweep", {"model": "embedded", "values": {}, "sweep": {"flag": "max_model_len"}}
    )
    history.add_row(run_id, {"flag": "max_model_len", "value": 1024, "ok": True, "ttft_p50_ms": 95.0,
                             "itl_p50_ms": 30.0, "e2e_p50_ms": 700.0, "output_tokens_per_s": 25.0,
                             "ready_s": 5.0, "process_rss_bytes": 3 * 1024**3})  # fmt: skip
    refused = Problem(
        "max_model_len_above_model",
        "--max-model-len {value} is longer than this model can read ({limit} tokens).",
        "max_model_len",
        {"value": 99999, "limit": 8192},
        suggestion=8192,
    )
    history.add_row(
        run_id, {"flag": "max_model_len", "value": 99999, "ok": False, "error": refused.to_dict()}
    )
    history.finish_run(run_id, {"flag": "max_model_len", "verdict_en": "Not enough.", "verdict_vi": "x"})
    at = open_app("vi", IMPACT)
    at.selectbox(key="impact.flag").set_value("max_model_len").run()
    table = at.dataframe[0].value
    assert "Vấn đề" not in table.columns and len(table.columns) == 7  # nothing to cut at 1366 px
    warnings = [w.value for w in at.warning if "99999" in w.value or "99.999" in w.value]
    assert len(warnings) == 1 and "8.192" in warnings[0], [w.value for w in at.warning]


def test_the_whole_table_has_the_briefs_columns_and_marks_gpu_only_flags(stand_in, cpu_sampler, job) -> None:
    at = open_app("en", IMPACT)
    at.segmented_control(key="impact.mode").set_value("table").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.columns) == [
        "Flag",
        "Factory analogy",
        "Figure",
        "Values",
        "Ratio (interval)",
        "Orders",
        "Effect",
        "How does it affect response time?",
        "Start time",
        "Memory",
    ]
    rows = dict(zip(table["Flag"], table["How does it affect response time?"], strict=True))
    assert rows["--gpu-memory-utilization"].startswith("Only matters on an NVIDIA GPU")
    assert rows["--max-num-seqs"] == "Not measured yet."
    assert "Fill the whole table" in [b.label for b in at.button]
    assert rows["--trust-remote-code"].startswith("Not a speed setting")
    assert rows["--host"].startswith("Not a speed setting")


def test_the_filled_table_shows_ratio_interval_orders_and_verdict(stand_in, cpu_sampler, job, home) -> None:
    history = store(home)
    run_id = history.create_run("table", {"model": "embedded", "values": {}}, label="table", backend="cpu")
    history.add_row(
        run_id,
        {
            "flag": "enable_prefix_caching",
            "cli": "--enable-prefix-caching",
            "metric": "ttft_ms",
            "values": [False, True],
            "effect": "faster",
            "ratio": 0.25,
            "interval": [0.2, 0.3],
            "n": 6,
            "verdict": {"en": "Faster: the first token.", "vi": "Nhanh hơn."},
            "start_time_s": [30.0, 32.0],
            "memory_gib": [3.0, 3.1],
        },
    )
    history.finish_run(
        run_id, {"vllm_version": "0.32.0", "started_at": 1796188772.6, "machine": {"cpu_cores": 2}}
    )
    at = open_app("en", IMPACT)
    at.segmented_control(key="impact.mode").set_value("table").run()
    assert not at.exception
    table = at.dataframe[0].value
    row = table[table["Flag"] == "--enable-prefix-caching"].iloc[0]
    assert row["Ratio (interval)"] == "0.25 (0.20–0.30)" and row["Orders"] == "6"
    assert (
        row["Effect"] == "faster" and row["How does it affect response time?"] == "Faster: the first token."
    )
    assert row["Start time"] == "30 → 32 s"
    assert "Handout (Markdown)" in [b.label for b in at.get("download_button")]


def test_impact_page_speaks_the_chosen_language(stand_in, cpu_sampler, job) -> None:
    english = open_app("en", IMPACT)
    vietnamese = open_app("vi", IMPACT)
    assert not vietnamese.exception
    assert vietnamese.title[0].value != english.title[0].value
    assert vietnamese.button(key="impact.run.one").label != english.button(key="impact.run.one").label


# ---------------------------------------------------------------------------------------------- history


def seed_history(home: Path) -> None:
    history = store(home)
    base = default_config("cpu")
    first = history.create_run("apply", base.to_dict(), label="first")
    history.finish_run(first, {"ready_s": 36.0, "kv_cache_tokens": 46592, "max_concurrency": 22.75})
    lanes = base.with_values({"max_num_seqs": 16})
    second = history.create_run("apply", {**lanes.to_dict(), "before": base.to_dict()}, label="second")
    key = Probe().key
    pair = BeforeAfter(
        Probe(),
        Side(key, (300.0, 310.0, 305.0)),
        Side(key, (306.0, 301.0, 309.0)),
        base.to_dict(),
        lanes.to_dict(),
    )
    history.finish_run(
        second,
        {"ready_s": 33.5, "kv_cache_tokens": 46592, "max_concurrency": 22.75, "comparison": pair.to_dict()},
    )
    load = history.create_run("load", base.to_dict(), label="bench")
    history.add_row(load, {"concurrency": 1, "ttft_p50_ms": 95.0, "e2e_p50_ms": 650.0})
    history.finish_run(load, {"levels": [{"concurrency": 1, "ttft_p50_ms": 95.0, "e2e_p50_ms": 650.0}]})
    history.close()


def test_history_page_is_friendly_when_nothing_was_kept_yet(stand_in, cpu_sampler) -> None:
    at = open_app("en", HISTORY)
    assert "Nothing yet" in texts(at)


def test_history_lists_runs_and_shows_the_last_apply_before_and_after(stand_in, cpu_sampler, home) -> None:
    seed_history(home)
    at = open_app("en", HISTORY)
    table = at.dataframe[0].value
    assert list(table["Label"])[:3] == ["bench", "second", "first"]
    assert list(table["Kind"])[:3] == ["load test", "apply settings", "apply settings"]
    page = texts(at)
    assert "`--max-num-seqs`: 128 → **16**" in page
    assert "No clear change" in page  # 305 ms and 306 ms: inside the spread, never painted worse
    assert [m.value for m in at.metric if m.label in ("Before", "After")] == ["305 ms", "306 ms"]
    assert "The new settings were ready after 33.5 s." in page
    assert [d.label for d in at.get("download_button")] == [
        "Command",
        "JSON",
        "CSV",
        "Report (Vietnamese + English)",
    ]


def test_history_compares_two_runs_flag_by_flag(stand_in, cpu_sampler, home) -> None:
    seed_history(home)
    at = open_app("en", HISTORY)
    at.selectbox(key="history.a").set_value(1).run()
    at.selectbox(key="history.b").set_value(2).run()
    differing = at.dataframe[1].value
    assert list(differing["Flag"]) == ["--max-num-seqs"]
    numbers = at.dataframe[2].value
    assert "Ready after (s)" in list(numbers["Number"])  # labelled, never the raw key ready_s
    assert "worse" not in list(numbers["Verdict"])  # 36.0 s -> 33.5 s is inside a start's noise
    figures = dict(zip(numbers["Number"], numbers["A"], strict=True))
    assert figures["Warehouse tokens"] == "46,592"  # a count, never 46,592.00
    assert figures["Ready after (s)"] == "36"  # whole: no decimals


def test_history_dates_and_numbers_follow_the_language(stand_in, cpu_sampler, home) -> None:
    seed_history(home)
    english = open_app("en", HISTORY)
    vietnamese = open_app("vi", HISTORY)
    assert not vietnamese.exception
    en_when = list(english.dataframe[0].value.iloc[:, 2])
    vi_when = list(vietnamese.dataframe[0].value.iloc[:, 2])
    assert en_when != vi_when
    assert "33,5" in texts(vietnamese) and "33.5" not in texts(vietnamese)


def test_an_interrupted_run_is_listed_as_interrupted(stand_in, cpu_sampler, home) -> None:
    history = store(home)
    run_id = history.create_run("sweep", {"model": "embedded", "values": {}}, label="cut short")
    history._db.execute("UPDATE runs SET owner_pid = 999999999 WHERE id = ?", (run_id,))
    history.close()
    at = open_app("en", HISTORY)
    table = at.dataframe[0].value
    assert list(table.loc[table["Label"] == "cut short", "Status"]) == ["interrupted"]
    assert "1 run was interrupted" in texts(at)
    _ = Mark  # marks are exercised on the memory page
