"""Request X-ray: vLLM's own per-request timings, received as OpenTelemetry spans, joined with the
client's timings into one timeline row per request: waiting, first-token work, token-by-token work,
and what the trip over HTTP added.

vLLM (0.32) exports one span per finished request when started with `--otlp-traces-endpoint URL`; with
`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf` in its environment it POSTs them to URL, which
`TraceReceiver` answers on 127.0.0.1. The span carries `gen_ai.latency.time_in_queue`,
`gen_ai.latency.time_in_model_prefill`, `gen_ai.latency.time_in_model_decode`, `gen_ai.latency.e2e` and
`gen_ai.request.id` (seconds), the id being the chat completion's own id (`chatcmpl-...`), which the
client reads from the stream (`RequestTiming.request_id`): the join is by that id.

Whoever starts servers asks `shared_receiver()` (one per process, started on first use) for
`server_args()` and `server_env()` and hands them to its ServerManager or Carousel (`extra_argv`,
`extra_env`); the engine layer never imports this module. `for_result()` turns a load test's result
into the timeline, with the moments the server's preemption counter rose (when the run watched /metrics).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
KEEP_SPANS = 20_000  # the newest spans a long-running app keeps (a class's load tests, not a day's traffic)
EXPORT_DELAY_MS = "500"  # the server's span batches leave every half second (OpenTelemetry's default: 5 s)
OFF_ENV = "LEGO_FACTORY_XRAY"  # "0" turns the X-ray off: servers start without tracing


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
        self._spans: deque[ServerTimes] = deque(maxlen=KEEP_SPANS)
        self._arrived = threading.Condition(self._lock)
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
                    with receiver._arrived:
                        receiver._spans.extend(spans)
                        receiver._arrived.notify_all()

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
        """What the server's environment needs: spans over HTTP, sent every half second, never through
        a proxy (the receiver is on this machine)."""
        env = {
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": EXPORT_DELAY_MS,
        }
        for name in ("no_proxy", "NO_PROXY"):
            present = [h for h in os.environ.get(name, "").split(",") if h.strip()]
            env[name] = ",".join(present + [h for h in ("127.0.0.1", "localhost") if h not in present])
        return env

    def spans(self) -> list[ServerTimes]:
        with self._lock:
            return list(self._spans)

    def wait_for(
        self, request_ids: Iterable[str], timeout_s: float = 5.0, none_after_s: float = 2.5
    ) -> dict[str, ServerTimes]:
        """The spans of these requests, waiting up to `timeout_s` for the last ones to arrive (the server
        sends them in batches), or only `none_after_s` when not one of them came (a server that sends
        none); a request whose span did not come is missing from the answer."""
        wanted = {i for i in request_ids if i}
        started = time.monotonic()
        with self._arrived:
            while True:
                found = {s.request_id: s for s in self._spans if s.request_id in wanted}
                waited = time.monotonic() - started
                limit = timeout_s if found else min(timeout_s, none_after_s)
                if len(found) == len(wanted) or waited >= limit:
                    return found
                self._arrived.wait(min(limit - waited, 0.25))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_shared: TraceReceiver | None = None
_shared_lock = threading.Lock()


def shared_receiver() -> TraceReceiver | None:
    """This process's receiver, started on first use; None when the X-ray is turned off
    (`LEGO_FACTORY_XRAY=0`) or no port could be opened."""
    global _shared
    if os.environ.get(OFF_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    with _shared_lock:
        if _shared is None:
            try:
                _shared = TraceReceiver()
            except OSError:
                return None
        return _shared


# ------------------------------------------------------------------------------------------ joining

SEGMENTS = ("http", "queue", "prefill", "decode")  # the kinds of a row's pieces (http: before and after)


@dataclass(frozen=True)
class XrayRow:
    """One request on the timeline, in ms from the load test's first send. The server's parts are None
    when its span did not arrive (or the request failed before the server named it)."""

    index: int  # 1 for the first request sent
    sent_ms: float
    client_e2e_ms: float
    queue_ms: float | None
    prefill_ms: float | None
    decode_ms: float | None
    server_e2e_ms: float | None
    request_id: str | None = None
    arrival_ms: float | None = None  # when vLLM took the order in (the span's start)
    server_ttft_ms: float | None = None  # vLLM's own first-token time, from arrival
    client_ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ok: bool = True
    error: str | None = None

    @property
    def has_span(self) -> bool:
        return self.server_e2e_ms is not None

    @property
    def waiting_ms(self) -> float | None:
        """From vLLM taking the order in to the start of its first-token work, the wait to be handed to
        a busy engine included (vLLM's own queue time, `queue_ms`, is only a part of it).

        vLLM's first-token and end-to-end times run on its API server's clock, the prefill and decode
        times on its engine's: what precedes the prefill is read from both ends (first-token time less
        prefill; end-to-end time less prefill and decode) and the smaller kept, so the API server's delay
        in passing on a busy engine's tokens is not counted twice (it stays in HTTP and handling).
        vLLM's queue time alone where the span has no first-token time."""
        if self.prefill_ms is None:
            return self.queue_ms
        ends = []
        if self.server_ttft_ms is not None:
            ends.append(self.server_ttft_ms - self.prefill_ms)
        if self.server_e2e_ms is not None and self.decode_ms is not None and self.server_ttft_ms is not None:
            ends.append(self.server_e2e_ms - self.prefill_ms - self.decode_ms)
        return max(min(ends), 0.0) if ends else self.queue_ms

    @property
    def http_ms(self) -> float | None:
        """What the client saw beyond the server's own end-to-end time (network, streaming, parsing)."""
        return None if self.server_e2e_ms is None else self.client_e2e_ms - self.server_e2e_ms

    def parts_ms(self) -> float | None:
        """Waiting + first-token work + token-by-token work (vLLM's clocks) + HTTP (ours less vLLM's)."""
        parts = (self.waiting_ms, self.prefill_ms, self.decode_ms, self.http_ms)
        return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]

    def adds_up(self, tolerance: float = 0.05) -> bool:
        total = self.parts_ms()
        return total is not None and abs(total - self.client_e2e_ms) <= tolerance * self.client_e2e_ms

    @property
    def end_ms(self) -> float:
        return self.sent_ms + self.client_e2e_ms

    def segments(self) -> list[tuple[str, float, float]]:
        """(kind, start ms, length ms) laid end to end from the send to the last byte: the trip in
        (HTTP, reading the order, tokens), waiting ("queue": `waiting_ms`), first-token work,
        token-by-token work, the trip back (the rest of the client's time). Empty without the server's
        parts."""
        if not self.has_span or None in (self.waiting_ms, self.prefill_ms, self.decode_ms):
            return []
        server = [("queue", self.waiting_ms or 0.0), ("prefill", self.prefill_ms or 0.0)]
        server.append(("decode", self.decode_ms or 0.0))
        inside = sum(length for _kind, length in server)
        arrival = self.arrival_ms if self.arrival_ms is not None else self.sent_ms
        before = min(max(arrival - self.sent_ms, 0.0), max(self.client_e2e_ms - inside, 0.0))
        pieces = [("http", before), *server, ("http", max(self.client_e2e_ms - before - inside, 0.0))]
        out, at = [], self.sent_ms
        for kind, length in pieces:
            if length > 0:
                out.append((kind, at, length))
            at += length
        return out

    def overhead_ms(self) -> float | None:
        """The HTTP pieces of `segments` together (what the timeline draws as the trip)."""
        pieces = self.segments()
        return sum(length for kind, _at, length in pieces if kind == "http") if pieces else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def join(timings: Sequence[Any], spans: Iterable[ServerTimes], origin: float | None = None) -> list[XrayRow]:
    """One row per client request (`RequestTiming`s), in the order they were sent, each with the span of
    the same request id; `origin` (epoch s) is the timeline's zero, the first send by default. A request
    without an id or without a span of its id keeps None parts: nothing is matched by guess."""
    by_id = {s.request_id: s for s in spans}
    ordered = sorted(timings, key=lambda t: t.started_at)
    if origin is None:
        origin = ordered[0].started_at if ordered else 0.0
    rows = []
    for number, timing in enumerate(ordered, start=1):
        match = by_id.get(timing.request_id) if timing.request_id else None
        rows.append(
            XrayRow(
                index=number,
                sent_ms=(timing.started_at - origin) * 1000.0,
                client_e2e_ms=timing.e2e_ms,
                queue_ms=_ms(match.queue_s) if match else None,
                prefill_ms=_ms(match.prefill_s) if match else None,
                decode_ms=_ms(match.decode_s) if match else None,
                server_e2e_ms=_ms(match.e2e_s) if match else None,
                request_id=timing.request_id,
                arrival_ms=(match.start_s - origin) * 1000.0 if match else None,
                server_ttft_ms=_ms(match.ttft_s) if match else None,
                client_ttft_ms=timing.ttft_ms,
                prompt_tokens=timing.prompt_tokens
                if timing.prompt_tokens is not None
                else (match.prompt_tokens if match else None),
                completion_tokens=timing.completion_tokens
                if timing.completion_tokens is not None
                else (match.completion_tokens if match else None),
                ok=timing.ok,
                error=timing.error,
            )
        )
    return rows


