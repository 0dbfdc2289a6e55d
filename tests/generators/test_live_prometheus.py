"""The generated rules and dashboard against a REAL Prometheus scraping a REAL gateway.

demo upstream <- sidecar gateway (two routes) <- traffic thread
                      '-- admin /metrics <- Prometheus (1s scrape/eval, generated rules with
                                                          seconds-scale time constants)

Requests on route "failing" are answered 500 by the upstream, on route "healthy" 200; route
"idle" gets one request at the start and none after. The HighErrorRate alert must reach "firing"
for "failing" and never appear (not even pending) for "healthy"; the scrape target is up; every
dashboard panel query evaluates, the core panels return the values the traffic implies, and no
panel shows NaN for the idle route.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from alerts.configs import PrometheusSetup, render_prometheus_config
from alerts.rules import RecordNames, RuleTimings, build_rules, render_rules
from dashboards.generate import panel_queries, render_overview
from gatewatch.catalog import GATEWAY_JOB, HTTP_REQUESTS, UP
from gatewatch.promql import format_duration
from gatewatch.promql_lint import substitute
from tests.support.procs import free_port, gatewatch_cmd, running
from tests.support.prometheus import Alert, PrometheusClient, RuleStatus, running_prometheus

pytestmark = pytest.mark.integration

SECOND = timedelta(seconds=1)
# Seconds-scale versions of the production constants; the expressions are otherwise identical
# (test_alert_rules checks that).
TIMINGS = RuleTimings(
    rate_window=4 * SECOND,
    gateway_down_for=2 * SECOND,
    error_rate_for=2 * SECOND,
    slow_response_for=2 * SECOND,
    cpu_for=2 * SECOND,
    memory_for=2 * SECOND,
)
WINDOW = format_duration(TIMINGS.rate_window)
NAMES = RecordNames.for_window(WINDOW)
RATE_INTERVAL = "4s"  # what Grafana's $__rate_interval is for a 1s scrape interval: 4 x scrape
ALERT_WAIT = 30.0


@dataclass
class Traffic:
    """Requests on two routes from a background thread, counting the statuses it got back."""

    gateway: str
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        host, port = self.gateway.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        plan = (("failing", "500"), ("healthy", "200"))
        conn.request("GET", "/idle/orders")  # once: the route then stays idle
        idle = conn.getresponse()
        idle.read()
        self.statuses[("idle", idle.status)] += 1
        while not self.stop.is_set():
            for route, status in plan:
                try:
                    conn.request("GET", f"/{route}/orders", headers={"x-demo-status": status})
                    resp = conn.getresponse()
                    resp.read()
                    self.statuses[(route, resp.status)] += 1
                except (OSError, http.client.HTTPException) as exc:
                    self.errors.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=5)
            self.stop.wait(0.05)  # about 20 requests a second per route
        conn.close()


@dataclass(frozen=True)
class Stack:
    prom: PrometheusClient
    admin: str
    traffic: Traffic


def _gateway_config(listen: str, admin: str, upstream: str) -> str:
    routes = "\n".join(
        f"""  - name: {name}
    path_prefix: /{name}
    upstreams: [{{address: "{upstream}"}}]
    circuit_breaker: {{failure_threshold: 10000}}"""
        for name in ("failing", "healthy", "idle")
    )
    return f"""listen: {listen}
