"""The committed generated files are exactly what the generators produce now (never stale)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.generate import render_all as render_alerts
from dashboards.generate import render_all as render_dashboards
from gatewatch.cli import main
from tests.support.procs import REPO

FIX = "run `.venv/bin/gatewatch generate --out .` and commit the result"


@pytest.mark.parametrize(
    ("folder", "render"),
    [("dashboards", render_dashboards), ("alerts", render_alerts)],
)
def test_committed_files_are_up_to_date(folder: str, render: object) -> None:
    rendered = render()  # type: ignore[operator]
    for relative, content in rendered.items():
        path = REPO / folder / relative
        assert path.exists(), f"{path} is missing: {FIX}"
        assert path.read_text(encoding="utf-8") == content, f"{path} is stale: {FIX}"


def test_no_leftover_generated_files() -> None:
    """A renamed unit-test file must not leave its old copy behind, still run by promtool."""
    expected = {f"tests/{Path(k).name}" for k in render_alerts() if k.startswith("tests/")}
    present = {f"tests/{p.name}" for p in (REPO / "alerts" / "tests").glob("*.yml")}
    assert present == expected
    assert {p.name for p in (REPO / "dashboards").glob("*.json")} == set(render_dashboards())


def test_cli_generate_writes_the_same_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--out", str(tmp_path)]) == 0
    printed = {Path(line) for line in capsys.readouterr().out.split()}
    expected = {tmp_path / "dashboards" / k for k in render_dashboards()} | {
        tmp_path / "alerts" / k for k in render_alerts()
    }
    assert printed == expected
    for path in expected:
        folder = "dashboards" if path.parent == tmp_path / "dashboards" else "alerts"
        relative = path.relative_to(tmp_path / folder).as_posix()
        assert path.read_text(encoding="utf-8") == (REPO / folder / relative).read_text(encoding="utf-8")
