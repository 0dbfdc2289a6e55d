"""Write the generated alerting files: rules, promtool unit tests, Prometheus and Alertmanager configs."""

from __future__ import annotations

from pathlib import Path

from alerts.configs import (
    AlertmanagerSetup,
    PrometheusSetup,
    render_alertmanager_config,
    render_prometheus_config,
)
from alerts.rules import build_rules, render_rules
from alerts.unittests import build_unit_tests, render_test_file

RULES_FILENAME = "gateway.rules.yml"


def render_all() -> dict[str, str]:
    """Relative path -> file content for everything :func:`write_all` writes (production values)."""
    files = {
        RULES_FILENAME: render_rules(build_rules()),
        "prometheus.yml": render_prometheus_config(PrometheusSetup(rule_files=(RULES_FILENAME,))),
        "alertmanager.yml": render_alertmanager_config(AlertmanagerSetup()),
    }
    for test_file in build_unit_tests():
        files[f"tests/{test_file.filename}"] = render_test_file(test_file)
    return files


def write_all(out_dir: Path) -> list[Path]:
    written: list[Path] = []
    for relative, content in render_all().items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