@dataclass(frozen=True)
class Preemption:
    """Between two reads of /metrics (ms from the first send), the server sent `count` orders back to wait;
    which ones, it does not say."""

    from_ms: float
    to_ms: float
    count: int


def preemptions(samples: Sequence[tuple[float, float]]) -> list[Preemption]:
    """The moments the preemption counter rose, from (s since the first send, counter) samples."""
    found = []
    for (before_s, before), (after_s, after) in zip(samples, samples[1:], strict=False):
        if after > before:
            found.append(Preemption(before_s * 1000.0, after_s * 1000.0, int(round(after - before))))
    return found


@dataclass
class Xray:
    """A load test's timeline: its rows, the preemption moments, and what was (not) received."""

    rows: list[XrayRow] = field(default_factory=list)
    preemptions: list[Preemption] = field(default_factory=list)
    preemptions_seen: bool = False  # the server's preemption counter was read during the run
    receiving: bool = False  # the factory was listening for the server's spans

    @property
    def with_span(self) -> int:
        return sum(1 for r in self.rows if r.has_span)

    @property
    def missing(self) -> int:
        """Answered requests whose server timings did not arrive."""
        return sum(1 for r in self.rows if r.ok and not r.has_span)


def for_result(result: Any, receiver: TraceReceiver | None, timeout_s: float = 5.0) -> Xray:
    """The X-ray of a LoadResult: its requests joined with the spans `receiver` got (waiting up to
    `timeout_s` for late ones); no receiver gives a timeline of the client's clock only."""
    timings = list(result.timings)
    ids = [t.request_id for t in timings if t.ok and t.request_id]
    spans = receiver.wait_for(ids, timeout_s).values() if receiver is not None and ids else ()
    samples = list(getattr(result, "preempted", None) or [])
    return Xray(
        rows=join(timings, spans, origin=result.started_at if timings else None),
        preemptions=preemptions(samples),
        preemptions_seen=len(samples) >= 2,
        receiving=receiver is not None,
    )
