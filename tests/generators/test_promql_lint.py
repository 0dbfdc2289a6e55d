"""The PromQL linter: parsing, extraction, and the mistakes it must catch."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewatch.catalog import CATALOG, HTTP_REQUEST_DURATION, HTTP_REQUESTS, MetricType
from gatewatch.promql import format_duration, parse_duration
from gatewatch.promql_lint import (
    Aggregation,
    Binary,
    Call,
    MatrixSelector,
    PromQLSyntaxError,
    RuleSpec,
    Subquery,
    VectorSelector,
    label_names,
    lint,
    lint_label_values,
    lint_rules,
    metric_names,
    parse,
    selectors,
    substitute,
)
from tests.support.procs import require_binary


def messages(expr: str, **kw: object) -> list[str]:
    return [p.message for p in lint(expr, **kw)]  # type: ignore[arg-type]


# ---- parsing and extraction -------------------------------------------------------------------


def test_parses_the_shapes_the_generators_use() -> None:
    tree = parse(
        'histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{job=~"$job",'
        ' route!="unmatched"}[$__rate_interval] offset 1m)))'
    )
    assert isinstance(tree, Call) and tree.func == "histogram_quantile"
    agg = tree.args[1]
    assert isinstance(agg, Aggregation) and agg.grouping == ("le", "route") and not agg.without
    rate = agg.expr
    assert isinstance(rate, Call) and isinstance(rate.args[0], MatrixSelector)
    matrix = rate.args[0]
    assert matrix.range == "$__rate_interval" and matrix.offset == "1m"
    assert [(m.label, m.op, m.value) for m in matrix.selector.matchers] == [
        ("job", "=~", "$job"),
        ("route", "!=", "unmatched"),
    ]


def test_precedence_and_matching_modifiers() -> None:
    tree = parse("a:b:c + on (x) group_left (y) d * 2 > bool 1 or e unless f")
    # 'or' binds loosest, then 'unless', then '>', then '+', then '*'
    assert isinstance(tree, Binary) and tree.op == "or"
    assert isinstance(tree.rhs, Binary) and tree.rhs.op == "unless"
    cmp = tree.lhs
    assert isinstance(cmp, Binary) and cmp.op == ">" and cmp.return_bool
    plus = cmp.lhs
    assert isinstance(plus, Binary) and plus.op == "+"
    assert plus.matching is not None and plus.matching.on and plus.matching.labels == ("x",)
    assert plus.matching.card == "group_left" and plus.matching.include == ("y",)
    assert isinstance(plus.rhs, Binary) and plus.rhs.op == "*"
    assert isinstance(plus.lhs, VectorSelector) and plus.lhs.name == "a:b:c"


def test_power_is_right_associative_and_binds_tighter_than_unary_minus() -> None:
    tree = parse("-2 ^ 3 ^ 2")
    assert tree.__class__.__name__ == "Unary"
    inner = tree.expr  # type: ignore[union-attr]
    assert isinstance(inner, Binary) and inner.op == "^" and isinstance(inner.rhs, Binary)


def test_subquery_aggregation_grouping_after_body_and_comments() -> None:
    tree = parse("max_over_time(sum(rate(x[1m]))[10m:30s]) # trailing comment")
    assert isinstance(tree, Call) and isinstance(tree.args[0], Subquery)
    assert tree.args[0].range == "10m" and tree.args[0].step == "30s"
    agg = parse("sum(rate(x[5m])) without (instance, code)")
    assert isinstance(agg, Aggregation) and agg.without and agg.grouping == ("instance", "code")
    top = parse("topk(3, x)")
    assert isinstance(top, Aggregation) and top.param is not None


def test_extracts_metrics_and_labels_from_every_clause() -> None:
    expr = (
        'sum by (route) (rate(http_requests_total{code=~"5..", job="api-gateway"}[5m]))'
        " / ignoring (method) group_left (backend) max without (instance) (backend_up)"
        ' and on (route) label_replace(up, "route", "$1", "instance", "(.*)")'
        ' or {__name__="active_connections"}'
    )
    tree = parse(expr)
    assert metric_names(tree) == {"http_requests_total", "backend_up", "up", "active_connections"}
    assert label_names(tree) == {"code", "job", "route", "method", "backend", "instance"}
    assert [s.metric for s in selectors(tree)] == [
        "http_requests_total",
        "backend_up",
        "up",
        "active_connections",
    ]


@pytest.mark.parametrize(
    ("expr", "pos"),
    [
        ("rate(x[5m]", 10),
        ('x{job="a"', 9),
        ("sum by (route (x)", 14),
        ("x[5m] offset", 12),
        ("x{job=a}", 6),
        ('x{job="a}', 6),
        ("x + ", 4),
        ("x $", 2),
        ("x[5]", 2),
        ("x group_left y", 2),
        ("5 x", 2),
        ("atan2(up, 1)", 0),
        ("sum by (job) by (job) (up)", 13),
    ],
)
def test_syntax_errors_carry_the_offset(expr: str, pos: int) -> None:
    with pytest.raises(PromQLSyntaxError) as info:
        parse(expr)
    assert info.value.pos == pos, info.value
    problems = lint(expr)
    assert len(problems) == 1 and problems[0].message.startswith("syntax error")


# Valid PromQL that Prometheus itself accepts (checked with promtool below).
VALID = [
    "up",
    'sum by (le) (rate(http_request_duration_seconds_bucket{job="a"}[5m]))',
    "rate(http_requests_total[5m] offset 1h)",
    "rate(http_requests_total[5m] offset -1h)",
    "http_requests_total @ 1609746000",
    "max_over_time(up[1h:5m])",
    "max_over_time(rate(http_requests_total[1m])[10m:])",
    "-up ^ 2",
    "up > bool 0.5",
    "1 + 2 * 3 % 4",
    "up atan2 1 or up unless up",
    'label_join(up, "x", ",", "instance", "job")',
    'count_values("version", up) by (job)',
    "sum(up) without (instance)",
    "topk(3, sum by (route) (rate(http_requests_total[5m])))",
    "absent(up{job='x'})",
    "vector(1) + on () group_left () scalar(up)",
    "http_requests_total{code=~`5..`}",
    "0x1F + 1e3 + .5 + Inf - NaN",
    "round(up, 0.1)",
    "time() - process_start_time_seconds",
    "a:recorded:rate5m / ignoring (code) group_left http_requests_total",
    "sum(up) by (job)",
    "rate(x[1h30m])",
    "x offset 5m",
]


def test_accepts_what_prometheus_accepts(tmp_path: Path) -> None:
    for expr in VALID:
        parse(expr)
    promtool = require_binary("promtool")
    rules = {
        "groups": [{"name": "g", "rules": [{"record": f"r{i}", "expr": e} for i, e in enumerate(VALID)]}]
    }
    path = tmp_path / "valid.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- what the linter must catch ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("rate(http_request_total[5m])", "unknown metric 'http_request_total'"),
        ('rate(http_requests_total{rout="x"}[5m])', "did you mean 'route'"),
        ('backend_up{status="1"}', "label 'status' is not a label of 'backend_up'"),
        ("sum by (backend) (rate(http_requests_total[5m]))", "label 'backend' in sum by"),
        (
            "histogram_quantile(0.9, sum by (route) (rate(http_request_duration_seconds_bucket[5m])))",
            "histogram_quantile() needs the 'le' label",
        ),
        ("rate(http_requests_total)", "argument 1 of rate() expects range vector"),
        ("sum(rate(http_requests_total[5m])", "syntax error"),
        ("rates(http_requests_total[5m])", "did you mean rate()"),
        ("1 > 2", "need the bool modifier"),
        (
            "sum by (instance) (rate(http_requests_total[5m])) / process_resident_memory_bytes",
            "never match",
        ),
        (
            "sum by (route) (rate(http_requests_total[5m]))"
            " / on (instance) sum by (instance) (active_connections)",
            "label 'instance' in on(...) (left side)",
        ),
        (
            "active_connections * on (instance) group_left (route) sum by (instance) (backend_up)",
            "label 'route' in group_left",
        ),
        ('label_replace(up, "x", "$1", "rout", "(.*)")', "label_replace() source"),
        ('{job="api-gateway"}', "no metric name"),
        ('sum by (route) (label_replace(up, "x", "$1", "job", "(.*)"))', "label 'route' in sum by"),
        ("instance_route:http_requests:rate5m", "unknown metric"),
        ("rate(active_connections[5m])", "rate() of 'active_connections', a gauge"),
        ("increase(backend_up[1h])", "increase() of 'backend_up', a gauge"),
    ],
)
def test_catches(expr: str, needle: str) -> None:
    found = messages(expr)
    assert any(needle in m for m in found), found


def test_the_examples_above_that_are_right_lint_clean() -> None:
    for expr in [
        "sum by (instance) (rate(http_requests_total[5m]))"
        " / on (instance) group_left sum by (instance, job) (up)",
        'label_replace(up, "route", "$1", "instance", "(.*)")'
        " * on (route, instance, job) group_right backend_up",
        "process_resident_memory_bytes / gateway_memory_limit_bytes",
        "up == 0 or absent(up)",
        'count_values("state", circuit_breaker_state) > 0',
        "topk(3, sum by (route) (rate(http_requests_total[5m])))",
    ]:
        assert messages(expr) == [], expr


def test_recording_rules_become_known_series_with_their_labels() -> None:
    rules = [
        RuleSpec("sum by (job, route) (rate(http_requests_total[5m]))", record="route:http_requests:rate5m"),
        RuleSpec("route:http_requests:rate5m > 1"),
        # 'instance' was aggregated away by the recording rule
        RuleSpec("sum by (instance) (route:http_requests:rate5m)"),
        RuleSpec("later:not_yet:recorded > 1"),
        RuleSpec("sum(rate(http_requests_total[5m]))", record="later:not_yet:recorded"),
    ]
    problems, recorded = lint_rules(rules)
    assert recorded["route:http_requests:rate5m"] == {"job", "route"}
    assert [(p.expr, p.message.split(":")[0]) for p in problems] == [
        (
            "sum by (instance) (route:http_requests:rate5m)",
            "label 'instance' in sum by (...) is not available here",
        ),
        ("later:not_yet:recorded > 1", "unknown metric 'later"),
    ]


def test_lint_rules_rejects_a_record_that_shadows_a_catalog_series() -> None:
    problems, _ = lint_rules([RuleSpec("sum(up)", record="up")])
    assert [p.message for p in problems] == ["series 'up' is defined twice"]


def test_grafana_label_values_queries() -> None:
    assert lint_label_values('label_values(up{job=~"$job"}, instance)') == []
    assert lint_label_values("label_values(route)") == []
    assert "not a label of" in lint_label_values("label_values(up, route)")[0].message
    assert "no catalog metric" in lint_label_values("label_values(nope)")[0].message
    assert "unknown metric" in lint_label_values("label_values(upp, job)")[0].message
    assert "expected label_values" in lint_label_values("query_result(up)")[0].message


def test_substitute_grafana_variables() -> None:
    text = 'rate(x{job=~"$job", i=~"${instance}", r=~"${route:regex}"}[$__rate_interval])'
    values = {"job": "a", "instance": ".*", "route": "b|c", "__rate_interval": "4s"}
    assert substitute(text, values) == 'rate(x{job=~"a", i=~".*", r=~"b|c"}[4s])'
    with pytest.raises(KeyError):
        substitute("$missing", values)


# ---- properties -------------------------------------------------------------------------------

SERIES = sorted(s for spec in CATALOG.metrics for s in spec.series_names())


@st.composite
def catalog_expressions(draw: st.DrawFn) -> tuple[str, str, frozenset[str]]:
    """A random valid expression over one catalog series: (expr, series, labels it refers to)."""
    series = draw(st.sampled_from(SERIES))
    allowed = sorted(CATALOG.allowed_labels(series))
    matched = draw(st.lists(st.sampled_from(allowed), unique=True, max_size=3))
    ops = draw(
        st.lists(st.sampled_from(["=", "!=", "=~", "!~"]), min_size=len(matched), max_size=len(matched))
    )
    sep = draw(st.sampled_from([",", ", ", " ,  "]))
    body = sep.join(f'{label}{op}"v"' for label, op in zip(matched, ops, strict=True))
    empty_braces: bool = draw(st.booleans())  # "x{}" is as valid as "x"
    expr = f"{series}{{{body}}}" if matched or empty_braces else series
    spec = CATALOG.spec_for_series(series)
    assert spec is not None
    if spec.type is MetricType.COUNTER or series.endswith("_bucket"):
        window = draw(st.sampled_from(["5m", "$__rate_interval", "1h30m", "30s"]))
        expr = f"{draw(st.sampled_from(['rate', 'increase', 'irate']))}({expr}[{window}])"
    grouping = draw(st.lists(st.sampled_from(allowed), unique=True, max_size=3))
    if series.endswith("_bucket") and draw(st.booleans()):
        expr = f"histogram_quantile(0.9, sum by ({', '.join(sorted({*grouping, 'le'}))}) ({expr}))"
    elif grouping:
        agg = draw(st.sampled_from(["sum", "max", "avg", "count"]))
        expr = f"{agg} by ({', '.join(grouping)}) ({expr})"
    return expr, series, frozenset(matched) | frozenset(grouping)


@settings(max_examples=300, deadline=None)
@given(catalog_expressions())
def test_valid_catalog_expressions_lint_clean_and_extract_exactly(
    case: tuple[str, str, frozenset[str]],
) -> None:
    expr, series, labels = case
    assert messages(expr) == []
    tree = parse(expr)
    assert metric_names(tree) == {series}
    assert label_names(tree) - {"le"} == labels - {"le"}


@settings(max_examples=200, deadline=None)
@given(catalog_expressions(), st.sampled_from(["rout", "status", "path", "host", "le2", "Instance"]))
def test_an_unknown_label_anywhere_is_caught(case: tuple[str, str, frozenset[str]], bad: str) -> None:
    expr, series, _ = case
    # put the wrong label into the selector's matchers
    broken = (
        expr.replace(series + "{", series + "{" + bad + '="x", ', 1)
        if series + "{" in expr
        else expr.replace(series, series + "{" + bad + '="x"}', 1)
    )
    found = messages(broken)
    assert any(f"label {bad!r}" in m for m in found), (broken, found)


@given(st.integers(min_value=1, max_value=10**12))
def test_durations_round_trip(ms: int) -> None:
    td = timedelta(milliseconds=ms)
    text = format_duration(td)
    assert parse_duration(text) == td
    assert parse(f"rate(x[{text}])") is not None  # and the linter's lexer reads it as a duration


def test_format_duration_examples() -> None:
    assert format_duration(timedelta(minutes=5)) == "5m"
    assert format_duration(timedelta(seconds=90)) == "1m30s"
    assert format_duration(timedelta(hours=24)) == "1d"
    assert format_duration(timedelta(milliseconds=1500)) == "1s500ms"
    with pytest.raises(ValueError):
        format_duration(timedelta(0))
    with pytest.raises(ValueError):
        parse_duration("5 m")


def test_histogram_helpers_use_catalog_names() -> None:
    from gatewatch.promql import bucket

    assert bucket(HTTP_REQUEST_DURATION) == "http_request_duration_seconds_bucket"
    with pytest.raises(ValueError):
        bucket(HTTP_REQUESTS)
