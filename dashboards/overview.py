"""The "Gatewatch — gateway overview" Grafana dashboard, defined with grafanalib.

Every metric name and label comes from :mod:`gatewatch.catalog`; selectors filter on the
dashboard's ``$job``/``$instance`` (and ``$route`` where the metric has a route label), and every
rate uses ``$__rate_interval`` so Grafana picks a window that always spans several scrapes.
Panels are described as :class:`PanelSpec` values first and turned into grafanalib objects at the
end, so the layout is computed in one place (:mod:`dashboards.layout`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from grafanalib.core import (
    GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
    Dashboard,
    GridPos,
    RowPanel,
    Stat,
    StateTimeline,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

from alerts.rules import RuleThresholds
from dashboards.layout import Size, place_rows
from gatewatch.catalog import (
    ACTIVE_CONNECTIONS,
    BACKEND_RESPONSE_TIME,
    BACKEND_UP,
    CIRCUIT_BREAKER_STATE,
    CIRCUIT_STATE_VALUES,
    GATEWAY_JOB,
    GATEWAY_MEMORY_LIMIT,
    HTTP_REQUEST_DURATION,
    HTTP_REQUEST_ERRORS,
    HTTP_REQUESTS,
    PROCESS_CPU,
    PROCESS_DISK_BYTES,
    PROCESS_NETWORK_BYTES,
    PROCESS_RSS,
    TELEMETRY_EVENTS_DROPPED,
    TELEMETRY_EVENTS_SHIPPED,
    TELEMETRY_QUEUE_DEPTH,
    TELEMETRY_SHIP_FAILURES,
    UP,
    MetricSpec,
)
from gatewatch.promql import Match, bucket, by, regex, selector

TITLE = "Gatewatch — gateway overview"
UID = "gatewatch-gateway-overview"
RATE = "$__rate_interval"
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 10.x

JOB = regex("job", "$job")
INSTANCE = regex("instance", "$instance")
ROUTE = regex("route", "$route")
FIVE_XX = regex("code", "5..")

Kind = Literal["timeseries", "stat", "state"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    kind: Kind
    unit: str
    queries: tuple[Query, ...]
    size: Size
    description: str = ""
    # (value, color) steps; the first applies from -inf
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    value_text: tuple[tuple[int, str, str], ...] = ()  # (value, text, color) for state panels


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: tuple[PanelSpec, ...] = field(default_factory=tuple)


def series(spec: MetricSpec, name: str | None = None, *extra: Match) -> str:
    """A selector for ``spec`` filtered by the dashboard variables its labels allow."""
    matchers = [JOB, INSTANCE]
    if "route" in spec.labels:
        matchers.append(ROUTE)
    return selector(name or spec.name, *matchers, *extra)


def rate(spec: MetricSpec, name: str | None = None, *extra: Match) -> str:
    return f"rate({series(spec, name, *extra)}[{RATE}])"


def quantile(q: float, spec: MetricSpec, *group: str) -> str:
    """A quantile from the classic buckets; an idle group has no point instead of NaN (which
    Grafana draws as a gap at best and a stat panel shows as "NaN"). As in the recording rules."""
    return f"histogram_quantile({q:g}, sum {by('le', *group)} ({rate(spec, bucket(spec))})) >= 0"


def error_share(*group: str) -> str:
    """5xx share; groups with traffic but no 5xx read 0 instead of disappearing, and groups with
    no traffic in the window have no point instead of 0/0 = NaN."""
    agg = f"sum {by(*group)} " if group else "sum"
    errors = f"{agg}({rate(HTTP_REQUESTS, None, FIVE_XX)})"
    total = f"{agg}({rate(HTTP_REQUESTS)})"
    return f"({errors} or 0 * {total}) / ({total} > 0)"


STAT, HALF, THIRD, WIDE = Size(4, 4), Size(12, 8), Size(8, 8), Size(16, 8)
Steps = tuple[tuple[float | None, str], ...]


def stat(
    title: str, unit: str, expr: str, *, thresholds: Steps = ((None, "green"),), description: str = ""
) -> PanelSpec:
    return PanelSpec(title, "stat", unit, (Query(expr),), STAT, description, thresholds)


def graph(title: str, unit: str, size: Size, *queries: Query, **kw: Any) -> PanelSpec:
    return PanelSpec(title, "timeseries", unit, queries, size, **kw)


def state(title: str, query: Query, value_text: tuple[tuple[int, str, str], ...]) -> PanelSpec:
    return PanelSpec(title, "state", "short", (query,), THIRD, value_text=value_text)


def per_instance(spec: MetricSpec, legend: str = "{{instance}}", *, counter: bool = False) -> Query:
    source = rate(spec) if counter else series(spec)
    return Query(f"sum by (instance) ({source})", legend)


def _panels() -> list[RowSpec]:
    th = RuleThresholds()
    alert_error: Steps = ((None, "green"), (th.error_ratio / 2, "yellow"), (th.error_ratio, "red"))
    alert_latency: Steps = ((None, "green"), (th.p95_seconds / 2, "yellow"), (th.p95_seconds, "red"))
    open_state = CIRCUIT_STATE_VALUES["open"]
    circuit_colors = {"closed": "green", "open": "red"}
    circuit_text = tuple(
        (value, name.replace("_", "-"), circuit_colors.get(name, "yellow"))
        for name, value in sorted(CIRCUIT_STATE_VALUES.items(), key=lambda kv: kv[1])
    )
    per_backend = "{{route}} {{backend}}"
    per_direction = "{{instance}} {{direction}}"
    return [
        RowSpec(
            "Overview",
            (
                stat("Requests/s", "reqps", f"sum({rate(HTTP_REQUESTS)})"),
                stat("5xx share", "percentunit", error_share(), thresholds=alert_error),
                stat("P95 latency", "s", quantile(0.95, HTTP_REQUEST_DURATION), thresholds=alert_latency),
                stat("Active connections", "short", f"sum({series(ACTIVE_CONNECTIONS)})"),
                stat(
                    "Gateways up",
                    "short",
                    f"sum({selector(UP.name, JOB, INSTANCE)})",
                    thresholds=((None, "red"), (1, "green")),
                    description="Gateway targets Prometheus scraped successfully.",
                ),
                stat(
                    "Open circuits",
                    "short",
                    f"count({series(CIRCUIT_BREAKER_STATE)} == {open_state}) or vector(0)",
                    thresholds=((None, "green"), (1, "red")),
                ),
            ),
        ),
        RowSpec(
            "Traffic",
            (
                graph(
                    "Requests per second by route",
                    "reqps",
                    HALF,
                    Query(f"sum by (route) ({rate(HTTP_REQUESTS)})", "{{route}}"),
                ),
                graph(
                    "Error rate by route (5xx share)",
                    "percentunit",
                    HALF,
                    Query(error_share("route"), "{{route}}"),
                    thresholds=alert_error,
                    description="Share of answers with a 5xx status; HighErrorRate pages above the red line.",
                ),
                graph(
                    "Responses by status code",
                    "reqps",
                    HALF,
                    Query(f"sum by (code) ({rate(HTTP_REQUESTS)})", "{{code}}"),
                ),
                graph(
                    "Gateway errors by reason",
                    "reqps",
                    HALF,
                    Query(f"sum by (route, reason) ({rate(HTTP_REQUEST_ERRORS)})", "{{route}} {{reason}}"),
                    description="Upstream 5xx and gateway-side failures (refused, timeout, ...).",
                ),
            ),
        ),
        RowSpec(
            "Latency",
            (
                graph(
                    "Latency P50 / P95 / P99 by route",
                    "s",
                    WIDE,
                    *(
                        Query(quantile(q, HTTP_REQUEST_DURATION, "route"), f"{{{{route}}}} p{round(q * 100)}")
                        for q in (0.5, 0.95, 0.99)
                    ),
                    thresholds=alert_latency,
                ),
                graph("Active connections by instance", "short", THIRD, per_instance(ACTIVE_CONNECTIONS)),
            ),
        ),
        RowSpec(
            "Backends",
            (
                state(
                    "Backend up",
                    Query(f"max by (route, backend) ({series(BACKEND_UP)})", per_backend),
                    ((0, "down", "red"), (1, "up", "green")),
                ),
                state(
                    "Circuit breaker state",
                    Query(f"max by (route, backend) ({series(CIRCUIT_BREAKER_STATE)})", per_backend),
                    circuit_text,
                ),
                graph(
                    "Backend response time P95",
                    "s",
                    THIRD,
                    Query(quantile(0.95, BACKEND_RESPONSE_TIME, "route", "backend"), per_backend),
                    thresholds=alert_latency,
                ),
            ),
        ),
        RowSpec(
            "Resources",
            (
                graph(
                    "Process CPU",
                    "percentunit",
                    HALF,
                    per_instance(PROCESS_CPU, counter=True),
                    description="CPU seconds per second: 100% is one full core.",
                    thresholds=((None, "green"), (th.cpu_cores, "red")),
                ),
                graph(
                    "Process memory (RSS) vs limit",
                    "bytes",
                    HALF,
                    per_instance(PROCESS_RSS, "{{instance}} RSS"),
                    per_instance(GATEWAY_MEMORY_LIMIT, "{{instance}} limit"),
                ),
                graph(
                    "Network I/O",
                    "Bps",
                    HALF,
                    Query(f"sum by (instance, direction) ({rate(PROCESS_NETWORK_BYTES)})", per_direction),
                ),
                graph(
                    "Disk I/O",
                    "Bps",
                    HALF,
                    Query(f"sum by (instance, direction) ({rate(PROCESS_DISK_BYTES)})", per_direction),
                ),
            ),
        ),
        RowSpec(
            "Telemetry",
            (
                graph(
                    "Telemetry dropped events",
                    "cps",
                    THIRD,
                    Query(
                        f"sum by (instance, sink) ({rate(TELEMETRY_EVENTS_DROPPED)})", "{{instance}} {{sink}}"
                    ),
                    description="Records dropped because a bounded queue was full; requests never wait.",
                    thresholds=((None, "green"), (1, "red")),
                ),
                graph(
                    "Events shipped / failed batches",
                    "cps",
                    THIRD,
                    per_instance(TELEMETRY_EVENTS_SHIPPED, "{{instance}} shipped", counter=True),
                    per_instance(TELEMETRY_SHIP_FAILURES, "{{instance}} failed batches", counter=True),
                ),
                graph("Telemetry queue depth", "short", THIRD, per_instance(TELEMETRY_QUEUE_DEPTH)),
            ),
        ),
    ]


def _steps(thresholds: tuple[tuple[float | None, str], ...]) -> list[dict[str, Any]]:
    return [{"color": color, "value": value} for value, color in thresholds]


def _mappings(value_text: tuple[tuple[int, str, str], ...]) -> list[dict[str, Any]]:
    if not value_text:
        return []
    options = {
        str(v): {"text": text, "color": color, "index": i} for i, (v, text, color) in enumerate(value_text)
    }
    return [{"type": "value", "options": options}]


def _targets(spec: PanelSpec) -> list[Target]:
    return [
        Target(
            expr=q.expr,
            legendFormat=q.legend,
            refId=chr(ord("A") + i),
            intervalFactor=1,
            datasource=DATASOURCE,
        )
        for i, q in enumerate(spec.queries)
    ]


def _panel(spec: PanelSpec, pos: GridPos) -> Any:
    common: dict[str, Any] = {
        "title": spec.title,
        "dataSource": DATASOURCE,
        "targets": _targets(spec),
        "gridPos": pos,
        "description": spec.description or None,
        "thresholds": _steps(spec.thresholds),
    }
    if spec.kind == "stat":
        return Stat(format=spec.unit, reduceCalc="lastNotNull", graphMode="area", **common)
    if spec.kind == "state":
        return StateTimeline(mappings=_mappings(spec.value_text), **common)
    return TimeSeries(
        unit=spec.unit,
        legendDisplayMode="list",
        tooltipMode="multi",
        thresholdsStyleMode="line" if len(spec.thresholds) > 1 else "off",
        **common,
    )


def _templating() -> Templating:
    gateway_jobs = f"label_values({HTTP_REQUESTS.name}, job)"
    instances = f"label_values({selector(UP.name, JOB)}, instance)"
    routes = f"label_values({selector(HTTP_REQUESTS.name, JOB, INSTANCE)}, route)"
    return Templating(
        list=[
            Template(
                name="datasource", label="Data source", query="prometheus", type="datasource",
                default="Prometheus",
            ),
            Template(
                name="job", label="Job", query=gateway_jobs, dataSource=DATASOURCE, default=GATEWAY_JOB,
                refresh=2,
            ),
            Template(
                name="instance", label="Instance", query=instances, dataSource=DATASOURCE, multi=True,
                includeAll=True, allValue=".*", default="$__all", refresh=2,
            ),
            Template(
                name="route", label="Route", query=routes, dataSource=DATASOURCE, multi=True, includeAll=True,
                allValue=".*", default="$__all", refresh=2,
            ),
        ]
    )  # fmt: skip


def build_dashboard() -> Dashboard:
    rows = _panels()
    placed = place_rows([[p.size for p in row.panels] for row in rows])
    panels: list[Any] = []
    for row, (header, boxes) in zip(rows, placed, strict=True):
        panels.append(
            RowPanel(title=row.title, gridPos=GridPos(h=header.h, w=header.w, x=header.x, y=header.y))
        )
        for spec, box in zip(row.panels, boxes, strict=True):
            panels.append(_panel(spec, GridPos(h=box.h, w=box.w, x=box.x, y=box.y)))
    dashboard = Dashboard(
        title=TITLE,
        uid=UID,
        description="Gateway traffic, errors, latency, backends, resources and telemetry (generated from the "
        "Gatewatch metric catalog).",
        tags=["gatewatch", "gateway"],
        timezone="browser",
        refresh="30s",
        time=Time("now-1h", "now"),
        graphTooltip=GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        schemaVersion=SCHEMA_VERSION,
        templating=_templating(),
        panels=panels,
    )
    return dashboard.auto_panel_ids()
