"""Request X-ray core: vLLM's request spans received over OTLP/HTTP (protobuf built with the same
opentelemetry-proto classes vLLM's exporter uses) and joined with the client's timings."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from dashboard.measure import xray


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
        assert receiver.server_env() == {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    finally:
        receiver.close()


def test_join_pairs_each_request_with_its_span_and_checks_the_parts():
    spans = [
        xray.ServerTimes("b", 100.31, 0.50, 0.20, 1.00, 1.75),
        xray.ServerTimes("a", 100.01, 0.00, 0.20, 1.00, 1.25),
    ]
    rows = xray.join(sent_at=[100.0, 100.3], client_e2e_ms=[1300.0, 1800.0], spans=spans)
    first, second = rows
    assert (first.queue_ms, second.queue_ms) == (0.0, 500.0)  # the later request waited in the queue
    assert second.sent_ms == pytest.approx(300.0)
    assert first.http_ms == pytest.approx(50.0)
    assert first.adds_up() and second.adds_up()


def test_parts_that_miss_the_measured_time_do_not_add_up():
    lost = xray.ServerTimes("a", 100.0, 0.0, 0.2, 0.5, 1.25)  # 550 ms of the server's own time unexplained
    (row,) = xray.join([100.0], [1300.0], [lost])
    assert not row.adds_up()
    (alone,) = xray.join([100.0], [1300.0], [])
    assert alone.parts_ms() is None and not alone.adds_up()
