"""The gateway's Prometheus recording and alerting rules, built from the metric catalog.

Pure: :func:`build_rules` returns typed rule objects and :func:`render_rules` turns them into the
rule-file YAML. Every metric name comes from :mod:`gatewatch.catalog`; every time constant (the
rate window and each ``for:``) is a field of :class:`RuleTimings`, so a live test can build the
same rules with seconds-scale constants. Recording-rule names follow the Prometheus
``level:metric:operations`` convention and spell the window they were built with (``rate5m``),
so a rule built for a test never pretends to be a five-minute rate.

Shared ratios are recording rules, so the alerts read as one comparison each, and none of them
divides by zero: the 5xx share only exists where the route had traffic, the quantile drops the
NaN an idle histogram yields, and the error-rate and latency alerts also need a minimum request
rate, so a handful of requests cannot page anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import yaml

from gatewatch.catalog import (
    GATEWAY_JOB,
    GATEWAY_MEMORY_LIMIT,
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    PROCESS_CPU,
    PROCESS_RSS,
    UP,
)
from gatewatch.promql import bucket, by, eq, format_duration, regex, selector
from gatewatch.promql_lint import LintProblem, RuleSpec, lint_rules

RUNBOOK = "docs/runbooks.md"
GROUP_NAME = "gatewatch-gateway"


@dataclass(frozen=True)
class RuleTimings:
    """Every time constant of the rules; the defaults are the production values."""

    rate_window: timedelta = timedelta(minutes=5)
    gateway_down_for: timedelta = timedelta(seconds=30)
    error_rate_for: timedelta = timedelta(minutes=2)
    slow_response_for: timedelta = timedelta(minutes=5)
    cpu_for: timedelta = timedelta(minutes=10)
    memory_for: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class RuleThresholds:
    error_ratio: float = 0.10  # share of 5xx answers
    p95_seconds: float = 1.0
    cpu_cores: float = 0.8  # CPU seconds per second: 0.8 is 80% of one core
    memory_ratio: float = 0.8  # resident memory / gateway_memory_limit_bytes
    # Error-rate and latency alerts need at least this many requests per second on the route
    # (0.1/s is 30 requests in a 5m window): a few failed requests on an idle route do not page.
    min_request_rate: float = 0.1


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_: timedelta
    severity: str  # "critical" or "warning"
    summary: str
    description: str
    runbook_url: str


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[RecordingRule | AlertRule, ...]

    @property
    def recording(self) -> tuple[RecordingRule, ...]:
        return tuple(r for r in self.rules if isinstance(r, RecordingRule))

    @property
    def alerts(self) -> tuple[AlertRule, ...]:
        return tuple(r for r in self.rules if isinstance(r, AlertRule))


@dataclass(frozen=True)
class RecordNames:
    """Recording-rule names for one rate window (``5m`` -> ``...:rate5m``)."""

    requests: str
    errors: str
    error_ratio: str
    latency_buckets: str
    latency_p95: str
    cpu: str
    memory_ratio: str

    @classmethod
    def for_window(cls, w: str) -> RecordNames:
        requests = HTTP_REQUESTS.base_name
        return cls(
            requests=f"instance_route:{requests}:rate{w}",
            errors=f"instance_route:{requests}_5xx:rate{w}",
            error_ratio=f"instance_route:{requests}_5xx:ratio_rate{w}",
            latency_buckets=f"instance_route_le:{bucket(HTTP_REQUEST_DURATION)}:rate{w}",
            latency_p95=f"instance_route:{HTTP_REQUEST_DURATION.name}:p95_rate{w}",
            cpu=f"instance:{PROCESS_CPU.base_name}:rate{w}",
            memory_ratio="instance:gateway_memory_usage:ratio",
        )


def _num(value: float) -> str:
    return f"{value:g}"


def _percent(value: float) -> str:
    return f"{value * 100:g}%"


def build_rules(
    timings: RuleTimings | None = None,
    thresholds: RuleThresholds | None = None,
    *,
    job: str = GATEWAY_JOB,
    runbook: str = RUNBOOK,
) -> RuleGroup:
    """The gateway rule group: recording rules first (same group, so alerts see fresh values)."""
    t = timings or RuleTimings()
    th = thresholds or RuleThresholds()
    w = format_duration(t.rate_window)
    names = RecordNames.for_window(w)
    per_route = by("job", "instance", "route")
    per_route_le = by("job", "instance", "route", "le")
    on_route = "on (job, instance, route)"
    gw = eq("job", job)

    recording = (
        RecordingRule(names.requests, f"sum {per_route} (rate({selector(HTTP_REQUESTS.name, gw)}[{w}]))"),
        RecordingRule(
            names.errors,
            f"sum {per_route} (rate({selector(HTTP_REQUESTS.name, gw, regex('code', '5..'))}[{w}]))",
        ),
        # A route with traffic but no 5xx series yet reads 0 (not absent); dividing only where there
        # was traffic leaves an idle route without a ratio rather than NaN.
        RecordingRule(
            names.error_ratio, f"({names.errors} or 0 * {names.requests}) / ({names.requests} > 0)"
        ),
        RecordingRule(
            names.latency_buckets,
            f"sum {per_route_le} (rate({selector(bucket(HTTP_REQUEST_DURATION), gw)}[{w}]))",
        ),
        # histogram_quantile over an idle window is NaN; '>= 0' keeps every real quantile and drops it.
        RecordingRule(names.latency_p95, f"histogram_quantile(0.95, {names.latency_buckets}) >= 0"),
        RecordingRule(names.cpu, f"rate({selector(PROCESS_CPU.name, gw)}[{w}])"),
        # No limit known (0) means no ratio, never a division by zero.
        RecordingRule(
            names.memory_ratio,
            f"{selector(PROCESS_RSS.name, gw)} / ({selector(GATEWAY_MEMORY_LIMIT.name, gw)} > 0)",
        ),
    )

    up = selector(UP.name, gw)
    down_for = format_duration(t.gateway_down_for)
    traffic_guard = f"{on_route} {names.requests} >= {_num(th.min_request_rate)}"
    alerts = (
        AlertRule(
            "GatewayDown",
            # absent() also fires when the target vanished from service discovery or never existed.
            f"{up} == 0 or absent({up})",
            t.gateway_down_for,
            "critical",
            "{{ if $labels.instance }}Gateway {{ $labels.instance }} is down"
            "{{ else }}No gateway target of job {{ $labels.job }} is being scraped{{ end }}",
            "{{ if $labels.instance }}Prometheus could not scrape {{ $labels.instance }} "
            + f"(job {{{{ $labels.job }}}}) for {down_for}."
            + "{{ else }}Prometheus has had no target for job {{ $labels.job }} "
            + f"for {down_for}: every gateway vanished from service discovery or the scrape config."
            + "{{ end }}",
            f"{runbook}#gatewaydown",
        ),
        AlertRule(
            "HighErrorRate",
            f"{names.error_ratio} > {_num(th.error_ratio)} and {traffic_guard}",
            t.error_rate_for,
            "critical",
            "High 5xx rate on route {{ $labels.route }} at {{ $labels.instance }}",
            "{{ $value | humanizePercentage }} of requests to route {{ $labels.route }} on "
            f"{{{{ $labels.instance }}}} answered 5xx over the last {w} "
            f"(threshold {_percent(th.error_ratio)} for {format_duration(t.error_rate_for)}).",
            f"{runbook}#higherrorrate",
        ),
        AlertRule(
            "SlowResponse",
            f"{names.latency_p95} > {_num(th.p95_seconds)} and {traffic_guard}",
            t.slow_response_for,
            "critical",
            "Slow responses on route {{ $labels.route }} at {{ $labels.instance }}",
            "P95 latency of route {{ $labels.route }} on {{ $labels.instance }} is "
            f"{{{{ $value | humanizeDuration }}}} over the last {w} "
            f"(threshold {_num(th.p95_seconds)}s for {format_duration(t.slow_response_for)}).",
            f"{runbook}#slowresponse",
        ),
        AlertRule(
            "HighCPUUsage",
            f"{names.cpu} > {_num(th.cpu_cores)}",
            t.cpu_for,
            "warning",
            "Gateway {{ $labels.instance }} CPU usage is high",
            "The gateway process on {{ $labels.instance }} used {{ $value | humanizePercentage }} of one "
            f"CPU core over the last {w} "
            f"(threshold {_percent(th.cpu_cores)} for {format_duration(t.cpu_for)}).",
            f"{runbook}#highcpuusage",
        ),
        AlertRule(
            "MemoryUsageHigh",
            f"{names.memory_ratio} > {_num(th.memory_ratio)}",
            t.memory_for,
            "warning",
            "Gateway {{ $labels.instance }} memory usage is high",
            "The gateway process on {{ $labels.instance }} uses {{ $value | humanizePercentage }} of its "
            f"memory limit (threshold {_percent(th.memory_ratio)} for {format_duration(t.memory_for)}).",
            f"{runbook}#memoryusagehigh",
        ),
    )
    return RuleGroup(GROUP_NAME, (*recording, *alerts))


def lint_specs(group: RuleGroup) -> list[RuleSpec]:
    """The group's rules in the shape :func:`gatewatch.promql_lint.lint_rules` checks."""
    return [RuleSpec(r.expr, r.record if isinstance(r, RecordingRule) else None) for r in group.rules]


