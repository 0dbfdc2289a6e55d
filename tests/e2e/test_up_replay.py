"""The main job end to end: ``gatewatch up --replay`` on the real 2015 Apache log.

Every parsable line becomes one request through the real gateway to the real demo upstreams;
the collector's counts per route and status must equal counts computed here, independently,
straight from the file.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from gatewatch.up import REPLAY_ROUTES
from tests.support.procs import gatewatch_cmd, require_shared_data

# The combined format, written out once more here on purpose: the test must not share the
# product's parser, or a parser bug would agree with itself.
COMBINED = re.compile(
    r'^(?P<ip>\S+) \S+ \S+ \[(?P<ts>[^\]]+)\] "(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[0-9.]+" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-) "[^"]*" "[^"]*"\s*$'
)


def route_of(path: str) -> str:
    best = max((p for _, p in REPLAY_ROUTES if path.startswith(p)), key=len)
    return next(name for name, p in REPLAY_ROUTES if p == best)


def expected_counts(log: Path) -> tuple[int, int, Counter[tuple[str, int]]]:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    counts: Counter[tuple[str, int]] = Counter()
    parsed = 0
    for line in lines:
        m = COMBINED.match(line)
        if m is None:
            continue
        parsed += 1
        path = m["target"].split("?", 1)[0]
        counts[(route_of(path), int(m["status"]))] += 1
    return parsed, len(lines) - parsed, counts


@pytest.mark.integration
def test_up_replays_the_apache_log_and_the_collector_counts_every_request(tmp_path: Path) -> None:
    log = require_shared_data("access-logs/apache_logs_2015.log")
    parsed, unparsed, counts = expected_counts(log)
    assert parsed > 9_900  # the file is 10,000 lines of mostly clean traffic

    summary_path = tmp_path / "summary.json"
    ports = ["--gateway-port", "0", "--admin-port", "0", "--collector-port", "0", "--upstream-port", "0"]
    proc = subprocess.run(
        gatewatch_cmd(
            "up", "--replay", str(log), "--exit-when-done", "--summary-json", str(summary_path),
            "--workdir", str(tmp_path / "up"), "--concurrency", "32", *ports,
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    summary = json.loads(summary_path.read_text())
    assert summary["requests"] == parsed
    assert summary["unparsed_lines"] == unparsed
    routes = summary["routes"]
    assert sum(r["requests"] for r in routes.values()) == parsed

    seen: Counter[tuple[str, int]] = Counter()
    for name, r in routes.items():
        for code, n in r["status_codes"].items():
            seen[(name, int(code))] = n
        assert set(r) >= {"requests", "errors", "p50_ms", "p95_ms", "p99_ms"}
        assert r["errors"] == sum(n for code, n in r["status_codes"].items() if int(code) >= 500)
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    assert seen == counts

    # The table and the generated files are printed at the end, and the files exist.
    out = proc.stdout
    assert re.search(r"^blog\s+\d+\s+\d+", out, re.M), out
    written = [Path(line.strip()) for line in out.splitlines() if line.startswith("  ") and "/" in line]
    assert any(p.suffix == ".json" and p.exists() for p in written), out
    assert any(p.name.endswith(".rules.yml") and p.exists() for p in written), out

    # The gateway's ECS access log has one line per request too, and the collector's
    # percentiles are within 1% of the exact percentiles of those very durations.
    access = (tmp_path / "up" / "logs" / "access.ndjson").read_text().splitlines()
    assert len(access) == parsed
    durations: dict[str, list[float]] = {}
    for line in access:
        event = json.loads(line)
        durations.setdefault(event["gateway.route"], []).append(event["event.duration"] / 1e6)
    assert set(durations) == set(routes)
    worst = 0.0
    for name, values in durations.items():
        values.sort()
        for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
            exact = values[math.floor(q * (len(values) - 1))]  # the rank the sketch documents
            error = abs(routes[name][key] - exact) / exact
            worst = max(worst, error)
            assert error <= 0.01, (name, key, routes[name][key], exact)
    print(f"worst relative percentile error over {len(routes)} routes: {worst:.4%}")
