"""The generated Grafana dashboard: valid structure, clean layout, and every query lints clean."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboards.generate import iter_panels, lint_dashboard, panel_queries, render_overview
from dashboards.layout import GRID_WIDTH, Box, Size, place_rows
from dashboards.overview import TITLE, UID
from gatewatch.catalog import CATALOG, GATEWAY_JOB, HTTP_REQUEST_DURATION, HTTP_REQUESTS, UP
from gatewatch.promql_lint import MatrixSelector, parse, selectors, walk

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(render_overview())
    assert isinstance(data, dict)
    return data


def content_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in iter_panels(dashboard) if p["type"] != "row"]


def box(panel: dict[str, Any]) -> Box:
    g = panel["gridPos"]
    return Box(g["x"], g["y"], g["w"], g["h"])


def test_top_level(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] == TITLE == "Gatewatch — gateway overview"
    assert dashboard["uid"] == UID and len(UID) <= 40  # Grafana's uid limit
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["rows"] == [] and dashboard["panels"]  # panels with gridPos, not legacy rows
    assert "gatewatch" in dashboard["tags"]


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in iter_panels(dashboard)]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(ids) == len(set(ids))


def test_grid_positions_fit_and_never_overlap(dashboard: dict[str, Any]) -> None:
    boxes = [(p["title"], box(p)) for p in iter_panels(dashboard)]
    for title, b in boxes:
        assert b.x >= 0 and b.y >= 0 and b.w >= 1 and b.h >= 1, title
        assert b.x + b.w <= GRID_WIDTH, title
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1 :]:
            assert not a.overlaps(b), f"{ta!r} {a} overlaps {tb!r} {b}"


def test_rows_are_full_width_headers_above_their_panels(dashboard: dict[str, Any]) -> None:
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == [
        "Overview",
        "Traffic",
        "Latency",
        "Backends",
        "Resources",
        "Telemetry",
    ]
    current: dict[str, Any] | None = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            assert panel["gridPos"]["w"] == GRID_WIDTH and panel["gridPos"]["h"] == 1
            if current is not None:
                assert panel["gridPos"]["y"] > current["gridPos"]["y"]
            current = panel
        else:
            assert current is not None, f"{panel['title']} is above the first row"
            assert panel["gridPos"]["y"] > current["gridPos"]["y"]


def test_every_panel_has_prometheus_targets_with_an_expr(dashboard: dict[str, Any]) -> None:
    for panel in content_panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for t in targets:
            assert t["expr"].strip(), panel["title"]
            assert t["datasource"] == panel["datasource"]


# The panels the brief asks for, and the unit each must use.
EXPECTED_UNITS = {
    "Requests per second by route": "reqps",
    "Error rate by route (5xx share)": "percentunit",
    "Latency P50 / P95 / P99 by route": "s",
    "Active connections by instance": "short",
    "Backend up": None,  # state timeline: value mappings instead of a unit
    "Circuit breaker state": None,
    "Backend response time P95": "s",
    "Process CPU": "percentunit",
    "Process memory (RSS) vs limit": "bytes",
    "Telemetry dropped events": "cps",
}


def test_required_panels_and_units(dashboard: dict[str, Any]) -> None:
    panels = {p["title"]: p for p in content_panels(dashboard)}
    for title, unit in EXPECTED_UNITS.items():
        assert title in panels, f"missing panel {title!r}"
        if unit is not None:
            assert panels[title]["fieldConfig"]["defaults"]["unit"] == unit, title
    latency = panels["Latency P50 / P95 / P99 by route"]
    assert [t["legendFormat"] for t in latency["targets"]] == [
        "{{route}} p50",
        "{{route}} p95",
        "{{route}} p99",
    ]
    memory = panels["Process memory (RSS) vs limit"]["targets"]
    assert {s.metric for t in memory for s in selectors(parse(t["expr"]))} == {
        "process_resident_memory_bytes",
        "gateway_memory_limit_bytes",
    }


def test_state_panels_map_every_value_to_text(dashboard: dict[str, Any]) -> None:
    panels = {p["title"]: p for p in content_panels(dashboard)}
    circuit = panels["Circuit breaker state"]["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["text"] for k, v in circuit.items()} == {"0": "closed", "1": "open", "2": "half-open"}
    up = panels["Backend up"]["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["text"] for k, v in up.items()} == {"0": "down", "1": "up"}


def test_every_query_lints_clean_against_the_catalog(dashboard: dict[str, Any]) -> None:
    assert lint_dashboard(dashboard) == []


def test_the_dashboard_linter_can_fail(dashboard: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(dashboard).replace("sum by (le, route)", "sum by (le, rout)", 1))
    broken = json.loads(json.dumps(broken).replace(HTTP_REQUESTS.name, "http_request_total", 1))
    broken["templating"]["list"][2]["query"] = "label_values(up, route)"
    messages = [p.message for p in lint_dashboard(broken)]
    assert any("label 'rout'" in m for m in messages), messages
    assert any("unknown metric 'http_request_total'" in m for m in messages), messages
    assert any("label 'route' is not a label of 'up'" in m for m in messages), messages


def test_rates_use_rate_interval_and_selectors_use_the_variables(dashboard: dict[str, Any]) -> None:
    for q in panel_queries(dashboard):
        tree = parse(q.expr)
        for node in walk(tree):
            if isinstance(node, MatrixSelector):
                assert node.range == "$__rate_interval", (q.panel_title, q.expr)
        for sel in selectors(tree):
            assert sel.metric is not None
            matchers = {(m.label, m.op, m.value) for m in sel.matchers}
            assert ("job", "=~", "$job") in matchers, (q.panel_title, q.expr)
            assert ("instance", "=~", "$instance") in matchers, (q.panel_title, q.expr)
            spec = CATALOG.spec_for_series(sel.metric)
            assert spec is not None
            if "route" in spec.labels:
                assert ("route", "=~", "$route") in matchers, (q.panel_title, q.expr)


def test_latency_quantiles_group_by_le(dashboard: dict[str, Any]) -> None:
    quantiles = [q for q in panel_queries(dashboard) if "histogram_quantile" in q.expr]
    assert quantiles
    for q in quantiles:
        assert re.search(r"sum by \(le(, \w+)*\)", q.expr), q.expr
    assert any(f"{HTTP_REQUEST_DURATION.name}_bucket" in q.expr for q in quantiles)


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "route"]
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["job"]["current"]["value"] == GATEWAY_JOB
    assert variables["instance"]["query"] == f'label_values({UP.name}{{job=~"$job"}}, instance)'
    for name in ("instance", "route"):
        assert (
            variables[name]["multi"] and variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
        )
    # every $variable a query uses is defined (or is a Grafana built-in)
    defined = set(variables) | GRAFANA_BUILTINS
    for q in panel_queries(dashboard):
        for used in re.findall(r"\$\{?(\w+)", q.expr):
            assert used in defined, (used, q.expr)


# ---- the layout helper --------------------------------------------------------------------------


def test_place_rows_wraps_and_stacks() -> None:
    placed = place_rows([[Size(12, 8), Size(12, 8), Size(8, 4)], [Size(24, 3)]])
    (h1, p1), (h2, p2) = placed
    assert h1 == Box(0, 0, 24, 1)
    assert p1 == [Box(0, 1, 12, 8), Box(12, 1, 12, 8), Box(0, 9, 8, 4)]
    assert h2 == Box(0, 13, 24, 1) and p2 == [Box(0, 14, 24, 3)]
    with pytest.raises(ValueError):
        place_rows([[Size(25, 1)]])


@given(st.lists(st.lists(st.builds(Size, st.integers(1, 24), st.integers(1, 12)), max_size=8), max_size=6))
def test_place_rows_never_overlaps(rows: list[list[Size]]) -> None:
    boxes = [b for header, panels in place_rows(rows) for b in (header, *panels)]
    for i, a in enumerate(boxes):
        assert a.x + a.w <= GRID_WIDTH
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)
