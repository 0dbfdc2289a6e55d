"""Write the generated Grafana dashboards, and read their queries back (for linting and live checks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder

from dashboards.overview import build_dashboard
from gatewatch.promql_lint import LintProblem, VType, lint, lint_label_values

OVERVIEW_FILENAME = "gateway-overview.json"


def render_overview() -> str:
    data = build_dashboard().to_json_data()
    # sort_keys and a trailing newline keep the committed file stable and diff-friendly
    return json.dumps(data, cls=DashboardEncoder, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    return {OVERVIEW_FILENAME: render_overview()}


def write_all(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, content in render_all().items():
        path = out_dir / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


@dataclass(frozen=True)
class PanelQuery:
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including panels nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    """Every PromQL target of a dashboard JSON document."""
    out: list[PanelQuery] = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            out.append(
                PanelQuery(panel["id"], panel["title"], target.get("refId", ""), target.get("expr", ""))
            )
    return out


def lint_dashboard(dashboard: dict[str, Any]) -> list[LintProblem]:
    """Lint every panel query and every query-type template variable against the catalog."""
    problems: list[LintProblem] = []
    for query in panel_queries(dashboard):
        where = f"panel {query.panel_title!r} target {query.ref_id}"
        if not query.expr.strip():
            problems.append(LintProblem("", 0, f"{where} has no expr"))
            continue
        found = lint(query.expr, want=VType.VECTOR)
        problems.extend(LintProblem(p.expr, p.pos, f"{where}: {p.message}") for p in found)
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            problems.extend(lint_label_values(str(variable.get("query", ""))))
    return problems
