# ruff: noqa: F811  (the fixtures are imported from the measure pages test)
"""Vietnamese all the way: no English error and no raw key (ready_s, kv_cache_tokens...) reaches a
Vietnamese page, even with English failures from vLLM in the history and on the server."""

from __future__ import annotations

import re
from dataclasses import replace

from dashboard.engine.config import default_config
from dashboard.engine.problems import Problem
from dashboard.engine.startup_log import classify_failure
from dashboard.measure import request_errors
from dashboard.measure.compare import BeforeAfter, Probe, Side
from tests.app.conftest import open_app, ready_snapshot, texts
from tests.app.test_measure_pages import HISTORY, IMPACT, MEMORY, cpu_sampler, home, stand_in, store  # noqa: F401

FACTORY, PLAYGROUND = "app_pages/factory.py", "app_pages/playground.py"
RAW_KEYS = re.compile(r"\b(ready_s|kv_cache_tokens|max_concurrency|e2e_p50_ms|ttft_p50_ms|e2e_ms|ttft_ms)\b")
VLLM_WORDS = (
    "OSError: We couldn't connect to 'https://huggingface.co' to load the files",
    "This model's maximum context length is 2048 tokens",
)
ENGLISH = ("couldn't connect", "maximum context length", "The request failed", "OSError", "Before and after")


def seed(home) -> None:
    history = store(home)
    base = default_config("cpu")
    lanes = base.with_values({"max_num_seqs": 16})
    start = history.create_run("startup", base.to_dict(), label="start")
    history.finish_run(start, {"ready_s": 41.5, "kv_cache_tokens": 46592, "max_concurrency": 22.75})
    apply = history.create_run("apply", {**lanes.to_dict(), "before": base.to_dict()}, label="probe")
    key = Probe().key
    pair = BeforeAfter(
        Probe(), Side(key, (302.0, 310.0)), Side(key, (305.0, 300.0)), base.to_dict(), lanes.to_dict()
    )
    history.finish_run(apply, {"ready_s": 45.3, "kv_cache_tokens": 46592, "comparison": pair.to_dict()})
    failed = history.create_run("playground", base.to_dict(), label="pika")
    problem = request_errors.explain(VLLM_WORDS[1], 50)
    history.finish_run(failed, {"error": problem.code}, status="failed")
    history.close()


def assert_vietnamese(text: str, where: str) -> None:
    assert not RAW_KEYS.findall(text), f"{where}: raw keys {RAW_KEYS.findall(text)}"
    english = [phrase for phrase in ENGLISH if phrase in text]
    assert not english, f"{where}: English {english}"


def test_history_in_vietnamese_has_labels_not_keys_and_no_english(stand_in, cpu_sampler, home):
    seed(home)
    at = open_app("vi", HISTORY)
    page = texts(at)
    assert_vietnamese(page, "history")
    table = at.dataframe[0].value
    assert_vietnamese(" ".join(map(str, table.to_numpy().ravel())), "history table")
    at.selectbox(key="history.a").set_value(1).run()
    at.selectbox(key="history.b").set_value(2).run()
    numbers = at.dataframe[-1].value
    assert_vietnamese(" ".join(map(str, numbers.to_numpy().ravel())), "history comparison")


def test_a_failed_start_from_vllm_is_told_in_vietnamese_with_the_original_one_click_away(stand_in, home):
    config = default_config("cpu")
    problem = classify_failure([VLLM_WORDS[0]])
    stand_in.snap = replace(ready_snapshot(config), status="failed", problem=problem)
    at = open_app("vi", FACTORY)
    page = texts(at)
    assert_vietnamese(page, "factory")
    assert any(VLLM_WORDS[0] in block.value for block in at.code)  # inside the "root cause" expander


def test_every_page_in_vietnamese_with_a_running_server(stand_in, cpu_sampler, home):
    seed(home)
    stand_in.snap = ready_snapshot(default_config("cpu"))
    for page in (FACTORY, PLAYGROUND, IMPACT, MEMORY, HISTORY):
        at = open_app("vi", page)
        assert_vietnamese(texts(at), page)


def test_a_refusal_problem_keeps_numbers_in_the_vietnamese_way():
    problem = Problem("x", "{tokens} tokens, {value} GiB", params={"tokens": 46592, "value": 0.25})
    assert problem.text("vi") == "46.592 tokens, 0,25 GiB"