admin_listen: {admin}
routes:
{routes}
telemetry:
  access_log: {{enabled: false}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("live")
    upstream = f"127.0.0.1:{free_port()}"
    listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = tmp / "gateway.yaml"
    config.write_text(_gateway_config(listen, admin, upstream))
    prom_config = render_prometheus_config(
        PrometheusSetup(
            gateway_targets=(admin,),
            collector_targets=(),
            rule_files=("gateway.rules.yml",),
            alertmanagers=(),
            scrape_interval=SECOND,
            evaluation_interval=SECOND,
        )
    )
    rules = render_rules(build_rules(TIMINGS))
    with (
        running(
            gatewatch_cmd("demo-upstream", "--listen", upstream),
            ready_url=f"http://{upstream}/healthz",
            log=tmp / "upstream.log",
        ),
        running(
            gatewatch_cmd("gateway", "--config", str(config)),
            ready_url=f"http://{admin}/healthz",
            log=tmp / "gateway.log",
        ),
        running_prometheus(tmp / "prometheus", prom_config, {"gateway.rules.yml": rules}) as prom,
    ):
        traffic = Traffic(listen)
        thread = threading.Thread(target=traffic.run, daemon=True)
        thread.start()
        try:
            yield Stack(prom, admin, traffic)
        finally:
            traffic.stop.set()
            thread.join(timeout=10)


def test_high_error_rate_fires_for_500s_and_stays_inactive_for_200s(stack: Stack) -> None:
    prom = stack.prom
    healthy_seen: list[str] = []

    def failing_fires() -> list[Alert] | None:
        alerts = [a for a in prom.alerts() if a.name == "HighErrorRate"]
        healthy_seen.extend(a.state for a in alerts if a.labels["route"] == "healthy")
        return [a for a in alerts if a.state == "firing"] or None

    firing = prom.wait_for(failing_fires, timeout=ALERT_WAIT, what="HighErrorRate firing")
    assert [a.labels["route"] for a in firing] == ["failing"]
    alert = firing[0]
    assert alert.labels == {
        "alertname": "HighErrorRate",
        "severity": "critical",
        "job": GATEWAY_JOB,
        "instance": stack.admin,
        "route": "failing",
    }
    assert alert.value == 1.0  # every request on the route failed
    assert alert.annotations["description"].startswith(
        f"100% of requests to route failing on {stack.admin} answered 5xx over the last {WINDOW}"
    )
    # the healthy route carried enough traffic to pass the guard, and never alerted
    rate = prom.query(f'{NAMES.requests}{{route="healthy"}}')
    assert rate and rate[0].value >= 1.0
    assert prom.query(f'{NAMES.error_ratio}{{route="healthy"}}')[0].value == 0.0
    assert healthy_seen == []
    assert not [a for a in prom.alerts() if a.labels.get("route") == "healthy"]
    # and the gateway really answered what the upstream was told to answer
    statuses = stack.traffic.statuses
    assert statuses[("failing", 500)] > 0 and statuses[("healthy", 200)] > 0
    assert set(statuses) == {("failing", 500), ("healthy", 200), ("idle", 200)}, statuses
    assert stack.traffic.errors == []


def test_scrape_target_is_up_and_every_rule_evaluates(stack: Stack) -> None:
    prom = stack.prom
    targets = prom.wait_for(
        lambda: [t for t in prom.targets() if t.health == "up"] or None, timeout=ALERT_WAIT, what="target up"
    )
    assert [(t.job, t.instance) for t in targets] == [(GATEWAY_JOB, stack.admin)]
    assert targets[0].scrape_url == f"http://{stack.admin}/metrics"
    assert [s.value for s in prom.query(f'{UP.name}{{job="{GATEWAY_JOB}"}}')] == [1.0]

    def evaluated() -> list[RuleStatus] | None:
        rules = prom.rules()
        return rules if rules and all(r.health != "unknown" for r in rules) else None

    statuses = prom.wait_for(evaluated, timeout=10, what="every rule evaluated")
    assert {r.name: r.health for r in statuses} == {r.name: "ok" for r in statuses}, statuses
    assert not prom.firing("GatewayDown")


def test_every_dashboard_query_evaluates_against_prometheus(stack: Stack) -> None:
    prom = stack.prom
    dashboard = json.loads(render_overview())
    values = {"job": GATEWAY_JOB, "instance": ".*", "route": ".*", "__rate_interval": RATE_INTERVAL}
    # wait until the rate windows hold traffic from both routes
    per_route = f"sum by (route) (rate({HTTP_REQUESTS.name}[{RATE_INTERVAL}])) > 0"
    prom.wait_for(
        lambda: len(prom.query(per_route)) == 2 or None,
        timeout=ALERT_WAIT,
        what="traffic on both routes",
    )
    idle_now = f'sum(rate({HTTP_REQUESTS.name}{{route="idle"}}[{RATE_INTERVAL}])) == 0'
    prom.wait_for(lambda: prom.query(idle_now) or None, timeout=ALERT_WAIT, what="route idle idle")
    end = time.time()
    results: dict[tuple[str, str], list[dict[str, str]]] = {}
    for q in panel_queries(dashboard):
        expr = substitute(q.expr, values)
        series = prom.query_range(expr, end - 20, end, 1)  # raises PrometheusError if it does not evaluate
        results[(q.panel_title, q.ref_id)] = [s.labels for s in series]
        if series:
            latest = prom.query(expr, at=end)
            results[(q.panel_title, q.ref_id)] = [s.labels | {"value": repr(s.value)} for s in latest]

    def only(title: str, ref: str = "A") -> list[dict[str, str]]:
        return results[(title, ref)]

    # An idle route (0/0 requests, a histogram with nothing in the window) has no point, never NaN.
    nan = [(key, r) for key, rows in results.items() for r in rows if r.get("value", "").lower() == "nan"]
    assert nan == []

    # the panels the traffic must fill, with the values it implies
    by_route = {r["route"]: float(r["value"]) for r in only("Error rate by route (5xx share)")}
    assert by_route == {"failing": 1.0, "healthy": 0.0}
    assert {r["route"] for r in only("Requests per second by route")} == {"failing", "healthy", "idle"}
    for ref in "ABC":
        assert {r["route"] for r in only("Latency P50 / P95 / P99 by route", ref)} == {"failing", "healthy"}
    assert {r["code"] for r in only("Responses by status code")} == {"200", "500"}
    assert [float(r["value"]) for r in only("Gateways up")] == [1.0]
    assert {(r["route"], r["value"]) for r in only("Backend up")} == {
        ("failing", "1.0"),
        ("healthy", "1.0"),
        ("idle", "1.0"),
    }
    assert {(r["route"], r["value"]) for r in only("Circuit breaker state")} == {
        ("failing", "0.0"),
        ("healthy", "0.0"),
        ("idle", "0.0"),
    }
    assert [float(r["value"]) for r in only("Open circuits")] == [0.0]
    assert len(only("Backend response time P95")) == 2
    for title, ref in [
        ("Requests/s", "A"),
        ("P95 latency", "A"),
        ("Active connections", "A"),
        ("Process CPU", "A"),
        ("Process memory (RSS) vs limit", "A"),
        ("Process memory (RSS) vs limit", "B"),
    ]:
        assert [r.get("instance", stack.admin) for r in only(title, ref)] == [stack.admin], (title, ref)
    rss, limit = (float(only("Process memory (RSS) vs limit", ref)[0]["value"]) for ref in "AB")
    assert 0 < rss < limit


def test_template_variable_queries_return_the_gateway(stack: Stack) -> None:
    prom = stack.prom
    assert GATEWAY_JOB in prom.label_values("job", HTTP_REQUESTS.name)
    assert prom.label_values("instance", f'{UP.name}{{job="{GATEWAY_JOB}"}}') == [stack.admin]
    match = f'{HTTP_REQUESTS.name}{{job=~"{GATEWAY_JOB}", instance=~".*"}}'
    assert prom.label_values("route", match) == ["failing", "healthy", "idle"]
