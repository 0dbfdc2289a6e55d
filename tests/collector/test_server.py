"""The real collector process, started through the CLI, over HTTP on loopback."""

from __future__ import annotations

import gzip
import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from collector.store.sqlite import SQLiteEventStore
from tests.collector.helpers import ndjson, random_events
from tests.support.procs import free_port, gatewatch_cmd, running


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        out: dict[str, object] = json.loads(resp.read())
        return out


@pytest.mark.integration
def test_collector_process_ingests_over_http_and_flushes_the_store_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    store_path = tmp_path / "data" / "events.sqlite3"
    config = tmp_path / "collector.yaml"
    config.write_text(f"listen: 127.0.0.1:{port}\nstore:\n  path: {store_path}\n  retention_days: 7\n")
    base = f"http://127.0.0.1:{port}"
    events = random_events(3000, seed=11)
    with running(
        gatewatch_cmd("collector", "--config", str(config)), ready_url=f"{base}/healthz", log=tmp_path / "log"
    ) as proc:
        headers = {"content-type": "application/x-ndjson", "content-encoding": "gzip"}
        for i in range(0, 3000, 1000):
            status, body = post(f"{base}/v1/events", gzip.compress(ndjson(events[i : i + 1000])), headers)
            assert (status, body) == (200, {"accepted": 1000})
        status, body = post(f"{base}/v1/events", b'{"nope": 1}\n', {"content-type": "application/x-ndjson"})
        assert status == 400 and body["rejected_total"] == 1
        stats = get_json(f"{base}/api/v1/stats?window=total")
        routes = stats["routes"]
        assert isinstance(routes, dict)
        assert sum(r["requests"] for r in routes.values()) == 3000
        with urllib.request.urlopen(f"{base}/metrics", timeout=30) as resp:
            assert b"gatewatch_collector_events_ingested_total 3000.0" in resp.read()
    # uvicorn re-raises the SIGTERM after its graceful shutdown; either way the store is complete.
    assert proc.returncode in (0, -signal.SIGTERM), (tmp_path / "log").read_text()
    store = SQLiteEventStore(store_path)
    assert store.count_by_route_status() == Counter((e.route, e.status) for e in events)
    store.close()


def test_malformed_config_exits_non_zero_naming_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(
        "listen: 127.0.0.1:9300\nstore:\n  path: x.sqlite3\n  retention_days: 0\nsketch:\n  colour: red\n"
    )
    proc = subprocess.run(
        gatewatch_cmd("collector", "--config", str(config)), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert f"{config}:4: store.retention_days: Input should be greater than or equal to 1" in proc.stderr
    assert f"{config}:6: sketch.colour: Extra inputs are not permitted" in proc.stderr


def test_unusable_store_path_exits_non_zero(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tmp_path / "collector.yaml"
    config.write_text(f"listen: 127.0.0.1:{free_port()}\nstore:\n  path: {blocker}/events.sqlite3\n")
    proc = subprocess.run(
        gatewatch_cmd("collector", "--config", str(config)), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "cannot open event store" in proc.stderr


def test_a_taken_listen_address_exits_3_with_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        config = tmp_path / "collector.yaml"
        config.write_text(f"listen: {listen}\nstore:\n  path: {tmp_path / 'events.sqlite3'}\n")
        proc = subprocess.run(
            gatewatch_cmd("collector", "--config", str(config)), capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 3
    assert f"gatewatch collector: cannot listen on {listen} (see the error above)" in proc.stderr.splitlines()
    assert "address already in use" in proc.stderr
