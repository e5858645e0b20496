"""Reading /metrics text: samples, labels, histograms, and deltas between two scrapes."""

from __future__ import annotations

import math

import pytest

from dashboard.measure import metrics
from dashboard.measure.metrics import MetricsParseError, MetricsSnapshot, bucket_quantile, parse, parse_line

LABELS = 'engine="0",model_name="m"'


def _histogram_text(
    name: str, buckets: dict[str, float], total: float, count: float, labels: str = LABELS
) -> str:
    lines = [f"# TYPE {name} histogram"]
    for bound, value in buckets.items():
        lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {value}')
    lines.append(f"{name}_count{{{labels}}} {count}")
    lines.append(f"{name}_sum{{{labels}}} {total}")
    return "\n".join(lines) + "\n"


GAUGES = f"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{{LABELS}}} 3.0
vllm:num_requests_waiting{{{LABELS}}} 5.0
vllm:kv_cache_usage_perc{{{LABELS}}} 0.25
vllm:prefix_cache_queries_total{{{LABELS}}} 1720.0
vllm:prefix_cache_hits_total{{{LABELS}}} 1152.0
vllm:cache_config_info{{block_size="128",kv_cache_dtype_skip_layers="[]",\
kv_cache_size_tokens="46592",engine="0"}} 1.0
"""


def test_parses_name_labels_and_value():
    sample = parse_line('vllm:num_requests_running{engine="0",model_name="a/b"} 3.0')
    assert sample is not None
    assert sample.name == "vllm:num_requests_running"
    assert sample.labels == {"engine": "0", "model_name": "a/b"}
    assert sample.value == 3.0


def test_parses_samples_without_labels_and_with_timestamps():
    assert parse_line("process_open_fds 17") == metrics.Sample("process_open_fds", {}, 17.0)
    assert parse_line("up 1 1712345678000").value == 1.0


def test_label_values_may_hold_commas_braces_escaped_quotes_and_newlines():
    sample = parse_line(r'x{a="[1, 2]",b="say \"hi\"",c="{}",d="l1\nl2",e="back\\slash"} 2')
    assert sample.labels == {"a": "[1, 2]", "b": 'say "hi"', "c": "{}", "d": "l1\nl2", "e": "back\\slash"}


def test_special_values():
    assert parse_line('b{le="+Inf"} +Inf').value == math.inf
    assert math.isnan(parse_line("x NaN").value)
    assert parse_line("x -Inf").value == -math.inf
    assert parse_line("x 1.5e+09").value == 1.5e9


def test_comments_and_blank_lines_are_skipped():
    assert parse("# HELP x help\n\n# TYPE x gauge\nx 1\n") == [metrics.Sample("x", {}, 1.0)]


@pytest.mark.parametrize("bad", ["x", 'x{a="1" 2', "x{a=1} 2", "x notanumber"])
def test_garbage_raises_a_parse_error(bad):
    with pytest.raises(MetricsParseError):
        parse(bad)


def test_gauges_counters_and_cache_config():
    snap = MetricsSnapshot.from_text(GAUGES)
    assert snap.requests_running() == 3.0
    assert snap.requests_waiting() == 5.0
    assert snap.kv_cache_usage() == 0.25
    assert snap.prefix_cache_hit_rate() == pytest.approx(1152 / 1720)
    assert snap.kv_cache_tokens() == 46592
    assert snap.block_size() == 128
    assert snap.types["vllm:num_requests_running"] == "gauge"


def test_missing_metrics_answer_none():
    snap = MetricsSnapshot.from_text("x 1\n")
    assert snap.requests_running() is None
    assert snap.kv_cache_usage() is None
    assert snap.prefix_cache_hit_rate() is None
    assert snap.histogram(metrics.TTFT) is None
    assert snap.kv_cache_tokens() is None


def test_values_of_several_engines_add_up():
    text = 'vllm:num_requests_running{engine="0"} 2\nvllm:num_requests_running{engine="1"} 3\n'
    assert MetricsSnapshot.from_text(text).requests_running() == 5


def test_histogram_reads_buckets_sum_and_count():
    text = _histogram_text(metrics.TTFT, {"0.1": 1, "0.5": 3, "+Inf": 4}, total=2.0, count=4)
    hist = MetricsSnapshot.from_text(text).histogram(metrics.TTFT)
    assert hist.buckets == ((0.1, 1.0), (0.5, 3.0), (math.inf, 4.0))
    assert hist.count == 4 and hist.sum == 2.0
    assert hist.mean() == 0.5


def test_histogram_delta_covers_only_the_requests_in_between():
    before = MetricsSnapshot.from_text(_histogram_text(metrics.E2E, {"1.0": 2, "2.0": 3, "+Inf": 3}, 3.0, 3))
    after = MetricsSnapshot.from_text(_histogram_text(metrics.E2E, {"1.0": 2, "2.0": 6, "+Inf": 7}, 12.0, 7))
    delta = metrics.histogram_delta(before, after, metrics.E2E)
    assert delta.count == 4
    assert delta.sum == 9.0
    assert delta.mean_ms() == 2250.0
    assert delta.buckets == ((1.0, 0.0), (2.0, 3.0), (math.inf, 4.0))


def test_histogram_delta_after_a_restart_uses_the_new_counts():
    before = MetricsSnapshot.from_text(_histogram_text(metrics.E2E, {"1.0": 9, "+Inf": 9}, 5.0, 9))
    after = MetricsSnapshot.from_text(_histogram_text(metrics.E2E, {"1.0": 1, "+Inf": 1}, 0.4, 1))
    delta = metrics.histogram_delta(before, after, metrics.E2E)
    assert (delta.count, delta.sum) == (1, 0.4)


def test_latency_deltas_include_every_histogram_present():
    text = "".join(
        _histogram_text(name, {"1.0": 1, "+Inf": 1}, 0.5, 1) for name in metrics.LATENCY_HISTOGRAMS
    )
    empty = MetricsSnapshot.from_text("")
    deltas = metrics.latency_deltas(empty, MetricsSnapshot.from_text(text))
    assert set(deltas) == set(metrics.LATENCY_HISTOGRAMS)
    assert all(d.mean() == 0.5 for d in deltas.values())


def test_prefix_hit_rate_between_two_scrapes():
    before = MetricsSnapshot.from_text(
        "vllm:prefix_cache_hits_total 100\nvllm:prefix_cache_queries_total 400\n"
    )
    after = MetricsSnapshot.from_text(
        "vllm:prefix_cache_hits_total 400\nvllm:prefix_cache_queries_total 800\n"
    )
    assert metrics.prefix_hit_rate_between(before, after) == 0.75


def test_bucket_quantile_interpolates_inside_the_bucket():
    buckets = [(0.1, 0), (0.2, 10), (math.inf, 10)]
    assert bucket_quantile(buckets, 0.5) == pytest.approx(0.15)
    assert bucket_quantile(buckets, 1.0) == pytest.approx(0.2)


def test_bucket_quantile_first_bucket_starts_at_zero():
    assert bucket_quantile([(1.0, 4), (math.inf, 4)], 0.5) == pytest.approx(0.5)


def test_bucket_quantile_in_the_inf_bucket_answers_the_highest_finite_bound():
    assert bucket_quantile([(1.0, 1), (2.0, 1), (math.inf, 5)], 0.9) == 2.0


def test_bucket_quantile_without_observations_is_none():
    assert bucket_quantile([(1.0, 0), (math.inf, 0)], 0.5) is None
    assert bucket_quantile([], 0.5) is None


def test_bucket_quantile_rejects_q_outside_0_1():
    with pytest.raises(ValueError):
        bucket_quantile([(1.0, 1)], 1.5)


def test_parses_a_real_vllm_exposition_shape():
    text = (
        "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
        "# TYPE vllm:time_to_first_token_seconds histogram\n"
        + "".join(
            f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="{b}",model_name="m"}} {c}\n'
            for b, c in [("0.001", 0.0), ("2.5", 2.0), ("20.0", 3.0), ("+Inf", 3.0)]
        )
        + 'vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 3.0\n'
        + 'vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 13.139525175094604\n'
        + 'vllm:time_to_first_token_seconds_created{engine="0",model_name="m"} 1.7955101406639633e+09\n'
    )
    hist = MetricsSnapshot.from_text(text).histogram(metrics.TTFT)
    assert hist.count == 3
    assert hist.mean() == pytest.approx(13.139525175094604 / 3)
