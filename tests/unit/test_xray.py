"""Request X-ray core: vLLM's request spans received over OTLP/HTTP (protobuf built with the same
opentelemetry-proto classes vLLM's exporter uses) and joined with the client's timings."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from dashboard.measure import xray
from dashboard.measure.client import RequestTiming
from dashboard.ui import measure_charts


def export(*spans: dict) -> bytes:
    message = ExportTraceServiceRequest()
    scope = message.resource_spans.add().scope_spans.add()
    for attributes in spans:
        span = scope.spans.add()
        span.name = "llm_request"
        span.start_time_unix_nano = int(attributes.pop("start") * 1e9)
        for key, value in attributes.items():
            any_value = (
                AnyValue(string_value=value)
                if isinstance(value, str)
                else (AnyValue(int_value=value) if isinstance(value, int) else AnyValue(double_value=value))
            )
            span.attributes.append(KeyValue(key=key, value=any_value))
    return message.SerializeToString()


def span(request_id: str, start: float, queue: float, prefill: float, decode: float, e2e: float) -> dict:
    return {
        "start": start,
        xray.REQUEST_ID: request_id,
        xray.QUEUE: queue,
        xray.PREFILL: prefill,
        xray.DECODE: decode,
        xray.E2E: e2e,
        xray.COMPLETION_TOKENS: 32,
    }


def test_receiver_keeps_the_request_spans_vllm_posts():
    receiver = xray.TraceReceiver()
    try:
        body = export(span("chatcmpl-1", 100.0, 0.5, 0.2, 1.0, 1.75), {"start": 100.0, "other": "span"})
        answer = httpx.post(
            receiver.endpoint,
            content=body,
            headers={"Content-Type": "application/x-protobuf"},
            trust_env=False,
        )
        assert answer.status_code == 200
        garbage = httpx.post(receiver.endpoint, content=b"\xff\x00nope", trust_env=False)
        assert garbage.status_code == 400
        (found,) = receiver.spans()
        assert found.request_id == "chatcmpl-1"
        assert (found.queue_s, found.prefill_s, found.decode_s, found.e2e_s) == (0.5, 0.2, 1.0, 1.75)
        assert found.completion_tokens == 32 and found.start_s == pytest.approx(100.0)
        assert receiver.server_args() == ["--otlp-traces-endpoint", receiver.endpoint]
        env = receiver.server_env()
        assert env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
        assert "127.0.0.1" in env["no_proxy"].split(",")  # the spans never leave through a proxy
    finally:
        receiver.close()


def timing(request_id: str | None, started_at: float, e2e_ms: float, ok: bool = True) -> RequestTiming:
    return RequestTiming(
        ok=ok, error=None if ok else "HTTP 500", text="", ttft_ms=100.0, e2e_ms=e2e_ms,
        started_at=started_at, request_id=request_id, completion_tokens=32,
    )  # fmt: skip


def test_join_pairs_each_request_with_the_span_of_its_id_and_checks_the_parts():
    spans = [
        xray.ServerTimes("chatcmpl-b", 100.31, 0.50, 0.20, 1.00, 1.75),
        xray.ServerTimes("chatcmpl-a", 100.01, 0.00, 0.20, 1.00, 1.25),
    ]
    # sent in the other order than the spans started: the ids decide, not the times
    rows = xray.join([timing("chatcmpl-b", 100.3, 1800.0), timing("chatcmpl-a", 100.0, 1300.0)], spans)
    first, second = rows
    assert (first.request_id, second.request_id) == ("chatcmpl-a", "chatcmpl-b")
    assert (first.index, second.index) == (1, 2)
    assert (first.queue_ms, second.queue_ms) == (0.0, 500.0)  # the later request waited in the queue
    assert second.sent_ms == pytest.approx(300.0)
    assert first.http_ms == pytest.approx(50.0)
    assert first.adds_up() and second.adds_up()


def test_a_row_is_laid_end_to_end_from_the_send_to_the_last_byte():
    span = xray.ServerTimes("chatcmpl-a", 100.02, 0.10, 0.20, 1.00, 1.32)
    (row,) = xray.join([timing("chatcmpl-a", 100.0, 1400.0)], [span])
    pieces = row.segments()
    assert [kind for kind, _at, _length in pieces] == ["http", "queue", "prefill", "decode", "http"]
    assert pieces[0][1] == 0.0 and pieces[0][2] == pytest.approx(20.0)  # the trip in: send -> arrival
    assert pieces[1][1] == pytest.approx(20.0)  # waiting starts when vLLM took the order in
    ends = [at + length for _kind, at, length in pieces]
    assert ends[-1] == pytest.approx(row.client_e2e_ms)  # the last piece ends at the client's last byte
    assert all(later == pytest.approx(end) for end, (_k, later, _l) in zip(ends, pieces[1:], strict=False))
    assert row.overhead_ms() == pytest.approx(100.0)  # 20 ms in, 80 ms back (server bookkeeping too)


def test_parts_that_miss_the_measured_time_do_not_add_up():
    lost = xray.ServerTimes("a", 100.0, 0.0, 0.2, 0.5, 1.25)  # 550 ms of the server's own time unexplained
    (row,) = xray.join([timing("a", 100.0, 1300.0)], [lost])
    assert not row.adds_up()
    (alone,) = xray.join([timing("a", 100.0, 1300.0)], [])
    assert alone.parts_ms() is None and not alone.adds_up() and alone.segments() == []


def test_a_request_without_an_id_gets_no_span_even_when_one_started_right_after_it():
    nearby = xray.ServerTimes("chatcmpl-z", 100.01, 0.0, 0.2, 1.0, 1.25)
    (row,) = xray.join([timing(None, 100.0, 1300.0, ok=False)], [nearby])
    assert not row.has_span and not row.ok


def test_preemption_moments_are_where_the_counter_rose():
    marks = xray.preemptions([(0.0, 3.0), (0.5, 3.0), (1.0, 5.0), (1.5, 5.0), (2.0, 6.0)])
    assert marks == [xray.Preemption(500.0, 1000.0, 2), xray.Preemption(1500.0, 2000.0, 1)]
    assert xray.preemptions([(0.0, 0.0)]) == []


def test_the_xray_of_a_result_waits_for_late_spans_and_says_what_is_missing():
    receiver = xray.TraceReceiver()
    try:
        result = SimpleNamespace(
            started_at=100.0,
            timings=[timing("chatcmpl-1", 100.0, 1300.0), timing("chatcmpl-2", 100.1, 1300.0)],
            preempted=[(0.0, 0.0), (0.5, 1.0)],
        )
        late = threading.Timer(
            0.3,
            lambda: httpx.post(
                receiver.endpoint,
                content=export(span("chatcmpl-1", 100.01, 0.0, 0.2, 1.0, 1.25)),
                trust_env=False,
            ),
        )
        late.start()
        view = xray.for_result(result, receiver, timeout_s=1.0)
        late.join()
        assert view.receiving and view.with_span == 1 and view.missing == 1
        assert view.preemptions_seen and view.preemptions == [xray.Preemption(0.0, 500.0, 1)]
        blind = xray.for_result(result, None)
        assert not blind.receiving and blind.with_span == 0 and len(blind.rows) == 2
    finally:
        receiver.close()


def test_the_xray_chart_draws_each_kind_of_piece_and_marks_preemptions():
    spans = [xray.ServerTimes("a", 100.01, 0.3, 0.2, 1.0, 1.52)]
    view = xray.Xray(
        rows=xray.join([timing("a", 100.0, 1600.0), timing("b", 100.2, 900.0)], spans, origin=100.0),
        preemptions=[xray.Preemption(500.0, 1000.0, 2)],
        preemptions_seen=True,
        receiving=True,
    )
    figure = measure_charts.xray_figure(view)
    names = [trace.name for trace in figure.data]
    assert names == [
        measure_charts.XRAY_NAMES[k] for k in ("queue", "prefill", "decode", "http", "client_only")
    ]
    grey = figure.data[-1]
    assert list(grey.y) == [2] and grey.x[0] == pytest.approx(0.9)  # our clock only, no invented parts
    assert "Order #1" in figure.data[0].hovertext[0] and "did not arrive" in grey.hovertext[0]
    (band,) = figure.layout.shapes
    assert (band.x0, band.x1) == (0.5, 1.0)


def test_waiting_counts_the_handover_to_a_busy_engine_not_only_vllms_queue():
    # 10 ms in vLLM's queue, but the first token came 290 ms after arrival with 200 ms of prefill:
    # the order also waited 80 ms to be handed to the engine, busy with a step of the others
    handed = xray.ServerTimes("a", 100.0, 0.01, 0.2, 1.0, 1.3, ttft_s=0.29)
    (row,) = xray.join([timing("a", 100.0, 1400.0)], [handed])
    assert row.waiting_ms == pytest.approx(90.0) and row.queue_ms == pytest.approx(10.0)
    assert row.adds_up()
    queue_only = xray.ServerTimes("a", 100.0, 0.01, 0.2, 1.0, 1.3)  # no first-token time in the span
    (short,) = xray.join([timing("a", 100.0, 1400.0)], [queue_only])
    assert short.waiting_ms == pytest.approx(10.0) and not short.adds_up()


def test_the_api_servers_delay_in_passing_on_tokens_is_not_counted_twice():
    # the engine wrote its first token at 250 ms, the API server (busy) passed it on at 400 ms: its
    # first-token time says 400, while prefill and decode run on the engine's clock
    late = xray.ServerTimes("a", 100.0, 0.0, 0.2, 1.0, 1.3, ttft_s=0.4)
    (row,) = xray.join([timing("a", 100.0, 1350.0)], [late])
    assert row.waiting_ms == pytest.approx(100.0)  # e2e less prefill and decode: the smaller reading
    assert row.segments()[-1][1] + row.segments()[-1][2] == pytest.approx(row.end_ms)
    assert sum(length for kind, _at, length in row.segments() if kind != "http") <= row.server_e2e_ms + 1e-9
