"""Before/after one Apply: only like with like is compared, and a gap inside the spread is no clear change."""

from __future__ import annotations

from collections.abc import Iterator

from dashboard.measure import compare
from dashboard.measure.client import RequestTiming
from dashboard.measure.compare import BeforeAfter, Probe, Side


def sender(times_ms: list[float], text: str = "red, blue, yellow") -> tuple[compare.Send, list[dict]]:
    sent: list[dict] = []
    feed: Iterator[float] = iter(times_ms)

    def send(base_url, payload, api_key=None, timeout=60):
        sent.append(payload)
        e2e = next(feed)
        return RequestTiming(True, None, text, e2e / 4, e2e_ms=e2e, completion_tokens=8)

    return send, sent


def side(times: list[float], probe: Probe | None = None, answer: str = "x") -> Side:
    key = (probe or Probe()).key
    return Side(key, tuple(times), tuple(t / 4 for t in times), (8,) * len(times), (answer,))


def test_a_side_sends_one_warm_up_order_that_is_not_counted():
    send, sent = sender([900.0, 300.0, 310.0, 305.0, 298.0, 302.0])
    measured = compare.measure_side("http://x", "smol", Probe(), send=send)
    assert len(sent) == 1 + compare.ORDERS
    assert measured.e2e_ms == (300.0, 310.0, 305.0, 298.0, 302.0)
    assert measured.median_e2e_ms == 302.0
    assert sent[0]["model"] == "smol" and sent[0]["temperature"] == 0.0


def test_a_gap_inside_the_spread_is_no_clear_change():
    pair = BeforeAfter(Probe(), side([300, 330, 290, 310, 305]), side([315, 290, 325, 300, 310]))
    assert pair.verdict == compare.UNCLEAR


def test_a_gap_well_outside_the_spread_is_called_faster_or_slower():
    before = side([300, 305, 298, 302, 301])
    after = side([450, 455, 452, 449, 451])
    assert BeforeAfter(Probe(), before, after).verdict == compare.SLOWER
    assert BeforeAfter(Probe(), after, before).verdict == compare.FASTER
    message, params = BeforeAfter(Probe(), before, after).verdict_text()
    assert "Slower" in message and 45 < params["percent"] < 55


def test_different_workloads_are_never_compared():
    longer = Probe(max_tokens=64)
    pair = BeforeAfter(Probe(), side([300, 301, 302]), side([900, 901, 902], probe=longer))
    assert pair.verdict == compare.NOT_COMPARABLE
    assert pair.comparison is None


def test_a_burst_is_not_the_same_load_as_one_order_at_a_time():
    assert Probe(concurrency=8).key != Probe().key


def test_a_side_without_two_answers_is_not_measured():
    pair = BeforeAfter(Probe(), side([300.0]), side([301, 302]))
    assert pair.verdict == compare.NOT_MEASURED


def test_the_last_playground_order_becomes_the_probe_without_its_model_name():
    payload = {
        "model": "pika",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 32,
        "temperature": 0,
        "response_format": {"type": "json_object"},
    }
    probe = Probe.from_payload(payload)
    assert probe.source == "playground"
    assert Probe.from_payload({**payload, "model": "other"}).key == probe.key
    assert probe.payload("smol")["response_format"] == {"type": "json_object"}


def test_same_answer_is_told_only_at_temperature_zero():
    assert BeforeAfter(Probe(), side([1, 2], answer="a"), side([1, 2], answer="a")).same_answer is True
    assert BeforeAfter(Probe(), side([1, 2], answer="a"), side([1, 2], answer="b")).same_answer is False
    warm = Probe(temperature=0.7)
    pair = BeforeAfter(warm, side([1, 2], warm, "a"), side([1, 2], warm, "a"))
    assert pair.same_answer is None


def test_a_comparison_survives_the_history_as_json():
    pair = BeforeAfter(Probe(), side([300, 305, 298]), side([450, 455, 452]), {"model": "a"}, {"model": "b"})
    again = BeforeAfter.from_dict(pair.to_dict())
    assert again.verdict == pair.verdict == compare.SLOWER
    assert again.before_config == {"model": "a"}