HEADER = (
    "# Generated by `gatewatch generate` from gatewatch/catalog.py (alerts/rules.py). Do not edit:\n"
    "# change the generator and run `gatewatch generate --out .`; a test fails when this file is stale.\n"
)


def _rule_dict(rule: RecordingRule | AlertRule) -> dict[str, object]:
    if isinstance(rule, RecordingRule):
        return {"record": rule.record, "expr": rule.expr}
    return {
        "alert": rule.alert,
        "expr": rule.expr,
        "for": format_duration(rule.for_),
        "labels": {"severity": rule.severity},
        "annotations": {
            "summary": rule.summary,
            "description": rule.description,
            "runbook_url": rule.runbook_url,
        },
    }


def dump_yaml(data: object) -> str:
    """Stable, diff-friendly YAML (insertion order, no line wrapping)."""
    return yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, width=1_000_000, allow_unicode=True
    )


def render_rules(group: RuleGroup) -> str:
    body = {"groups": [{"name": group.name, "rules": [_rule_dict(r) for r in group.rules]}]}
    return HEADER + dump_yaml(body)


def lint_rule_file(text: str) -> list[LintProblem]:
    """Lint every expression of a Prometheus rule file (recorded series become known in order)."""
    data = yaml.safe_load(text)
    specs: list[RuleSpec] = []
    for group in data.get("groups", []):
        for rule in group.get("rules", []):
            labels = tuple((rule.get("labels") or {}).keys()) if "record" in rule else ()
            specs.append(RuleSpec(str(rule["expr"]), rule.get("record"), labels))
    problems, _ = lint_rules(specs)
    return problems
