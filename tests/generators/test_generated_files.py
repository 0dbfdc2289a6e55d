"""The committed generated files are exactly what the generators produce now (never stale)."""

from __future__ import annotations

import re
import tokenize
from pathlib import Path

import pytest

from alerts.generate import render_all as render_alerts
from dashboards.generate import render_all as render_dashboards
from gatewatch.catalog import CATALOG, UP
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


def test_cli_generate_into_an_unwritable_place_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["generate", "--out", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert err == f"gatewatch generate: cannot write {blocker / 'dashboards'}: Not a directory\n"


def _string_literals(path: Path) -> list[tuple[int, str]]:
    with path.open("rb") as f:
        return [
            (tok.start[0], tok.string) for tok in tokenize.tokenize(f.readline) if tok.type == tokenize.STRING
        ]


def test_generators_take_metric_names_from_the_catalog_not_string_literals() -> None:
    """A metric name typed into a generator would survive a catalog rename; the spec's .name cannot."""
    names = {s for spec in CATALOG.metrics for s in spec.series_names()}
    patterns = {n: re.compile(rf"\b{re.escape(n)}\b" if n != UP.name else rf"\b{n}\s*[{{\[(]") for n in names}
    sources = [
        *(REPO / "dashboards").glob("*.py"),
        *(REPO / "alerts").glob("*.py"),
        REPO / "gatewatch" / "promql.py",
    ]
    found = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in sources
        for line, literal in _string_literals(path)
        for name, pattern in patterns.items()
        if pattern.search(literal)
    ]
    assert found == []
