"""Alert rules, promtool unit tests, and the Prometheus/Alertmanager configs, checked by the real tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from alerts.configs import AlertmanagerSetup, render_alertmanager_config
from alerts.generate import RULES_FILENAME, render_all
from alerts.rules import (
    AlertRule,
    RecordingRule,
    RuleThresholds,
    RuleTimings,
    build_rules,
    lint_rule_file,
    lint_specs,
    render_rules,
)
from alerts.unittests import build_unit_tests
from gatewatch.catalog import CATALOG, GATEWAY_JOB
from gatewatch.promql_lint import lint, lint_rules, parse
from tests.support.procs import REPO, require_binary

ALERTS = REPO / "alerts"
SEED_ALERTS = {
    # name: (severity, for)
    "GatewayDown": ("critical", "30s"),
    "HighErrorRate": ("critical", "2m"),
    "SlowResponse": ("critical", "5m"),
    "HighCPUUsage": ("warning", "10m"),
    "MemoryUsageHigh": ("warning", "5m"),
}


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, cwd=cwd)


def rule_file() -> dict[str, list[dict[str, object]]]:
    data = yaml.safe_load((ALERTS / RULES_FILENAME).read_text())
    assert isinstance(data, dict)
    return data


# ---- the rules themselves ----------------------------------------------------------------------


def test_the_seed_alerts_with_their_severity_and_for() -> None:
    rules = [r for g in rule_file()["groups"] for r in g["rules"]]  # type: ignore[attr-defined]
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert {name: (a["labels"]["severity"], a["for"]) for name, a in alerts.items()} == SEED_ALERTS
    for name, a in alerts.items():
        annotations = a["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "$labels" in annotations["summary"] or "$labels" in annotations["description"], name


def test_gateway_down_covers_down_and_vanished_targets() -> None:
    expr = next(r for r in build_rules().alerts if r.alert == "GatewayDown").expr
    assert expr == f'up{{job="{GATEWAY_JOB}"}} == 0 or absent(up{{job="{GATEWAY_JOB}"}})'


def test_rules_lint_clean_and_a_broken_rule_file_does_not() -> None:
    problems, recorded = lint_rules(lint_specs(build_rules()))
    assert problems == []
    assert recorded["instance_route:http_requests:rate5m"] == {"job", "instance", "route"}
    text = (ALERTS / RULES_FILENAME).read_text()
    assert lint_rule_file(text) == []
    broken = text.replace(
        "sum by (job, instance, route) (rate(http_requests_total",
        "sum by (job, instance, rout) (rate(http_requests_total",
        1,
    )
    assert any("label 'rout'" in p.message for p in lint_rule_file(broken))
    broken = text.replace("process_resident_memory_bytes", "process_resident_memory", 1)
    assert any("unknown metric 'process_resident_memory'" in p.message for p in lint_rule_file(broken))


def test_recording_rule_names_follow_the_level_metric_operations_convention() -> None:
    for rule in build_rules().recording:
        level, metric, operations = rule.record.split(":")
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", level), rule.record
        assert re.fullmatch(r"[a-z][a-z0-9_]*", metric) and not metric.endswith("_total"), rule.record
        assert re.fullmatch(r"[a-z0-9_]+", operations), rule.record
        assert CATALOG.spec_for_series(rule.record) is None


def _normalised(rule: RecordingRule | AlertRule, window: str) -> str:
    """The expression with the rate window replaced by a placeholder."""
    return rule.expr.replace(f"[{window}]", "[W]").replace(f"rate{window}", "rateW")


def test_fast_rules_differ_from_production_only_in_time_constants() -> None:
    fast_timings = RuleTimings(
        rate_window=timedelta(seconds=4),
        gateway_down_for=timedelta(seconds=2),
        error_rate_for=timedelta(seconds=2),
        slow_response_for=timedelta(seconds=2),
        cpu_for=timedelta(seconds=2),
        memory_for=timedelta(seconds=2),
    )
    prod, fast = build_rules(), build_rules(fast_timings)
    assert len(prod.rules) == len(fast.rules)
    for p, f in zip(prod.rules, fast.rules, strict=True):
        assert _normalised(p, "5m") == _normalised(f, "4s")
        assert type(p) is type(f)
        if isinstance(p, AlertRule) and isinstance(f, AlertRule):
            assert (p.alert, p.severity) == (f.alert, f.severity)
            assert f.for_ == timedelta(seconds=2)
    fast_text = render_rules(fast)
    assert "[5m]" not in fast_text and "rate5m" not in fast_text and "for: 2s" in fast_text
    assert lint_rules(lint_specs(fast))[0] == []


def test_runbook_urls_point_at_sections_of_docs_runbooks() -> None:
    runbooks = (REPO / "docs" / "runbooks.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbooks.splitlines()
        if line.startswith("## ")
    }
    for alert in build_rules().alerts:
        path, _, anchor = alert.runbook_url.partition("#")
        assert path == "docs/runbooks.md" and anchor in anchors, alert.runbook_url


# ---- promtool ----------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    proc = run(promtool, "check", "rules", str(ALERTS / RULES_FILENAME))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(build_rules().rules)} rules found" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    promtool = require_binary("promtool")
    files = sorted(str(p) for p in (ALERTS / "tests").glob("*.test.yml"))
    assert len(files) == len(build_unit_tests())
    proc = run(promtool, "test", "rules", *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(files), proc.stdout


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for tf in build_unit_tests():
        for case in tf.cases:
            for check in case.alerts:
                (firing if check.expected else quiet).add(check.alertname)
            for series in case.series:  # the input series name catalog metrics and labels
                assert lint(series.series) == [], series.series
            for x in case.exprs:
                parse(x.expr)
    assert firing == quiet == set(SEED_ALERTS)


def _promtool_tests_against(tmp_path: Path, rules_text: str) -> subprocess.CompletedProcess[str]:
    """Run the committed unit tests against a different rule file."""
    promtool = require_binary("promtool")
    (tmp_path / RULES_FILENAME).write_text(rules_text)
    shutil.copytree(ALERTS / "tests", tmp_path / "tests")
    files = sorted(str(p) for p in (tmp_path / "tests").glob("*.test.yml"))
    return run(promtool, "test", "rules", *files)


@pytest.mark.parametrize(
    ("mutation", "failure"),
    [
        ("no traffic guard", "name: a trickle of errors below the minimum traffic stays quiet"),
        ("error rate for 1m", "name: 20% errors fire after 2m, only on the failing route"),
        ("no absent()", "name: a target that vanished fires after 30s"),
        ("NaN quantile", 'route="orders"} NaN'),
    ],
)
def test_the_unit_tests_catch_broken_rules(tmp_path: Path, mutation: str, failure: str) -> None:
    if mutation == "no traffic guard":
        text = render_rules(build_rules(thresholds=RuleThresholds(min_request_rate=0)))
    elif mutation == "error rate for 1m":
        text = render_rules(build_rules(RuleTimings(error_rate_for=timedelta(minutes=1))))
    elif mutation == "no absent()":
        text = render_all()[RULES_FILENAME].replace(f' or absent(up{{job="{GATEWAY_JOB}"}})', "")
    else:
        text = render_all()[RULES_FILENAME].replace("_bucket:rate5m) >= 0", "_bucket:rate5m)")
    assert text != render_all()[RULES_FILENAME]
    proc = _promtool_tests_against(tmp_path, text)
    assert proc.returncode != 0, proc.stdout
    assert failure in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# ---- Prometheus and Alertmanager configs -------------------------------------------------------


def test_example_prometheus_config_is_valid_and_scrapes_both_jobs() -> None:
    promtool = require_binary("promtool")
    proc = run(promtool, "check", "config", str(ALERTS / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load((ALERTS / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == {GATEWAY_JOB: ["127.0.0.1:9901"], "gatewatch-collector": ["127.0.0.1:9300"]}
    assert config["rule_files"] == [RULES_FILENAME]


def test_alertmanager_config_is_valid() -> None:
    amtool = require_binary("amtool")
    proc = run(amtool, "check-config", str(ALERTS / "alertmanager.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "alertname=HighErrorRate"], "pagerduty-critical,slack-critical"),
        (["severity=warning", "alertname=HighCPUUsage"], "slack-warning"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receivers: str) -> None:
    amtool = require_binary("amtool")
    proc = run(amtool, "config", "routes", "test", f"--config.file={ALERTS / 'alertmanager.yml'}", *labels)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == receivers


def test_alertmanager_secrets_come_from_files_only() -> None:
    config = yaml.safe_load((ALERTS / "alertmanager.yml").read_text())
    keys: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                keys.append(str(k))
                collect(v)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(config)
    for secret in ("routing_key", "service_key", "api_url", "auth_token", "password"):
        assert secret not in keys, f"inline secret field {secret!r}"
    assert {"routing_key_file", "api_url_file"} <= set(keys)


def test_alertmanager_test_setup_points_pagerduty_at_a_local_receiver() -> None:
    text = render_alertmanager_config(AlertmanagerSetup(pagerduty_url="http://127.0.0.1:1/v2/enqueue"))
    receivers = {r["name"]: r for r in yaml.safe_load(text)["receivers"]}
    assert receivers["pagerduty-critical"]["pagerduty_configs"][0]["url"] == "http://127.0.0.1:1/v2/enqueue"
