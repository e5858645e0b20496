"""The load generator's latencies agree with what the server's own /metrics histograms recorded.

Both sides time the same requests: the client from sending the request to the first streamed text
(TTFT) and to the end of the stream (e2e); vLLM from the moment its API server accepted the request.
The client's figures are therefore a little larger: HTTP, the chat template, tokenizing, and the
streaming back. On this 2-core machine that extra measured 9-13 ms per request, so the means must
agree within 15% of the server's mean plus 25 ms (about twice the measured extra, for a busy machine),
the client must never be faster than the server by more than clock noise, and both sides must count
the same number of requests.

The same server sends its request spans to the factory's receiver: the request X-ray joins each of the
client's requests with vLLM's own queue, prefill and decode times, and they must add up.
"""

from __future__ import annotations

import pytest

from dashboard.engine import presets
from dashboard.measure import loadgen, metrics, xray
from dashboard.measure.loadgen import LoadPlan, Workload
from tests.integration.measure_server import running_server

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]

PORT = 8210
RELATIVE = 0.15
ABSOLUTE_MS = 25.0
CLOCK_NOISE_MS = 5.0


@pytest.fixture(scope="module")
def receiver():
    found = xray.TraceReceiver()
    yield found
    found.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, receiver):
    workdir = tmp_path_factory.mktemp("loadgen-vs-metrics")
    extras = {"extra_argv": receiver.server_args(), "extra_env": receiver.server_env()}
    with running_server(workdir, PORT, **extras) as manager:
        # one request first, so that one-time work (first prefill, grammar setup) is not in the comparison
        warm = Workload.from_request(presets.get("pika-json").request)
        loadgen.run_load(manager.base_url, manager.served_name, warm, LoadPlan(concurrency=1, requests=1))
        yield manager


def _measured(server, workload: Workload, plan: LoadPlan):
    before = metrics.scrape(server.base_url)
    result = loadgen.run_load(server.base_url, server.served_name, workload, plan)
    after = metrics.scrape(server.base_url)
    return result, loadgen.metrics_agreement(before, after, result)


def _assert_agree(result, agreement):
    assert result.errors == 0, result.error_kinds
    for key in ("ttft", "e2e"):
        pair = agreement[key]
        assert pair.client_count == result.ok == round(pair.server_count), pair
        assert pair.agrees(RELATIVE, ABSOLUTE_MS), pair.to_dict()
        assert pair.difference_ms > -CLOCK_NOISE_MS, pair.to_dict()


def test_sequential_preset_requests_agree_with_server_histograms(server):
    workload = Workload.from_request(presets.get("pika-json").request)
    result, agreement = _measured(server, workload, LoadPlan(concurrency=1, requests=3))
    _assert_agree(result, agreement)
    assert result.mean_prompt_tokens == 430  # the seed's request, as measured on the reference machines


def test_concurrent_synthetic_requests_agree_with_server_histograms(server):
    workload = Workload.synthetic(input_tokens=64, output_tokens=16)
    result, agreement = _measured(server, workload, LoadPlan(concurrency=3, requests=6))
    _assert_agree(result, agreement)
    assert all(t.completion_tokens == 16 for t in result.timings)  # ignore_eos fixes the output length


def test_poisson_rate_requests_agree_with_server_histograms(server):
    workload = Workload.synthetic(input_tokens=32, output_tokens=8)
    result, agreement = _measured(server, workload, LoadPlan(rate=2.0, concurrency=None, requests=4, seed=1))
    _assert_agree(result, agreement)
    assert result.mode == "rate"


def test_itl_and_token_counts_match_the_server(server):
    workload = Workload.synthetic(input_tokens=48, output_tokens=12)
    before = metrics.scrape(server.base_url)
    result = loadgen.run_load(
        server.base_url, server.served_name, workload, LoadPlan(concurrency=2, requests=4)
    )
    after = metrics.scrape(server.base_url)
    generated = metrics.counter_delta(before, after, metrics.GENERATION_TOKENS)
    assert generated == sum(t.completion_tokens for t in result.timings) == 4 * 12
    itl = metrics.histogram_delta(before, after, metrics.ITL)
    assert itl is not None and itl.count == 4 * 11  # one gap per token after the first
    assert result.tpot_ms.mean == pytest.approx(itl.mean_ms(), rel=RELATIVE, abs=ABSOLUTE_MS)


def test_calibrated_synthetic_prompt_has_the_requested_length(server):
    workload = Workload.synthetic(input_tokens=430, output_tokens=4).calibrated(
        server.base_url, server.served_name
    )
    result = loadgen.run_load(
        server.base_url, server.served_name, workload, LoadPlan(concurrency=1, requests=2)
    )
    assert [t.prompt_tokens for t in result.timings] == [430, 430]


def test_each_requests_xray_parts_add_up_to_its_measured_time(server, receiver):
    workload = Workload.synthetic(input_tokens=64, output_tokens=16)
    plan = LoadPlan(concurrency=3, requests=6)
    result = loadgen.run_load(server.base_url, server.served_name, workload, plan, watch_metrics=True)
    assert result.errors == 0, result.error_kinds
    view = xray.for_result(result, receiver, timeout_s=30)
    assert view.receiving and view.missing == 0 and view.with_span == 6
    spans = receiver.wait_for([row.request_id for row in view.rows], timeout_s=0)
    for row in view.rows:
        assert row.request_id.startswith("chatcmpl-"), row
        assert row.adds_up(0.05), (
            row,
            row.parts_ms(),
        )  # queue + prefill + decode + HTTP = our e2e, within 5%
        # the span is this request's: it began during the client's trip and ended before the last byte
        assert 0.0 <= row.arrival_ms - row.sent_ms <= row.client_e2e_ms, row
        assert row.server_e2e_ms <= row.client_e2e_ms + CLOCK_NOISE_MS, row
        assert spans[row.request_id].completion_tokens == row.completion_tokens == 16
        assert row.prefill_ms > 0 and row.decode_ms > 0, row
        ends = [at + length for _kind, at, length in row.segments()]
        assert ends[-1] == pytest.approx(row.end_ms)  # the timeline row ends at the client's last byte
    assert view.preemptions_seen  # the counter was read while the run went on
