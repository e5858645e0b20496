"""Request X-ray (core only): vLLM's own per-request timings, received as OpenTelemetry spans, joined with
the client's timings into one timeline row per request: waiting, first-token work, token-by-token work,
and what the trip over HTTP added.

vLLM (0.32) exports one span per finished request when started with `--otlp-traces-endpoint URL`; with
`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf` in its environment it POSTs them to URL, which
`TraceReceiver` answers on 127.0.0.1. The span carries `gen_ai.latency.time_in_queue`,
`gen_ai.latency.time_in_model_prefill`, `gen_ai.latency.time_in_model_decode`, `gen_ai.latency.e2e` and
`gen_ai.request.id` (seconds). Not wired into the server's start yet: `receiver.server_args()` and
`receiver.server_env()` say what a start needs.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

QUEUE = "gen_ai.latency.time_in_queue"
PREFILL = "gen_ai.latency.time_in_model_prefill"
DECODE = "gen_ai.latency.time_in_model_decode"
E2E = "gen_ai.latency.e2e"
TTFT = "gen_ai.latency.time_to_first_token"
REQUEST_ID = "gen_ai.request.id"
PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"
TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ServerTimes:
    """One request as vLLM timed it (seconds), from its span."""

    request_id: str
    start_s: float  # the span's start (the request's arrival), epoch seconds
    queue_s: float | None
    prefill_s: float | None
    decode_s: float | None
    e2e_s: float | None
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _attribute_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def parse_export(body: bytes) -> list[ServerTimes]:
    """The request spans of one OTLP ExportTraceServiceRequest (protobuf); other spans are skipped."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    found = []
    for resource in message.resource_spans:
        for scope in resource.scope_spans:
            for span in scope.spans:
                attributes = {a.key: _attribute_value(a.value) for a in span.attributes}
                if E2E not in attributes or REQUEST_ID not in attributes:
                    continue
                found.append(_times(attributes, span.start_time_unix_nano))
    return found


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _times(attributes: dict[str, Any], start_ns: int) -> ServerTimes:
    prompt, completion = attributes.get(PROMPT_TOKENS), attributes.get(COMPLETION_TOKENS)
    return ServerTimes(
        request_id=str(attributes[REQUEST_ID]),
        start_s=start_ns / 1e9,
        queue_s=_float(attributes.get(QUEUE)),
        prefill_s=_float(attributes.get(PREFILL)),
        decode_s=_float(attributes.get(DECODE)),
        e2e_s=_float(attributes.get(E2E)),
        ttft_s=_float(attributes.get(TTFT)),
        prompt_tokens=None if prompt is None else int(prompt),
        completion_tokens=None if completion is None else int(completion),
    )


class TraceReceiver:
    """A small OTLP/HTTP endpoint on 127.0.0.1 that keeps the request spans it is sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ServerTimes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    spans = parse_export(body) if self.path == TRACES_PATH else None
                except Exception:  # a body that is not OTLP: refuse it, keep serving
                    spans = None
                self.send_response(200 if spans is not None else 400)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()
                if spans:
                    with receiver._lock:
                        receiver._spans.extend(spans)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{TRACES_PATH}"

    def server_args(self) -> list[str]:
        return ["--otlp-traces-endpoint", self.endpoint]

    @staticmethod
    def server_env() -> dict[str, str]:
        return {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}

    def spans(self) -> list[ServerTimes]:
        with self._lock:
            return list(self._spans)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ------------------------------------------------------------------------------------------ joining


@dataclass(frozen=True)
class XrayRow:
    """One request on the timeline, in ms from the load test's first send."""

    index: int
    sent_ms: float
    client_e2e_ms: float
    queue_ms: float | None
    prefill_ms: float | None
    decode_ms: float | None
    server_e2e_ms: float | None

    @property
    def http_ms(self) -> float | None:
        """What the client saw beyond the server's own end-to-end time (network, streaming, parsing)."""
        return None if self.server_e2e_ms is None else self.client_e2e_ms - self.server_e2e_ms

    def parts_ms(self) -> float | None:
        parts = (self.queue_ms, self.prefill_ms, self.decode_ms, self.http_ms)
        return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]

    def adds_up(self, tolerance: float = 0.05) -> bool:
        total = self.parts_ms()
        return total is not None and abs(total - self.client_e2e_ms) <= tolerance * self.client_e2e_ms


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def join(
    sent_at: Sequence[float], client_e2e_ms: Sequence[float], spans: Sequence[ServerTimes]
) -> list[XrayRow]:
    """Pair each client request (its send time, epoch s, and end-to-end ms) with the span that arrived
    first after it was sent (same machine, same clock); a request without a span keeps None parts."""
    origin = min(sent_at) if sent_at else 0.0
    free = sorted(spans, key=lambda s: s.start_s)
    rows = []
    for index in sorted(range(len(sent_at)), key=lambda i: sent_at[i]):
        match = next((s for s in free if s.start_s >= sent_at[index] - 0.005), None)
        if match is not None:
            free.remove(match)
        rows.append(
            XrayRow(
                index=index,
                sent_ms=(sent_at[index] - origin) * 1000.0,
                client_e2e_ms=client_e2e_ms[index],
                queue_ms=_ms(match.queue_s) if match else None,
                prefill_ms=_ms(match.prefill_s) if match else None,
                decode_ms=_ms(match.decode_s) if match else None,
                server_e2e_ms=_ms(match.e2e_s) if match else None,
            )
        )
    return rows
