"""Splitting one request's time into queue, prefill, decode, server paperwork and HTTP."""

from __future__ import annotations

import math

import pytest

from dashboard.measure import metrics
from dashboard.measure.budget import latency_budget
from dashboard.measure.client import RequestTiming
from dashboard.measure.metrics import HistogramDelta


def _one(name: str, seconds: float, count: float = 1) -> HistogramDelta:
    return HistogramDelta(name, count, seconds, ((math.inf, count),))


def _timing(e2e: float = 1000.0, ttft: float | None = 300.0, tokens: int | None = 11) -> RequestTiming:
    return RequestTiming(ok=True, error=None, text="x", ttft_ms=ttft, e2e_ms=e2e, completion_tokens=tokens)


def _deltas(queue=0.010, prefill=0.250, decode=0.700, e2e=0.980, ttft=0.270) -> dict[str, HistogramDelta]:
    values = {
        metrics.QUEUE: queue,
        metrics.PREFILL: prefill,
        metrics.DECODE: decode,
        metrics.E2E: e2e,
        metrics.TTFT: ttft,
    }
    return {name: _one(name, seconds) for name, seconds in values.items()}


def test_server_split_adds_up_to_the_client_time():
    budget = latency_budget(_timing(), _deltas())
    assert budget.source == "server"
    parts = dict((key, ms) for key, _, ms in budget.segments())
    assert parts["queue"] == pytest.approx(10)
    assert parts["prefill"] == pytest.approx(250)
    assert parts["decode"] == pytest.approx(700)
    assert parts["server_other"] == pytest.approx(20)
    assert parts["http"] == pytest.approx(20)
    assert sum(parts.values()) == pytest.approx(1000)
    assert budget.decode_ms_per_token == pytest.approx(70)
    assert budget.server_ttft_ms == pytest.approx(270)


def test_two_requests_between_the_scrapes_fall_back_to_client_timings():
    deltas = {name: _one(name, 1.0, count=2) for name in metrics.LATENCY_HISTOGRAMS}
    budget = latency_budget(_timing(), deltas)
    assert budget.source == "client"
    assert budget.queue_ms is None and budget.http_ms is None
    assert budget.prefill_ms == 300 and budget.decode_ms == 700


def test_no_server_figures_fall_back_to_client_timings():
    budget = latency_budget(_timing(), None)
    assert budget.source == "client"
    assert [key for key, _, _ in budget.segments()] == ["prefill", "decode"]


def test_negative_remainders_are_clamped_to_zero():
    budget = latency_budget(_timing(e2e=900.0), _deltas(e2e=0.950))  # server clock says a bit more
    assert budget.http_ms == 0.0


def test_failed_request_without_first_token_has_no_split():
    budget = latency_budget(_timing(ttft=None, tokens=None), None)
    assert budget.prefill_ms is None and budget.decode_ms is None
    assert budget.decode_ms_per_token is None


def test_to_dict_lists_segments_with_msgids():
    data = latency_budget(_timing(), _deltas()).to_dict()
    assert [s["key"] for s in data["segments"]] == ["queue", "prefill", "decode", "server_other", "http"]
    assert data["segments"][0]["label"] == "Waiting in line (queue)"
