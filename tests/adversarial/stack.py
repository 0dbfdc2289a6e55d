"""Real gateway + real collector + demo upstream processes on loopback, for the adversarial tests."""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from tests.support.procs import free_port, gatewatch_cmd, running


@dataclass
class Ports:
    gateway: int
    admin: int
    collector: int
    upstream: int

    @staticmethod
    def pick() -> Ports:
        return Ports(free_port(), free_port(), free_port(), free_port())


def write_collector_config(tmp: Path, ports: Ports, extra: str = "") -> Path:
    path = tmp / "collector.yaml"
    path.write_text(
        f"listen: 127.0.0.1:{ports.collector}\nstore:\n  path: {tmp / 'store' / 'events.sqlite3'}\n{extra}"
    )
    return path


def write_gateway_config(
    tmp: Path, ports: Ports, *, flush_interval: float = 0.1, batch_size: int = 50
) -> Path:
    path = tmp / "gateway.yaml"
    path.write_text(
        f"listen: 127.0.0.1:{ports.gateway}\n"
        f"admin_listen: 127.0.0.1:{ports.admin}\n"
        "routes:\n"
        "  - name: api\n"
        "    path_prefix: /\n"
        "    upstreams:\n"
        f"      - address: 127.0.0.1:{ports.upstream}\n"
        "telemetry:\n"
        "  access_log:\n"
        "    enabled: false\n"
        "  collector:\n"
        f"    url: http://127.0.0.1:{ports.collector}/v1/events\n"
        f"    flush_interval: {flush_interval}\n"
        f"    batch_size: {batch_size}\n"
        f"    spool_dir: {tmp / 'spool'}\n"
    )
    return path


@contextmanager
def upstream_process(tmp: Path, ports: Ports) -> Iterator[Popen[bytes]]:
    with running(
        gatewatch_cmd("demo-upstream", "--listen", f"127.0.0.1:{ports.upstream}"),
        ready_url=f"http://127.0.0.1:{ports.upstream}/healthz",
        log=tmp / "upstream.log",
    ) as proc:
        yield proc


@contextmanager
def collector_process(tmp: Path, ports: Ports, config: Path, run: int = 0) -> Iterator[Popen[bytes]]:
    with running(
        gatewatch_cmd("collector", "--config", str(config)),
        ready_url=f"http://127.0.0.1:{ports.collector}/healthz",
        log=tmp / f"collector-{run}.log",
    ) as proc:
        yield proc


@contextmanager
def gateway_process(tmp: Path, ports: Ports, config: Path) -> Iterator[Popen[bytes]]:
    with running(
        gatewatch_cmd("gateway", "--config", str(config)),
        ready_url=f"http://127.0.0.1:{ports.admin}/healthz",
        log=tmp / "gateway.log",
    ) as proc:
        yield proc


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        out: dict[str, object] = json.loads(resp.read())
        return out


def send_requests(port: int, n: int, tag: str) -> list[int]:
    """``n`` GETs over one keep-alive connection; the statuses, in order."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    statuses = []
    try:
        for i in range(n):
            conn.request("GET", f"/{tag}/{i}")
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
    finally:
        conn.close()
    return statuses


def wait_until(what: str, probe: Callable[[], int], expected: int, timeout: float = 30.0) -> int:
    """Poll ``probe`` until it returns ``expected`` (or more), or the deadline passes; the last value."""
    deadline = time.monotonic() + timeout
    value = probe()
    while value < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        value = probe()
    return value


def ingested(ports: Ports) -> int:
    health = get_json(f"http://127.0.0.1:{ports.collector}/healthz")
    value = health["events_ingested"]
    assert isinstance(value, int)
    return value


def stored_events(tmp: Path) -> list[dict[str, object]]:
    """Every stored event (the store must be closed, or at least checkpointed)."""
    conn = sqlite3.connect(f"file:{tmp / 'store' / 'events.sqlite3'}?mode=ro", uri=True)
    try:
        return [json.loads(doc) for (doc,) in conn.execute("SELECT doc FROM events")]
    finally:
        conn.close()


def stored_paths(tmp: Path) -> list[str]:
    """The url.path of every stored event (the store must be closed, or at least checkpointed)."""
    return [str(event["url.path"]) for event in stored_events(tmp)]
