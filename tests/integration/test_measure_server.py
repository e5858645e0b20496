"""The inspector against a real vLLM server: one timed request, its latency budget, the memory of
the server's process tree, and the memory prediction next to what the server reports."""

from __future__ import annotations

import time

import pytest

from dashboard.engine import models, presets
from dashboard.engine.config import default_config
from dashboard.measure import memory, metrics, predict
from dashboard.measure.budget import measure_budget
from dashboard.measure.client import chat_once
from dashboard.measure.memory import MemorySampler
from tests.integration.backend import BACKEND, CPU_KV_TOKENS, ON_CPU
from tests.integration.measure_server import running_server

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

PORT = 8220
FREE_PORT = 8299  # nothing listens here during the tests


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("measure-server"), PORT) as manager:
        yield manager


@pytest.fixture(scope="module")
def pika_json(server):
    payload = presets.get("pika-json").request.payload(server.served_name)
    chat_once(server.base_url, payload)  # warm-up: first prefill and grammar setup
    return payload


def test_one_streamed_request_reports_text_tokens_and_timings(server, pika_json):
    pieces: list[str] = []
    timing = chat_once(server.base_url, pika_json, on_text=pieces.append)
    assert timing.ok, timing.error
    assert '"emotion"' in timing.text and "".join(pieces) == timing.text
    assert timing.prompt_tokens == 430
    assert timing.completion_tokens and timing.completion_tokens > 5
    assert timing.finish_reason == "stop"
    assert 0 < timing.ttft_ms < timing.e2e_ms
    assert len(timing.itl_ms) == timing.content_chunks - 1
    assert timing.mean_itl_ms() > 0
    assert abs(timing.started_at - time.time()) < 600


def test_unknown_model_comes_back_as_an_http_error(server, pika_json):
    timing = chat_once(server.base_url, {**pika_json, "model": "no-such-model"})
    assert not timing.ok
    assert timing.error.startswith("HTTP 404")


def test_closed_port_comes_back_as_a_connection_error(pika_json):
    timing = chat_once(f"http://127.0.0.1:{FREE_PORT}", pika_json, timeout=10)
    assert not timing.ok
    assert "connection failed" in timing.error


def test_too_short_timeout_comes_back_as_a_timeout(server):
    payload = presets.get("pika").request.payload(server.served_name)
    timing = chat_once(server.base_url, {**payload, "max_tokens": 400, "ignore_eos": True}, timeout=0.3)
    assert not timing.ok
    assert "timeout" in timing.error


def test_latency_budget_of_one_request_adds_up(server, pika_json):
    budget, timing = measure_budget(server.base_url, pika_json)
    assert timing.ok
    assert budget.source == "server"
    parts = {key: ms for key, _, ms in budget.segments()}
    assert set(parts) == {"queue", "prefill", "decode", "server_other", "http"}
    assert all(ms >= 0 for ms in parts.values())
    assert sum(parts.values()) == pytest.approx(timing.e2e_ms, rel=0.01)
    assert parts["decode"] > parts["queue"]
    # the server's own first-token time is the client's less HTTP and handling, which a busy machine stretches
    assert budget.server_ttft_ms == pytest.approx(timing.ttft_ms, rel=0.15, abs=50)


def test_sampler_sees_the_server_process_tree_and_its_gauges(server, pika_json):
    snapshot = server.snapshot()
    sampler = MemorySampler(root_pid=snapshot.pid, metrics_url=server.base_url, backend="auto")
    assert sampler.backend == BACKEND
    sample = sampler.sample_once()
    assert sample.process_count >= 2  # API server and engine core at least
    assert sample.process_rss_bytes > 200 * 1024**2
    assert sample.kv_cache_usage is not None and 0 <= sample.kv_cache_usage <= 1
    assert sample.running == 0 and sample.waiting == 0
    assert memory.process_tree_rss(snapshot.pid) > 200 * 1024**2


def test_prediction_matches_the_kv_cache_the_server_reports(server):
    scrape = metrics.scrape(server.base_url)
    reported_tokens = scrape.kv_cache_tokens()
    shape = models.shape(models.resolve("embedded"))
    if not ON_CPU:
        pytest.skip("on a GPU the KV cache follows the card's free memory; tests/gpu checks it there")
    config = default_config("cpu").with_values({"max_model_len": 2048})
    prediction = predict.predict(config, shape, "cpu", 24 * 1024**3)
    assert reported_tokens == prediction.kv_tokens == CPU_KV_TOKENS
    assert server.last_report.kv_cache_tokens == prediction.kv_tokens
    assert server.last_report.max_concurrency == pytest.approx(prediction.max_concurrency)


# ------------------------------------------------------------------ what a newcomer meets (issue 11)


def test_the_same_order_on_the_same_server_is_comparable_and_answers_the_same(server):
    from dashboard.measure.compare import BeforeAfter, Probe, measure_side

    probe = Probe()
    first = measure_side(server.base_url, server.served_name, probe)
    second = measure_side(server.base_url, server.served_name, probe)
    assert len(first.e2e_ms) == len(second.e2e_ms) == probe.orders
    pair = BeforeAfter(probe, first, second)
    assert pair.comparable
    assert pair.same_answer is True  # temperature 0: the same server gives the same words
    print(f"A/A: {first.median_e2e_ms:.0f} ms vs {second.median_e2e_ms:.0f} ms -> {pair.verdict}")


def test_the_prompt_is_counted_on_the_server_and_a_too_long_one_is_explained(server):
    from dashboard.measure import request_errors, tokens

    short = {"model": server.served_name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    counted = tokens.count_prompt(server.base_url, short)
    assert counted is not None and 0 < counted.prompt_tokens < 50
    assert counted.max_model_len == 2048
    assert counted.problem(8) is None
    long = {**short, "messages": [{"role": "user", "content": "hello " * 2500}], "max_tokens": 50}
    too_long = tokens.count_prompt(server.base_url, long)
    assert too_long is not None and too_long.problem(50) is not None
    timing = chat_once(server.base_url, {**long, "stream": True})  # what vLLM says when it is sent anyway
    assert not timing.ok
    problem = request_errors.explain(timing.error, 50)
    assert problem.code == "prompt_too_long", timing.error
    assert "2.048" in problem.text("vi")


def test_a_model_that_cannot_be_found_is_refused_while_the_running_server_keeps_serving(server):
    before = server.snapshot()
    config = before.config
    report = server.start(type(config)(model="nonexistent/model", values=dict(config.values)))
    assert not report.ok
    assert report.error.code in ("model_unreachable", "model_not_found")
    assert "nonexistent/model" in report.error.text("vi")
    after = server.snapshot()
    assert after.status == "ready" and after.pid == before.pid
