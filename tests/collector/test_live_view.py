"""The live view, rendered by real headless Chromium against a real collector process."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from tests.collector.helpers import event
from tests.support.browser import dump_dom, png_size, screenshot
from tests.support.procs import free_port, gatewatch_cmd, running

pytestmark = pytest.mark.integration

# Kept after the run so a person can look at it (CI prints the path).
SHOT_DIR = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def post_events(base: str, lines: list[bytes]) -> None:
    req = urllib.request.Request(
        f"{base}/v1/events",
        data=b"\n".join(lines) + b"\n",
        headers={"content-type": "application/x-ndjson"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read()) == {"accepted": len(lines)}


def test_live_view_shows_every_route_backend_and_figure(tmp_path: Path) -> None:
    SHOT_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(f"listen: 127.0.0.1:{port}\nstore:\n  path: {tmp_path / 'events.sqlite3'}\n")
    base = f"http://127.0.0.1:{port}"
    lines = []
    for i in range(300):  # users: 300 requests, all 200, 10 ms .. 40 ms
        lines.append(event(route="users", duration_ns=(10 + i % 31) * 1_000_000).to_json_bytes())
    for i in range(100):  # orders: 100 requests, 25 of them 500s; its backend's circuit is open
        status = 500 if i % 4 == 0 else 200
        lines.append(
            event(
                route="orders", status=status, outcome="failure" if status == 500 else "success",
                backend="10.0.0.2:8080", circuit_state="open", duration_ns=1_500_000_000,
            ).to_json_bytes()
        )  # fmt: skip
    with running(
        gatewatch_cmd("collector", "--config", str(config)),
        ready_url=f"{base}/healthz",
        log=tmp_path / "collector.log",
    ):
        post_events(base, lines)
        dom = dump_dom(f"{base}/live?window=total", tmp_path / "profile")
        shot = screenshot(f"{base}/live?window=total", SHOT_DIR / "live-view.png", tmp_path / "profile")

    assert 'data-loaded="1"' in dom, dom[:2000]
    rows = {
        m["name"]: m["cells"]
        for m in re.finditer(
            r'<tr class="(?:route|backend)" data-name="(?P<name>[^"]+)">(?P<cells>.*?)</tr>', dom
        )
    }
    assert set(rows) == {"users", "orders", "10.0.0.1:8080", "10.0.0.2:8080"}
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rows["orders"])]
    assert cells[1] == "100" and cells[4] == "25" and cells[5] == "25%"
    assert cells[8].endswith(" s")  # 1.5 s latencies are shown in seconds
    assert "200:75" in cells[9] and "500:25" in cells[9]
    assert "open" in re.sub(r"<[^>]+>", "", rows["10.0.0.2:8080"])
    assert re.search(r'id="c-req">400<', dom)
    assert png_size(shot) == (1280, 720)
    assert shot.stat().st_size > 20_000  # a rendered table, not a blank page
