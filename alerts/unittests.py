"""promtool unit tests for the generated rules (``promtool test rules alerts/tests/*.test.yml``).

Each alert gets a file with cases that must fire and cases that must stay quiet. Input series
are built from catalog specs, so a renamed metric or label breaks the tests instead of leaving
them testing a series nobody emits. Expected annotations are written out literally here (not
rendered by the code under test), so a broken template or a wrong ``$value`` is caught.

The cases assume the production defaults of :class:`alerts.rules.RuleTimings` and
:class:`alerts.rules.RuleThresholds`.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.rules import RUNBOOK, RecordNames, RuleTimings, dump_yaml
from gatewatch.catalog import (
    COLLECTOR_JOB,
    GATEWAY_JOB,
    GATEWAY_MEMORY_LIMIT,
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    PROCESS_CPU,
    PROCESS_RSS,
    UP,
)
from gatewatch.promql import Match, bucket, eq, format_duration, selector

RULES_FILE = "../gateway.rules.yml"  # promtool resolves rule_files relative to the test file
GW1, GW2, GW3 = "gw-1:9901", "gw-2:9901", "gw-3:9901"
MIB = 1024 * 1024


@dataclass(frozen=True)
class InputSeries:
    series: str
    values: str  # promtool expanding notation, e.g. '0+570x20'


@dataclass(frozen=True)
class ExpectedAlert:
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AlertCheck:
    eval_time: str
    alertname: str
    expected: tuple[ExpectedAlert, ...] = ()  # empty: the alert must not be firing


@dataclass(frozen=True)
class Sample:
    labels: str
    value: float


@dataclass(frozen=True)
class ExprCheck:
    expr: str
    eval_time: str
    samples: tuple[Sample, ...] = ()  # empty: the expression must return nothing (not even NaN)


@dataclass(frozen=True)
class TestCase:
    name: str
    interval: str
    series: tuple[InputSeries, ...]
    alerts: tuple[AlertCheck, ...] = ()
    exprs: tuple[ExprCheck, ...] = ()


@dataclass(frozen=True)
class TestFile:
    filename: str
    evaluation_interval: str
    cases: tuple[TestCase, ...]


def _gw(series: str, instance: str, *extra: Match) -> str:
    return selector(series, eq("job", GATEWAY_JOB), eq("instance", instance), *extra)


def _requests(instance: str, route: str, code: str) -> str:
    return _gw(HTTP_REQUESTS.name, instance, eq("route", route), eq("method", "GET"), eq("code", code))


def _recorded(record: str, instance: str, route: str | None = None) -> str:
    """A recorded series as promtool prints it: name and labels sorted."""
    route_match = (eq("route", route),) if route is not None else ()
    return selector(record, eq("instance", instance), eq("job", GATEWAY_JOB), *route_match)


def _labels(instance: str) -> str:
    return "{" + f'instance="{instance}", job="{GATEWAY_JOB}"' + "}"


def _runbook(alert: str) -> tuple[str, str]:
    return ("runbook_url", f"{RUNBOOK}#{alert.lower()}")


def _alert(name: str, severity: str, labels: dict[str, str], summary: str, description: str) -> ExpectedAlert:
    return ExpectedAlert(
        tuple(sorted({"severity": severity, **labels}.items())),
        (("summary", summary), ("description", description), _runbook(name)),
    )


def _error_rate_alert(instance: str, route: str, percent: str) -> ExpectedAlert:
    return _alert(
        "HighErrorRate",
        "critical",
        {"job": GATEWAY_JOB, "instance": instance, "route": route},
        f"High 5xx rate on route {route} at {instance}",
        f"{percent} of requests to route {route} on {instance} answered 5xx over the last 5m "
        "(threshold 10% for 2m).",
    )


def high_error_rate(names: RecordNames) -> TestFile:
    def traffic(
        route: str, ok_per_min: int, err_per_min: int | None, start: int = 0
    ) -> tuple[InputSeries, ...]:
        """Counters per minute; ``err_per_min=None``: the route never answered 5xx (no such series)."""
        ok = InputSeries(_requests(GW1, route, "200"), f"{start}+{ok_per_min}x20")
        if err_per_min is None:
            return (ok,)
        return (ok, InputSeries(_requests(GW1, route, "500"), f"{start}+{err_per_min}x20"))

    ratio = _recorded(names.error_ratio, GW1, "orders")
    return TestFile(
        "high_error_rate.test.yml",
        "15s",
        (
            TestCase(
                "5% errors at 10 req/s stay quiet",
                "1m",
                traffic("orders", 570, 30),
                alerts=(AlertCheck("15m", "HighErrorRate"),),
                exprs=(ExprCheck(names.error_ratio, "10m", (Sample(ratio, 0.05),)),),
            ),
            TestCase(
                "20% errors fire after 2m, only on the failing route",
                "1m",
                traffic("orders", 480, 120) + traffic("users", 600, None),
                exprs=(
                    ExprCheck(
                        names.error_ratio,
                        "10m",
                        # a route without any 5xx series reads 0, not "no data"
                        (Sample(ratio, 0.2), Sample(_recorded(names.error_ratio, GW1, "users"), 0.0)),
                    ),
                ),
                alerts=(
                    # the 5m rate has two samples from 1m on: pending from 1m, firing 2m later
                    AlertCheck("2m45s", "HighErrorRate"),
                    AlertCheck("3m", "HighErrorRate", (_error_rate_alert(GW1, "orders", "20%"),)),
                    AlertCheck("10m", "HighErrorRate", (_error_rate_alert(GW1, "orders", "20%"),)),
                ),
            ),
            TestCase(
                "zero traffic stays quiet and records no NaN ratio",
                "1m",
                traffic("orders", 0, 0, start=100),
                alerts=(AlertCheck("15m", "HighErrorRate"),),
                exprs=(ExprCheck(names.error_ratio, "10m"),),
            ),
            TestCase(
                "a trickle of errors below the minimum traffic stays quiet",
                "1m",
                traffic("orders", 0, 3),  # 100% errors, but only 0.05 req/s
                alerts=(AlertCheck("15m", "HighErrorRate"),),
                exprs=(ExprCheck(names.error_ratio, "10m", (Sample(ratio, 1.0),)),),
            ),
        ),
    )


def gateway_down() -> TestFile:
    up1 = _gw(UP.name, GW1)
    collector_up = selector(UP.name, eq("job", COLLECTOR_JOB), eq("instance", "collector:9300"))
    down = _alert(
        "GatewayDown",
        "critical",
        {"job": GATEWAY_JOB, "instance": GW1},
        f"Gateway {GW1} is down",
        f"Prometheus could not scrape {GW1} (job {GATEWAY_JOB}) for 30s.",
    )
    vanished = _alert(
        "GatewayDown",
        "critical",
        {"job": GATEWAY_JOB},
        f"No gateway target of job {GATEWAY_JOB} is being scraped",
        f"Prometheus has had no target for job {GATEWAY_JOB} for 30s: every gateway vanished from "
        "service discovery or the scrape config.",
    )
    return TestFile(
        "gateway_down.test.yml",
        "15s",
        (
            TestCase(
                "a target that is up stays quiet",
                "15s",
                (InputSeries(up1, "1x40"),),
                alerts=(AlertCheck("5m", "GatewayDown"),),
            ),
            TestCase(
                "up == 0 fires after 30s",
                "15s",
                (InputSeries(up1, "1 1 0x40"),),  # down from 30s
                alerts=(AlertCheck("45s", "GatewayDown"), AlertCheck("1m", "GatewayDown", (down,))),
            ),
            TestCase(
                "a target that vanished fires after 30s",
                "15s",
                (InputSeries(up1, "1 1 stale"), InputSeries(collector_up, "1x40")),
                alerts=(AlertCheck("45s", "GatewayDown"), AlertCheck("1m", "GatewayDown", (vanished,))),
            ),
            TestCase(
                "no gateway target at all fires (only the collector is scraped)",
                "15s",
                (InputSeries(collector_up, "1x40"),),
                alerts=(AlertCheck("15s", "GatewayDown"), AlertCheck("30s", "GatewayDown", (vanished,))),
            ),
        ),
    )


def slow_response(names: RecordNames) -> TestFile:
    def histogram(route: str, per_min: int, slowest_le: str) -> tuple[InputSeries, ...]:
        """``per_min`` requests a minute, all of them in the bucket ending at ``slowest_le``."""
        out = [InputSeries(_requests(GW1, route, "200"), f"0+{per_min}x20")]
        for le in ("0.1", "0.5", "1", "2.5", "+Inf"):
            filled = float(le) >= float(slowest_le)
            out.append(
                InputSeries(
                    _gw(
                        bucket(HTTP_REQUEST_DURATION),
                        GW1,
                        eq("route", route),
                        eq("method", "GET"),
                        eq("le", le),
                    ),
                    f"0+{per_min if filled else 0}x20",
                )
            )
        return tuple(out)

    slow = _alert(
        "SlowResponse",
        "critical",
        {"job": GATEWAY_JOB, "instance": GW1, "route": "orders"},
        f"Slow responses on route orders at {GW1}",
        # every request in (1s, 2.5s]: P95 interpolates to 1 + 1.5 * 0.95 = 2.425s
        f"P95 latency of route orders on {GW1} is 2.425s over the last 5m (threshold 1s for 5m).",
    )
    return TestFile(
        "slow_response.test.yml",
        "15s",
        (
            TestCase(
                "P95 of 2.4s fires after 5m; the fast route stays quiet",
                "1m",
                histogram("orders", 600, "2.5") + histogram("users", 600, "0.1"),
                alerts=(
                    AlertCheck("5m45s", "SlowResponse"),
                    AlertCheck("6m", "SlowResponse", (slow,)),
                ),
                exprs=(
                    ExprCheck(
                        names.latency_p95,
                        "10m",
                        (
                            Sample(_recorded(names.latency_p95, GW1, "orders"), 2.425),
                            # all in (0, 0.1]: 0.1 * 0.95
                            Sample(_recorded(names.latency_p95, GW1, "users"), 0.095),
                        ),
                    ),
                ),
            ),
            TestCase(
                "an idle histogram records no NaN quantile and stays quiet",
                "1m",
                histogram("orders", 0, "2.5"),
                alerts=(AlertCheck("15m", "SlowResponse"),),
                exprs=(ExprCheck(names.latency_p95, "10m"),),
            ),
            TestCase(
                "slow requests below the minimum traffic stay quiet",
                "1m",
                histogram("orders", 3, "2.5"),  # 0.05 req/s
                alerts=(AlertCheck("15m", "SlowResponse"),),
            ),
        ),
    )


def high_cpu(names: RecordNames) -> TestFile:
    cpu = _alert(
        "HighCPUUsage",
        "warning",
        {"job": GATEWAY_JOB, "instance": GW1},
        f"Gateway {GW1} CPU usage is high",
        f"The gateway process on {GW1} used 90% of one CPU core over the last 5m (threshold 80% for 10m).",
    )
    collector_cpu = selector(PROCESS_CPU.name, eq("job", COLLECTOR_JOB), eq("instance", "collector:9300"))
    return TestFile(
        "high_cpu.test.yml",
        "15s",
        (
            TestCase(
                "0.9 cores for 10m fires; 0.5 cores and the collector's CPU do not",
                "1m",
                (
                    InputSeries(_gw(PROCESS_CPU.name, GW1), "0+54x30"),  # 54 CPU-seconds a minute
                    InputSeries(_gw(PROCESS_CPU.name, GW2), "0+30x30"),
                    InputSeries(collector_cpu, "0+57x30"),  # not the gateway job: not this alert
                ),
                alerts=(
                    # A counter that starts at 0 ramps the 5m rate up: it first exceeds 0.8 at 4m30s
                    # (216 CPU-seconds extrapolated over 4m30s of the 5m window), so it fires 10m later.
                    AlertCheck("14m15s", "HighCPUUsage"),
                    AlertCheck("14m30s", "HighCPUUsage", (cpu,)),
                ),
                exprs=(
                    # '> bool' gives exact 0/1, where the rate itself is 0.8099999999999999 at 4m30s
                    ExprCheck(
                        f"{names.cpu} > bool 0.8",
                        "4m15s",
                        (Sample(_labels(GW1), 0), Sample(_labels(GW2), 0)),
                    ),
                    ExprCheck(
                        f"{names.cpu} > bool 0.8",
                        "4m30s",
                        (Sample(_labels(GW1), 1), Sample(_labels(GW2), 0)),
                    ),
                    ExprCheck(
                        names.cpu,
                        "20m",
                        (Sample(_recorded(names.cpu, GW1), 0.9), Sample(_recorded(names.cpu, GW2), 0.5)),
                    ),
                ),
            ),
        ),
    )


def memory_high(names: RecordNames) -> TestFile:
    mem = _alert(
        "MemoryUsageHigh",
        "warning",
        {"job": GATEWAY_JOB, "instance": GW1},
        f"Gateway {GW1} memory usage is high",
        f"The gateway process on {GW1} uses 87.89% of its memory limit (threshold 80% for 5m).",
    )
    gib = 1024 * MIB
    return TestFile(
        "memory_usage_high.test.yml",
        "15s",
        (
            TestCase(
                "900 MiB of 1 GiB fires after 5m; 500 MiB and an unknown limit do not",
                "1m",
                (
                    InputSeries(_gw(PROCESS_RSS.name, GW1), f"{900 * MIB}x20"),
                    InputSeries(_gw(GATEWAY_MEMORY_LIMIT.name, GW1), f"{gib}x20"),
                    InputSeries(_gw(PROCESS_RSS.name, GW2), f"{500 * MIB}x20"),
                    InputSeries(_gw(GATEWAY_MEMORY_LIMIT.name, GW2), f"{gib}x20"),
                    InputSeries(_gw(PROCESS_RSS.name, GW3), f"{900 * MIB}x20"),
                    InputSeries(_gw(GATEWAY_MEMORY_LIMIT.name, GW3), "0x20"),  # limit unknown
                ),
                alerts=(
                    AlertCheck("4m45s", "MemoryUsageHigh"),
                    AlertCheck("5m", "MemoryUsageHigh", (mem,)),
                ),
                exprs=(
                    # no ratio at all for gw-3: a zero limit is not a division by zero
                    ExprCheck(
                        names.memory_ratio,
                        "1m",
                        (
                            Sample(_recorded(names.memory_ratio, GW1), 900 / 1024),
                            Sample(_recorded(names.memory_ratio, GW2), 500 / 1024),
                        ),
                    ),
                ),
            ),
        ),
    )


def build_unit_tests() -> list[TestFile]:
    names = RecordNames.for_window(format_duration(RuleTimings().rate_window))
    return [high_error_rate(names), gateway_down(), slow_response(names), high_cpu(names), memory_high(names)]


def _case_dict(case: TestCase) -> dict[str, object]:
    out: dict[str, object] = {
        "name": case.name,
        "interval": case.interval,
        "input_series": [{"series": s.series, "values": s.values} for s in case.series],
    }
    if case.alerts:
        out["alert_rule_test"] = [
            {
                "eval_time": a.eval_time,
                "alertname": a.alertname,
                "exp_alerts": [
                    {"exp_labels": dict(e.labels), "exp_annotations": dict(e.annotations)} for e in a.expected
                ],
            }
            for a in case.alerts
        ]
    if case.exprs:
        out["promql_expr_test"] = [
            {
                "expr": x.expr,
                "eval_time": x.eval_time,
                "exp_samples": [{"labels": s.labels, "value": s.value} for s in x.samples],
            }
            for x in case.exprs
        ]
    return out


HEADER = (
    "# Generated by `gatewatch generate` (alerts/unittests.py). Do not edit.\n"
    "# Run: promtool test rules alerts/tests/*.test.yml\n"
)


def render_test_file(tf: TestFile) -> str:
    body = {
        "rule_files": [RULES_FILE],
        "evaluation_interval": tf.evaluation_interval,
        "tests": [_case_dict(c) for c in tf.cases],
    }
    return HEADER + dump_yaml(body)
