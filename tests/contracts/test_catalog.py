"""The metric catalog: names follow Prometheus conventions and are defined once."""

from __future__ import annotations

import pytest

from gatewatch.catalog import CATALOG, LATENCY_BUCKETS, Catalog, MetricSpec, MetricType


def test_seed_metric_names_are_present() -> None:
    for name in (
        "http_requests_total",
        "http_request_duration_seconds",
        "http_requests_errors_total",
        "active_connections",
        "backend_up",
        "backend_response_time_seconds",
        "circuit_breaker_state",
    ):
        assert CATALOG[name].name == name


def test_naming_conventions() -> None:
    for spec in CATALOG.metrics:
        if spec.type is MetricType.COUNTER:
            assert spec.name.endswith("_total"), spec.name
        else:
            assert not spec.name.endswith("_total"), spec.name
        if spec.type is MetricType.HISTOGRAM:
            assert spec.buckets == tuple(sorted(spec.buckets)) and spec.buckets, spec.name
            assert spec.name.endswith("_seconds"), spec.name
        assert ("le" not in spec.labels and "quantile" not in spec.labels) or spec.type is MetricType.GAUGE
        assert "path" not in spec.labels, "raw paths are unbounded; use the route name"


def test_series_lookup_and_labels() -> None:
    assert (
        CATALOG.spec_for_series("http_request_duration_seconds_bucket")
        is CATALOG["http_request_duration_seconds"]
    )
    assert CATALOG.allowed_labels("http_request_duration_seconds_bucket") == {
        "route", "method", "le", "instance", "job"
    }  # fmt: skip
    assert CATALOG.spec_for_series("http_requests") is None
    assert 1.0 in LATENCY_BUCKETS and 0.1 in LATENCY_BUCKETS


def test_duplicate_series_is_refused() -> None:
    a = MetricSpec("x_seconds", MetricType.HISTOGRAM, "a", buckets=(1.0,))
    b = MetricSpec("x_seconds_count", MetricType.GAUGE, "b")
    with pytest.raises(ValueError, match="defined twice"):
        Catalog((a, b))
