"""The quantile sketch: relative accuracy against exact rank quantiles, exact merges."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.sketch import QuantileSketch

ACCURACY = 0.005
# Latencies in seconds from 1 ns to an hour, plus exact zeros (a 0 ns request is possible).
latency = st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=3600.0, allow_nan=False))
quantile = st.floats(min_value=0.0, max_value=1.0)


def exact_quantile(values: list[float], q: float) -> float:
    """The rank definition the sketch documents: 0-based rank floor(q * (n - 1)), no interpolation."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def within_bound(estimate: float | None, exact: float, accuracy: float = ACCURACY) -> bool:
    assert estimate is not None
    # 1e-12 absorbs floating-point rounding of the bucket key at an exact bucket boundary.
    return abs(estimate - exact) <= exact * (accuracy + 1e-12)


def sketch_of(values: list[float], accuracy: float = ACCURACY) -> QuantileSketch:
    s = QuantileSketch(accuracy)
    s.add_many(values)
    return s


@settings(max_examples=300)
@given(st.lists(latency, min_size=1, max_size=400), st.lists(quantile, min_size=1, max_size=5))
def test_quantiles_are_within_the_relative_accuracy_of_the_exact_rank_value(
    values: list[float], qs: list[float]
) -> None:
    s = sketch_of(values)
    for q, got in zip(qs, s.quantiles(qs), strict=True):
        assert within_bound(got, exact_quantile(values, q)), (q, got, exact_quantile(values, q))


@given(st.lists(latency, max_size=200), st.lists(latency, max_size=200))
def test_merge_equals_the_sketch_of_the_concatenation(a: list[float], b: list[float]) -> None:
    merged = sketch_of(a)
    merged.merge(sketch_of(b))
    whole = sketch_of(a + b)
    assert dict(merged.bins) == dict(whole.bins)
    assert (merged.count, merged.zero_count) == (whole.count, whole.zero_count)
    assert (merged.min, merged.max) == (whole.min, whole.max)
    assert merged.sum == pytest.approx(whole.sum)
    assert merged.quantiles([0.5, 0.95, 0.99]) == whole.quantiles([0.5, 0.95, 0.99])


@given(st.floats(min_value=0.0001, max_value=0.2), st.lists(latency, min_size=1, max_size=100))
def test_any_accuracy_holds_its_bound(accuracy: float, values: list[float]) -> None:
    s = sketch_of(values, accuracy)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        assert within_bound(s.quantile(q), exact_quantile(values, q), accuracy)


def test_large_lognormal_sample_p50_p95_p99_within_one_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(0.05), 1.2) for _ in range(100_000)]
    s = sketch_of(values)
    for q in (0.5, 0.95, 0.99):
        exact = exact_quantile(values, q)
        got = s.quantile(q)
        assert got is not None
        assert abs(got - exact) / exact <= 0.01
    # Compact: a few hundred buckets, not one per value.
    assert len(s.bins) < 2000


def test_zeros_min_max_and_empty() -> None:
    s = QuantileSketch()
    assert s.quantile(0.5) is None
    s.add_many([0.0, 0.0, 0.0, 2.0])
    assert s.quantile(0.5) == 0.0  # rank floor(0.5 * 3) = 1 is a zero
    assert s.quantile(1.0) == 2.0  # clamped to the observed max: exact
    assert s.quantile(0.0) == 0.0
    assert s.zero_count == 3 and s.count == 4


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
def test_rejects_values_that_are_not_latencies(bad: float) -> None:
    s = QuantileSketch()
    with pytest.raises(ValueError, match="finite values >= 0"):
        s.add_many([1.0, bad])
    assert s.count == 1  # the value before the bad one stays counted, consistently
    assert sum(s.bins.values()) == 1


def test_rejects_merging_different_accuracies_and_bad_quantiles() -> None:
    with pytest.raises(ValueError, match="different relative accuracy"):
        QuantileSketch(0.01).merge(QuantileSketch(0.02))
    with pytest.raises(ValueError, match=r"quantile must be in \[0, 1\]"):
        QuantileSketch().quantile(1.5)
    with pytest.raises(ValueError, match="relative_accuracy"):
        QuantileSketch(0.0)


def test_copy_is_independent() -> None:
    s = sketch_of([0.1, 0.2])
    c = s.copy()
    c.add(5.0)
    assert s.count == 2 and c.count == 3
    assert s.max == 0.2
