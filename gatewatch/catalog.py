"""The metric catalog: every metric Gatewatch emits or queries, defined once.

The sidecar registers its metrics from this catalog, the collector exposes its figures from it,
and the dashboard and alert-rule generators take every metric name and label from it. A test
parses every generated PromQL expression and fails when it names a metric or label not defined
here, so a rename cannot silently break a dashboard or an alert.

Label values are bounded by construction: ``route`` is the configured route *name* (unknown
paths are ``"unmatched"``), ``backend`` is a configured upstream target, ``code`` is the numeric
status code. ``instance`` and ``job`` are added by Prometheus at scrape time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class MetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class Emitter(StrEnum):
    GATEWAY = "gateway"  # the sidecar's admin /metrics
    COLLECTOR = "collector"  # the collector's /metrics
    PROCESS = "process"  # prometheus_client's process collector (both processes)
    PROMETHEUS = "prometheus"  # synthesised by Prometheus itself (``up``)


UNMATCHED_ROUTE = "unmatched"

# Latency buckets (seconds). Dense below 1s where gateway SLO thresholds live; every SLO latency
# threshold must be one of these boundaries, so the bucket counter answers it exactly.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
    0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


@dataclass(frozen=True)
class MetricSpec:
    name: str  # full exposition name; counters end in _total, durations in _seconds
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    emitter: Emitter = Emitter.GATEWAY

    @property
    def base_name(self) -> str:
        """Name as passed to prometheus_client (counters without the ``_total`` suffix)."""
        if self.type is MetricType.COUNTER and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name

    def series_names(self) -> tuple[str, ...]:
        """Every series name this metric produces in the exposition format."""
        if self.type is MetricType.HISTOGRAM:
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        if self.type is MetricType.COUNTER:
            return (self.name, f"{self.base_name}_created")
        return (self.name,)

    def series_labels(self, series: str) -> tuple[str, ...]:
        return (*self.labels, "le") if series.endswith("_bucket") else self.labels


@dataclass(frozen=True)
class Catalog:
    metrics: tuple[MetricSpec, ...]
    scrape_labels: tuple[str, ...] = ("instance", "job")
    _by_series: dict[str, MetricSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for spec in self.metrics:
            for series in spec.series_names():
                if series in self._by_series:
                    raise ValueError(f"metric series {series!r} is defined twice in the catalog")
                self._by_series[series] = spec

    def __getitem__(self, name: str) -> MetricSpec:
        for spec in self.metrics:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def spec_for_series(self, series: str) -> MetricSpec | None:
        return self._by_series.get(series)

    def emitted_by(self, emitter: Emitter) -> tuple[MetricSpec, ...]:
        return tuple(m for m in self.metrics if m.emitter is emitter)

    def allowed_labels(self, series: str) -> frozenset[str]:
        spec = self._by_series[series]
        return frozenset((*spec.series_labels(series), *self.scrape_labels))


# ---- the sidecar gateway ---------------------------------------------------------------------
HTTP_REQUESTS = MetricSpec(
    "http_requests_total", MetricType.COUNTER,
    "Requests answered by the gateway, by route name, method and status code.",
    ("route", "method", "code"),
)  # fmt: skip
HTTP_REQUEST_DURATION = MetricSpec(
    "http_request_duration_seconds", MetricType.HISTOGRAM,
    "Time from request received to response completed at the gateway.",
    ("route", "method"), LATENCY_BUCKETS,
)  # fmt: skip
HTTP_REQUEST_ERRORS = MetricSpec(
    "http_requests_errors_total", MetricType.COUNTER,
    "Requests that failed: upstream 5xx, or a gateway error such as refused or timed-out upstream.",
    ("route", "reason"),
)  # fmt: skip
ACTIVE_CONNECTIONS = MetricSpec(
    "active_connections", MetricType.GAUGE,
    "Requests currently in flight through the gateway.",
)  # fmt: skip
BACKEND_UP = MetricSpec(
    "backend_up", MetricType.GAUGE,
    "1 when the gateway considers the upstream target usable, 0 when it does not.",
    ("route", "backend"),
)  # fmt: skip
BACKEND_RESPONSE_TIME = MetricSpec(
    "backend_response_time_seconds", MetricType.HISTOGRAM,
    "Time from forwarding a request to an upstream target until its response headers arrived.",
    ("route", "backend"), LATENCY_BUCKETS,
)  # fmt: skip
CIRCUIT_BREAKER_STATE = MetricSpec(
    "circuit_breaker_state", MetricType.GAUGE,
    "Circuit breaker per upstream target: 0 closed, 1 open, 2 half-open.",
    ("route", "backend"),
)  # fmt: skip
GATEWAY_MEMORY_LIMIT = MetricSpec(
    "gateway_memory_limit_bytes", MetricType.GAUGE,
    "Memory the gateway process may use (configured, else the cgroup limit, else physical memory).",
)  # fmt: skip
TELEMETRY_EVENTS_DROPPED = MetricSpec(
    "gateway_telemetry_events_dropped_total", MetricType.COUNTER,
    "Telemetry records dropped because a bounded queue was full (the request is never delayed).",
    ("sink",),
)  # fmt: skip
TELEMETRY_EVENTS_SHIPPED = MetricSpec(
    "gateway_telemetry_events_shipped_total", MetricType.COUNTER,
    "Access events accepted by the collector.",
)  # fmt: skip
TELEMETRY_SHIP_FAILURES = MetricSpec(
    "gateway_telemetry_ship_failures_total", MetricType.COUNTER,
    "Event batches the collector did not accept (they are kept and retried).",
)  # fmt: skip
TELEMETRY_QUEUE_DEPTH = MetricSpec(
    "gateway_telemetry_queue_depth", MetricType.GAUGE,
    "Access events waiting to be shipped to the collector.",
)  # fmt: skip

# ---- the process (prometheus_client's process collector, both services) -----------------------
PROCESS_CPU = MetricSpec(
    "process_cpu_seconds_total", MetricType.COUNTER,
    "User and system CPU time of the process.", emitter=Emitter.PROCESS,
)  # fmt: skip
PROCESS_RSS = MetricSpec(
    "process_resident_memory_bytes", MetricType.GAUGE,
    "Resident memory of the process.", emitter=Emitter.PROCESS,
)  # fmt: skip
PROCESS_OPEN_FDS = MetricSpec(
    "process_open_fds", MetricType.GAUGE,
    "Open file descriptors of the process.", emitter=Emitter.PROCESS,
)  # fmt: skip
# Network and disk I/O of the gateway process, read from /proc/self/io and /proc/self/net/dev.
PROCESS_NETWORK_BYTES = MetricSpec(
    "gateway_process_network_bytes_total", MetricType.COUNTER,
    "Bytes received and transmitted on the network interfaces the gateway process sees.",
    ("direction",),
)  # fmt: skip
PROCESS_DISK_BYTES = MetricSpec(
    "gateway_process_disk_bytes_total", MetricType.COUNTER,
    "Bytes the gateway process read from and wrote to storage.",
    ("direction",),
)  # fmt: skip

# ---- Prometheus itself --------------------------------------------------------------------------
UP = MetricSpec(
    "up", MetricType.GAUGE, "1 when Prometheus scraped the target successfully.",
    emitter=Emitter.PROMETHEUS,
)  # fmt: skip

# ---- the collector ------------------------------------------------------------------------------
COLLECTOR_EVENTS_INGESTED = MetricSpec(
    "gatewatch_collector_events_ingested_total", MetricType.COUNTER,
    "Access events accepted by the collector.", emitter=Emitter.COLLECTOR,
)  # fmt: skip
COLLECTOR_EVENTS_REJECTED = MetricSpec(
    "gatewatch_collector_events_rejected_total", MetricType.COUNTER,
    "NDJSON lines the collector rejected because they did not match the event schema.",
    emitter=Emitter.COLLECTOR,
)  # fmt: skip
COLLECTOR_EVENTS_REFUSED = MetricSpec(
    "gatewatch_collector_events_refused_total", MetricType.COUNTER,
    "Valid access events the collector refused because a cardinality limit was reached.",
    ("reason",), emitter=Emitter.COLLECTOR,
)  # fmt: skip
# The ``reason`` values of COLLECTOR_EVENTS_REFUSED: the collector config limit that was reached.
REFUSAL_REASONS: tuple[str, ...] = ("max_routes", "max_backends_per_route")
COLLECTOR_ROUTE_REQUESTS = MetricSpec(
    "gatewatch_route_requests", MetricType.GAUGE,
    "Requests seen for a route (or route and backend) within the sliding window.",
    ("route", "backend", "window"), emitter=Emitter.COLLECTOR,
)  # fmt: skip
COLLECTOR_ROUTE_RPS = MetricSpec(
    "gatewatch_route_requests_per_second", MetricType.GAUGE,
    "Request rate for a route (or route and backend) over the sliding window.",
    ("route", "backend", "window"), emitter=Emitter.COLLECTOR,
)  # fmt: skip
COLLECTOR_ROUTE_ERROR_RATIO = MetricSpec(
    "gatewatch_route_error_ratio", MetricType.GAUGE,
    "Share of failed requests (5xx or gateway error) within the sliding window.",
    ("route", "backend", "window"), emitter=Emitter.COLLECTOR,
)  # fmt: skip
COLLECTOR_ROUTE_LATENCY = MetricSpec(
    "gatewatch_route_latency_seconds", MetricType.GAUGE,
    "Latency quantile (from a mergeable sketch, <1% relative error) within the sliding window.",
    ("route", "backend", "window", "quantile"), emitter=Emitter.COLLECTOR,
)  # fmt: skip
COLLECTOR_CIRCUIT_STATE = MetricSpec(
    "gatewatch_backend_circuit_state", MetricType.GAUGE,
    "Last circuit breaker state reported by the gateway: 0 closed, 1 open, 2 half-open.",
    ("route", "backend"), emitter=Emitter.COLLECTOR,
)  # fmt: skip

CATALOG = Catalog(
    (
        HTTP_REQUESTS, HTTP_REQUEST_DURATION, HTTP_REQUEST_ERRORS, ACTIVE_CONNECTIONS,
        BACKEND_UP, BACKEND_RESPONSE_TIME, CIRCUIT_BREAKER_STATE, GATEWAY_MEMORY_LIMIT,
        TELEMETRY_EVENTS_DROPPED, TELEMETRY_EVENTS_SHIPPED, TELEMETRY_SHIP_FAILURES,
        TELEMETRY_QUEUE_DEPTH,
        PROCESS_CPU, PROCESS_RSS, PROCESS_OPEN_FDS, PROCESS_NETWORK_BYTES, PROCESS_DISK_BYTES,
        UP,
        COLLECTOR_EVENTS_INGESTED, COLLECTOR_EVENTS_REJECTED, COLLECTOR_EVENTS_REFUSED,
        COLLECTOR_ROUTE_REQUESTS,
        COLLECTOR_ROUTE_RPS, COLLECTOR_ROUTE_ERROR_RATIO, COLLECTOR_ROUTE_LATENCY,
        COLLECTOR_CIRCUIT_STATE,
    )
)  # fmt: skip

# The Prometheus job name the generated scrape config and alert rules agree on.
GATEWAY_JOB = "api-gateway"
COLLECTOR_JOB = "gatewatch-collector"

CIRCUIT_STATE_VALUES: dict[str, int] = {"closed": 0, "open": 1, "half_open": 2}
