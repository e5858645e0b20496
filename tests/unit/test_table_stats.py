"""Interval and noise rules of the table (made-up figures), including the six rows a first table run
got wrong: noise presented as findings."""

from __future__ import annotations

import math
import random

import pytest

from dashboard.engine.config import default_config
from dashboard.measure import stats, table
from dashboard.measure.table import Measured, TableRow, decide


def jitter(centre: float, n: int, spread: float = 0.08, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [centre * math.exp(rng.gauss(0, spread)) for _ in range(n)]


def measured(value, workload: str, metric: str, figures: list[float], **extra) -> Measured:
    samples = {workload: {metric: figures, "e2e_ms": figures}}
    return Measured(config={}, value=value, ok=True, samples=samples, **extra)


def row_for(flag: str, first: Measured, second: Measured, noise: stats.Noise) -> TableRow:
    planned = table.plan_row(flag, "cpu")
    row = TableRow(
        flag,
        planned.kind,
        planned.metric,
        planned.workload.name if planned.workload else None,
        list(planned.values),
        effect=stats.UNCLEAR,
        noise=noise,
        measured=[first, second],
        also=planned.also,
    )
    decide(row)
    return row


NOISE_30 = stats.noise_from(stats.compare(jitter(1000, 6, 0.2, 1), jitter(1000, 6, 0.2, 2)))


# ---------------------------------------------------------------------------------------------- intervals


def test_ratio_is_second_over_first_and_the_interval_contains_it():
    comparison = stats.compare([100, 110, 90, 105], [200, 190, 210, 205])
    assert comparison.ratio == pytest.approx(2.0, rel=0.05)
    assert comparison.low < comparison.ratio < comparison.high
    assert comparison.n == 4


def test_one_order_per_value_gives_a_ratio_but_no_interval():
    comparison = stats.compare([1040.0], [1740.0])
    assert comparison.ratio == pytest.approx(1740 / 1040)
    assert not comparison.has_interval and comparison.low is None
    assert stats.effect_of(comparison, stats.noise_from(None)) == stats.UNCLEAR


def test_more_orders_narrow_the_interval():
    few = stats.compare(jitter(100, 3, seed=3), jitter(100, 3, seed=4))
    many = stats.compare(jitter(100, 30, seed=3), jitter(100, 30, seed=4))
    assert many.half_width < few.half_width


def test_identical_figures_give_a_point_interval():
    comparison = stats.compare([5, 5, 5], [10, 10, 10])
    assert comparison.low == comparison.high == pytest.approx(2.0)


def test_failed_orders_and_non_positive_figures_are_left_out():
    comparison = stats.compare([None, 100, 100, 0], [200, 200])
    assert comparison.n_first == 2 and comparison.ratio == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------- noise


def test_noise_band_is_the_aa_difference_plus_one_standard_error():
    aa = stats.Comparison(ratio=1.1, low=0.9, high=1.3, n_first=5, n_second=5, se=0.05)
    noise = stats.noise_from(aa)
    assert noise.measured and noise.percent == pytest.approx((1.1 * math.exp(0.05) - 1) * 100)


def test_few_orders_in_the_aa_pair_do_not_blow_the_band_up():
    aa = stats.compare([3815, 4145, 8295], [10521, 7232, 5303])  # a busy machine, three orders a start
    assert aa.high > 3.5  # its 95% interval is very wide (t quantile 4.3)...
    noise = stats.noise_from(aa)
    assert 40 < noise.percent < 100  # ...but the band is the drift it showed, plus one standard error
    caching = stats.compare([29429, 29773, 36630], [5816, 6275, 9130])
    assert stats.effect_of(caching, noise) == stats.FASTER


def test_a_lucky_aa_pair_still_gets_the_noise_floor():
    aa = stats.Comparison(ratio=1.0, low=0.99, high=1.01, n_first=5, n_second=5, se=0.005)
    assert stats.noise_from(aa).percent == pytest.approx(stats.NOISE_FLOOR * 100)


def test_without_an_aa_pair_the_noise_is_assumed_large():
    noise = stats.noise_from(None)
    assert not noise.measured and noise.percent == pytest.approx(stats.UNKNOWN_NOISE * 100)


def test_an_effect_inside_the_noise_band_is_unclear_even_with_a_tight_interval():
    comparison = stats.Comparison(ratio=0.85, low=0.82, high=0.88, n_first=20, n_second=20)
    assert stats.effect_of(comparison, stats.noise_from(None)) == stats.UNCLEAR  # ±30%
    quiet = stats.noise_from(stats.Comparison(1.0, 0.97, 1.04, 20, 20))  # ±5%
    assert stats.effect_of(comparison, quiet) == stats.FASTER


def test_an_interval_that_crosses_the_noise_edge_is_unclear():
    noise = stats.noise_from(stats.Comparison(1.0, 0.9, 1.1, 5, 5))  # about ±11%
    comparison = stats.Comparison(ratio=1.3, low=1.05, high=1.6, n_first=5, n_second=5)
    assert stats.effect_of(comparison, noise) == stats.UNCLEAR
    assert stats.effect_of(stats.Comparison(1.3, 1.2, 1.4, 5, 5), noise) == stats.SLOWER


def test_settled_when_clear_or_wholly_inside_the_noise_or_narrow():
    noise = stats.noise_from(stats.Comparison(1.0, 0.9, 1.1, 5, 5))
    assert stats.settled(stats.Comparison(0.5, 0.4, 0.6, 3, 3), noise)  # clear effect
    assert stats.settled(stats.Comparison(1.0, 0.95, 1.05, 3, 3), noise)  # inside the noise
    assert not stats.settled(stats.Comparison(1.2, 0.95, 1.5, 3, 3), noise)  # could go either way
    assert not stats.settled(stats.Comparison(1.2, None, None, 1, 1), noise)


def test_precise_enough_needs_a_few_steady_orders():
    assert not stats.precise_enough([100.0])
    assert not stats.precise_enough([50, 150, 90])
    assert stats.precise_enough([100, 101, 99, 100, 102])


# ---------------------------------------------------------------------------------------------- the six rows


def test_trust_remote_code_is_not_a_speed_setting_whatever_the_figures():
    row = row_for(
        "trust_remote_code",
        measured(False, "short", "e2e_ms", [1420.0]),
        measured(True, "short", "e2e_ms", [1150.0]),
        NOISE_30,
    )
    assert row.effect == stats.NOT_A_SPEED_SETTING
    assert table.plan_row("trust_remote_code", "cpu").values == ()  # the table never turns it on
    text = row.verdict("en")
    assert text.startswith("Not a speed setting") and "faster" not in text
    assert "risks" in text


def test_host_is_not_a_speed_setting_and_is_never_opened():
    row = row_for(
        "host",
        measured("127.0.0.1", "short", "e2e_ms", [1180.0]),
        measured("0.0.0.0", "short", "e2e_ms", [1560.0]),
        NOISE_30,
    )
    assert row.effect == stats.NOT_A_SPEED_SETTING
    assert not table.plan_row("host", "cpu").measured
    assert "slower" not in row.verdict("en") and "loopback" in row.verdict("en")


def test_prefix_caching_is_judged_on_the_first_token_of_a_repeated_long_prompt():
    planned = table.plan_row("enable_prefix_caching", "cpu")
    assert planned.metric == "ttft_ms" and planned.workload.repeat_prompt
    assert planned.workload.input_tokens >= 1000
    row = row_for(
        "enable_prefix_caching",
        measured(False, "repeated_long_prompt", "ttft_ms", jitter(374, 5, seed=5)),
        measured(True, "repeated_long_prompt", "ttft_ms", jitter(86, 5, seed=6)),
        NOISE_30,
    )
    assert row.effect == stats.FASTER
    assert row.comparison.ratio == pytest.approx(86 / 374, rel=0.15)
    assert row.verdict("en").startswith("Faster: the first token took 4.")
    assert "5 orders each" in row.verdict("en")


def test_lanes_need_more_orders_at_once_than_the_smaller_value_and_one_order_proves_nothing():
    planned = table.plan_row("max_num_seqs", "cpu")
    assert planned.workload.concurrency > min(planned.values)
    row = row_for(
        "max_num_seqs",
        measured(4, "many_at_once", "e2e_ms", [1040.0]),
        measured(64, "many_at_once", "e2e_ms", [1740.0]),
        NOISE_30,
    )
    assert row.effect == stats.UNCLEAR
    assert row.verdict("en").startswith("No clear change (noise here ±")


def test_forklift_prompts_are_longer_than_the_smaller_value():
    planned = table.plan_row("max_num_batched_tokens", "cpu")
    assert planned.workload.input_tokens > min(planned.values)
    row = row_for(
        "max_num_batched_tokens",
        measured(512, "long_prompts", "ttft_ms", [1460.0]),
        measured(4096, "long_prompts", "ttft_ms", [1180.0]),
        NOISE_30,
    )
    assert row.effect == stats.UNCLEAR


def test_eager_mode_is_compared_per_token_and_mentions_the_start_time():
    planned = table.plan_row("enforce_eager", "cpu")
    assert planned.metric == "tpot_ms" and "ready_s" in planned.also
    first = measured(True, "short", "tpot_ms", jitter(30, 5, seed=7), ready_s=36.0)
    second = measured(False, "short", "tpot_ms", jitter(26, 5, seed=8), ready_s=109.0)
    row = row_for("enforce_eager", first, second, NOISE_30)
    assert row.effect == stats.UNCLEAR  # about 1.15x per token is inside ±30% noise
    text = row.verdict("en")
    assert "Start: 36 s with on, 109 s with off." in text


def test_verdicts_exist_in_both_languages_without_english_left_in_vietnamese():
    row = row_for(
        "enable_prefix_caching",
        measured(False, "repeated_long_prompt", "ttft_ms", jitter(374, 5, seed=5)),
        measured(True, "repeated_long_prompt", "ttft_ms", jitter(86, 5, seed=6)),
        NOISE_30,
    )
    vi = row.verdict("vi")
    assert vi != row.verdict("en") and "Faster" not in vi and "first token" not in vi


# ---------------------------------------------------------------------------------------------- the catalog


def test_effects_catalog_is_sound():
    assert table.catalog_problems() == []


def test_plan_never_turns_on_the_settings_that_are_not_speed_settings():
    plan = table.table_plan(default_config("cpu"), "cpu")
    measured_flags = {row.flag for row in plan.measured_rows}
    assert "trust_remote_code" not in measured_flags and "host" not in measured_flags
    assert {row.flag for row in plan.rows} >= {"trust_remote_code", "host", "enable_prefix_caching"}
    assert plan.starts == 2 + 2 * len(plan.measured_rows)


def test_gpu_only_flags_are_not_measured_on_cpu():
    assert table.plan_row("kv_cache_dtype", "cpu").kind == stats.NOT_MEASURED_HERE
    assert table.plan_row("kv_cache_dtype", "cuda").measured


def test_one_order_per_value_is_refused_before_anything_starts():
    with pytest.raises(ValueError):
        table.table_plan(default_config("cpu"), "cpu", orders=1)


def test_the_table_measures_on_loopback_even_when_the_factory_door_is_open():
    shared = default_config("cpu").with_values({"host": "0.0.0.0", "api_key": "k"})
    assert table.table_plan(shared, "cpu").base.get("host") == "127.0.0.1"
