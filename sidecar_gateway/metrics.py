"""The gateway's Prometheus collector: reads aggregates and live state at scrape time.

Metric names, help texts, labels and buckets all come from gatewatch.catalog, so what the
dashboards and alert rules query is exactly what is exposed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gatewatch import catalog as c
from gatewatch.catalog import CIRCUIT_STATE_VALUES, MetricSpec
from sidecar_gateway import procstats
from sidecar_gateway.runtime import RouteRuntime
from sidecar_gateway.shipper import Shipper
from sidecar_gateway.telemetry import Histogram, TelemetryHub


def _counter(spec: MetricSpec) -> CounterMetricFamily:
    return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)


def _gauge(spec: MetricSpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def _histogram(spec: MetricSpec, series: dict[tuple[str, str], Histogram]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    for labels, hist in sorted(series.items()):
        fam.add_metric(list(labels), hist.cumulative(spec.buckets), hist.total)
    return fam


class GatewayCollector(Collector):
    def __init__(
        self,
        hub: TelemetryHub,
        routes: list[RouteRuntime],
        in_flight: Callable[[], int],
        memory_limit: int,
        shipper: Shipper | None = None,
    ) -> None:
        self.hub = hub
        self.routes = routes
        self.in_flight = in_flight
        self.memory_limit = memory_limit
        self.shipper = shipper

    def collect(self) -> Iterator[Metric]:
        self.hub.drain()  # a scrape sees every request completed before it
        agg = self.hub.agg

        fam = _counter(c.HTTP_REQUESTS)
        for (route, method, code), n in sorted(agg.requests.items()):
            fam.add_metric([route, method, str(code)], n)
        yield fam
        yield _histogram(c.HTTP_REQUEST_DURATION, agg.durations)
        fam = _counter(c.HTTP_REQUEST_ERRORS)
        for (route, reason), n in sorted(agg.errors.items()):
            fam.add_metric([route, reason], n)
        yield fam
        g = _gauge(c.ACTIVE_CONNECTIONS)
        g.add_metric([], self.in_flight())
        yield g

        now = time.monotonic()
        up = _gauge(c.BACKEND_UP)
        state = _gauge(c.CIRCUIT_BREAKER_STATE)
        for rt in self.routes:
            for b in rt.backends:
                up.add_metric([rt.name, b.label], 1.0 if b.up(now) else 0.0)
                state.add_metric([rt.name, b.label], CIRCUIT_STATE_VALUES[b.state(now)])
        yield up
        yield _histogram(c.BACKEND_RESPONSE_TIME, agg.backend_times)
        yield state

        g = _gauge(c.GATEWAY_MEMORY_LIMIT)
        g.add_metric([], self.memory_limit)
        yield g

        fam = _counter(c.TELEMETRY_EVENTS_DROPPED)
        for sink, n in sorted(agg.dropped.items()):
            fam.add_metric([sink], n)
        yield fam
        shipped = _counter(c.TELEMETRY_EVENTS_SHIPPED)
        failures = _counter(c.TELEMETRY_SHIP_FAILURES)
        depth = _gauge(c.TELEMETRY_QUEUE_DEPTH)
        stats = self.shipper.stats if self.shipper is not None else None
        shipped.add_metric([], stats.shipped if stats else 0)
        failures.add_metric([], stats.failures if stats else 0)
        depth.add_metric([], self.shipper.depth if self.shipper is not None else 0)
        yield shipped
        yield failures
        yield depth

        rx, tx = procstats.network_bytes()
        fam = _counter(c.PROCESS_NETWORK_BYTES)
        fam.add_metric(["receive"], rx)
        fam.add_metric(["transmit"], tx)
        yield fam
        read, written = procstats.disk_bytes()
        fam = _counter(c.PROCESS_DISK_BYTES)
        fam.add_metric(["read"], read)
        fam.add_metric(["write"], written)
        yield fam
