"""The percentile function used by every latency summary, checked against the standard library."""

from __future__ import annotations

import random
import statistics

import pytest

from dashboard.measure.loadgen import Summary, percentile

FIXED = [12.0, 3.5, 7.25, 99.0, 41.0, 41.0, 0.5, 18.0, 63.5, 27.0, 5.0]


def _stdlib_percentile(values: list[float], q: int) -> float:
    """statistics.quantiles with method="inclusive" is numpy's default linear interpolation."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[q - 1]


@pytest.mark.parametrize("q", [1, 10, 25, 50, 75, 90, 99])
def test_matches_statistics_quantiles_inclusive_on_fixed_data(q):
    assert percentile(FIXED, q) == pytest.approx(_stdlib_percentile(FIXED, q))


def test_matches_statistics_on_random_data():
    rng = random.Random(7)
    values = [rng.lognormvariate(3, 1) for _ in range(1001)]
    for q in (50, 90, 99):
        assert percentile(values, q) == pytest.approx(_stdlib_percentile(values, q))


def test_median_equals_statistics_median():
    assert percentile(FIXED, 50) == statistics.median(FIXED)
    assert percentile(FIXED[:10], 50) == statistics.median(FIXED[:10])


def test_known_values_numpy_linear():
    # numpy.percentile([1, 2, 3, 4], [0, 25, 90, 100]) == [1.0, 1.75, 3.7, 4.0]
    assert percentile([4, 1, 3, 2], 0) == 1.0
    assert percentile([4, 1, 3, 2], 25) == pytest.approx(1.75)
    assert percentile([4, 1, 3, 2], 90) == pytest.approx(3.7)
    assert percentile([4, 1, 3, 2], 100) == 4.0


def test_single_value_and_empty():
    assert percentile([42.0], 99) == 42.0
    assert percentile([], 50) is None


def test_q_outside_0_100_is_refused():
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_of_values():
    summary = Summary.of([10.0, 20.0, 30.0, 40.0])
    assert summary.n == 4
    assert summary.mean == 25.0
    assert summary.p50 == 25.0
    assert summary.min == 10.0 and summary.max == 40.0
    assert Summary.of([]).n == 0 and Summary.of([]).p50 is None
