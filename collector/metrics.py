"""The collector's ``/metrics``: the window figures, read at scrape time, named by the catalog.

A custom prometheus_client collector computes the families from the windows on each scrape (the
same :func:`collector.stats.figures` the JSON API uses), so there is no second copy of the
numbers to keep in sync. Every app gets its own ``CollectorRegistry``; nothing is global, so
tests can build as many apps as they like.

Series: route-level figures carry ``backend=""``; (route, backend) figures carry the backend.
A window without traffic reports 0 requests, 0 rate and a 0 error ratio (never NaN), and no
latency series (there is no latency to report).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.stats import QUANTILES, Figures, figures
from collector.windows import WINDOW_NAMES, SlidingWindows
from gatewatch.catalog import (
    CIRCUIT_STATE_VALUES,
    COLLECTOR_CIRCUIT_STATE,
    COLLECTOR_EVENTS_INGESTED,
    COLLECTOR_EVENTS_REFUSED,
    COLLECTOR_EVENTS_REJECTED,
    COLLECTOR_ROUTE_ERROR_RATIO,
    COLLECTOR_ROUTE_LATENCY,
    COLLECTOR_ROUTE_REQUESTS,
    COLLECTOR_ROUTE_RPS,
    REFUSAL_REASONS,
    MetricSpec,
)


@dataclass(slots=True)
class IngestCounters:
    """Lifetime ingest counts (the ``_total`` counters)."""

    ingested: int = 0
    rejected: int = 0  # lines that are not valid events
    refused: Counter[str] = field(default_factory=Counter)  # valid events over a limit, by reason


def _gauge(spec: MetricSpec, labels: tuple[str, ...] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.help, labels=list(labels or spec.labels))


def _counter(spec: MetricSpec, value: int, created: float) -> CounterMetricFamily:
    return CounterMetricFamily(spec.base_name, spec.help, value=value, created=created)


class WindowMetrics(Collector):
    def __init__(self, windows: SlidingWindows, counters: IngestCounters) -> None:
        self._windows = windows
        self._counters = counters

    def describe(self) -> Iterable[Metric]:
        # Declared without samples so registering does not compute the windows.
        return [
            _gauge(COLLECTOR_ROUTE_REQUESTS),
            _gauge(COLLECTOR_ROUTE_RPS),
            _gauge(COLLECTOR_ROUTE_ERROR_RATIO),
            _gauge(COLLECTOR_ROUTE_LATENCY),
            _gauge(COLLECTOR_CIRCUIT_STATE),
            CounterMetricFamily(COLLECTOR_EVENTS_INGESTED.base_name, COLLECTOR_EVENTS_INGESTED.help),
            CounterMetricFamily(COLLECTOR_EVENTS_REJECTED.base_name, COLLECTOR_EVENTS_REJECTED.help),
            CounterMetricFamily(
                COLLECTOR_EVENTS_REFUSED.base_name, COLLECTOR_EVENTS_REFUSED.help, labels=["reason"]
            ),
        ]

    def collect(self) -> Iterable[Metric]:
        requests = _gauge(COLLECTOR_ROUTE_REQUESTS)
        rps = _gauge(COLLECTOR_ROUTE_RPS)
        error_ratio = _gauge(COLLECTOR_ROUTE_ERROR_RATIO)
        latency = _gauge(COLLECTOR_ROUTE_LATENCY)
        circuit = _gauge(COLLECTOR_CIRCUIT_STATE)

        def emit(route: str, backend: str, window: str, f: Figures) -> None:
            labels = [route, backend, window]
            requests.add_metric(labels, f.requests)
            rps.add_metric(labels, f.rps)
            error_ratio.add_metric(labels, f.error_rate)
            for q, value in zip(QUANTILES, (f.p50, f.p95, f.p99), strict=True):
                if value is not None:
                    latency.add_metric([*labels, str(q)], value)

        for window in WINDOW_NAMES:
            snap = self._windows.snapshot(window)
            for route, rs in snap.routes.items():
                emit(route, "", window, figures(rs.total, snap))
                for backend, agg in rs.backends.items():
                    emit(route, backend, window, figures(agg, snap))
        for (route, backend), state in sorted(self._windows.circuit_states().items()):
            circuit.add_metric([route, backend], CIRCUIT_STATE_VALUES[state])

        started = self._windows.started_at
        yield from (requests, rps, error_ratio, latency, circuit)
        yield _counter(COLLECTOR_EVENTS_INGESTED, self._counters.ingested, started)
        yield _counter(COLLECTOR_EVENTS_REJECTED, self._counters.rejected, started)
        refused = CounterMetricFamily(
            COLLECTOR_EVENTS_REFUSED.base_name, COLLECTOR_EVENTS_REFUSED.help, labels=["reason"]
        )
        for reason in REFUSAL_REASONS:  # every reason from the start, so rate() sees the first one
            refused.add_metric([reason], self._counters.refused[reason], created=started)
        yield refused


def build_registry(windows: SlidingWindows, counters: IngestCounters) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(WindowMetrics(windows, counters))
    ProcessCollector(registry=registry)  # process_* series of the catalog's PROCESS emitter
    return registry
