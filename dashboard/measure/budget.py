"""Where the time of one request goes: waiting in line, reading the prompt, writing the answer, overhead.

The server's histograms, scraped just before and just after a single request, give its queue, prefill
and decode times and its own end-to-end time; the client's stopwatch gives the end-to-end time the
user felt. The parts add up to the client's end-to-end time:

    queue + prefill + decode + server bookkeeping (server e2e - the three) + HTTP (client e2e - server e2e)

Without server figures (another request slipped in between the scrapes, or no /metrics) the budget
falls back to the client's view: prefill ~ time to first token, decode ~ the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from dashboard.i18n import N_
from dashboard.measure import metrics
from dashboard.measure.client import RequestTiming, chat_once
from dashboard.measure.metrics import HistogramDelta

SEGMENT_LABELS = {
    "queue": N_("Waiting in line (queue)"),
    "prefill": N_("Reading the prompt (prefill)"),
    "decode": N_("Writing the answer (decode)"),
    "server_other": N_("Server paperwork (tokenizing, scheduling)"),
    "http": N_("Delivery (HTTP and streaming)"),
}


@dataclass(frozen=True)
class LatencyBudget:
    source: str  # "server": split by the server's histograms; "client": estimated from client timings
    client_e2e_ms: float
    client_ttft_ms: float | None
    output_tokens: int | None
    queue_ms: float | None
    prefill_ms: float | None
    decode_ms: float | None
    server_other_ms: float | None
    http_ms: float | None
    server_e2e_ms: float | None = None
    server_ttft_ms: float | None = None

    @property
    def decode_ms_per_token(self) -> float | None:
        if self.decode_ms is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return self.decode_ms / (self.output_tokens - 1)

    def segments(self) -> list[tuple[str, str, float]]:
        """(key, English msgid, milliseconds) for each known part, in the order time passes."""
        values = {
            "queue": self.queue_ms,
            "prefill": self.prefill_ms,
            "decode": self.decode_ms,
            "server_other": self.server_other_ms,
            "http": self.http_ms,
        }
        return [(key, SEGMENT_LABELS[key], ms) for key, ms in values.items() if ms is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "client_e2e_ms": self.client_e2e_ms,
            "client_ttft_ms": self.client_ttft_ms,
            "server_e2e_ms": self.server_e2e_ms,
            "server_ttft_ms": self.server_ttft_ms,
            "output_tokens": self.output_tokens,
            "decode_ms_per_token": self.decode_ms_per_token,
            "segments": [{"key": k, "label": label, "ms": ms} for k, label, ms in self.segments()],
        }


def _single_ms(deltas: dict[str, HistogramDelta], name: str) -> float | None:
    delta = deltas.get(name)
    if delta is None or round(delta.count) != 1:
        return None
    return delta.sum * 1000.0


def latency_budget(timing: RequestTiming, deltas: dict[str, HistogramDelta] | None = None) -> LatencyBudget:
    """Split one request's time (pure). `deltas`: metrics.latency_deltas() around that request alone."""
    deltas = deltas or {}
    queue = _single_ms(deltas, metrics.QUEUE)
    prefill = _single_ms(deltas, metrics.PREFILL)
    decode = _single_ms(deltas, metrics.DECODE)
    server_e2e = _single_ms(deltas, metrics.E2E)
    if queue is not None and prefill is not None and decode is not None and server_e2e is not None:
        return LatencyBudget(
            source="server",
            client_e2e_ms=timing.e2e_ms,
            client_ttft_ms=timing.ttft_ms,
            output_tokens=timing.completion_tokens,
            queue_ms=queue,
            prefill_ms=prefill,
            decode_ms=decode,
            server_other_ms=max(server_e2e - queue - prefill - decode, 0.0),
            http_ms=max(timing.e2e_ms - server_e2e, 0.0),
            server_e2e_ms=server_e2e,
            server_ttft_ms=_single_ms(deltas, metrics.TTFT),
        )
    ttft = timing.ttft_ms
    return LatencyBudget(
        source="client",
        client_e2e_ms=timing.e2e_ms,
        client_ttft_ms=ttft,
        output_tokens=timing.completion_tokens,
        queue_ms=None,
        prefill_ms=ttft,
        decode_ms=timing.e2e_ms - ttft if ttft is not None else None,
        server_other_ms=None,
        http_ms=None,
    )


def measure_budget(
    base_url: str, payload: dict, api_key: str | None = None, timeout: float = 120
) -> tuple[LatencyBudget, RequestTiming]:
    """Send one request between two /metrics scrapes and split its time. Anything else using the server
    at the same moment shows up as a second observation, and the budget falls back to client timings."""
    try:
        before = metrics.scrape(base_url)
    except (httpx.HTTPError, metrics.MetricsParseError):
        before = None
    timing = chat_once(base_url, payload, api_key=api_key, timeout=timeout)
    deltas = {}
    if before is not None and timing.ok:
        after = metrics.try_scrape(base_url)
        if after is not None:
            deltas = metrics.latency_deltas(before, after)
    return latency_budget(timing, deltas), timing
