"""The gateway as the CLI runs it: config errors, and a graceful SIGTERM that loses nothing."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from gatewatch.events import AccessEvent
from tests.gateway.collector_standin import Received, collector_app
from tests.gateway.helpers import Reply, request, sample, scrape
from tests.gateway.upstream_server import RunningUpstream, app_in_thread
from tests.support.procs import free_port, gatewatch_cmd, running

pytestmark = pytest.mark.integration


def test_malformed_config_exits_non_zero_naming_file_line_and_field(tmp_path: Path) -> None:
    conf = tmp_path / "gateway.yaml"
    conf.write_text(
        "listen: 127.0.0.1:8080\n"
        "routes:\n"
        "  - name: api\n"
        "    path_prefix: /api\n"
        "    upstreams:\n"
        "      - address: 127.0.0.1:9000\n"
        "        weight: 0\n"
    )
    proc = subprocess.run(
        gatewatch_cmd("gateway", "--config", str(conf)), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert f"{conf}:7: routes.0.upstreams.0.weight:" in proc.stderr


def test_bad_address_is_reported_with_its_line(tmp_path: Path) -> None:
    conf = tmp_path / "gateway.yaml"
    conf.write_text("routes:\n  - name: api\n    path_prefix: /\n    upstreams:\n      - address: nowhere\n")
    proc = subprocess.run(
        gatewatch_cmd("gateway", "--config", str(conf)), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert f"{conf}:5: routes.0.upstreams.0.address:" in proc.stderr


def test_sigterm_drains_in_flight_and_ships_every_event(upstream: RunningUpstream, tmp_path: Path) -> None:
    port, admin, collector_port = free_port(), free_port(), free_port()
    log = tmp_path / "access.log"
    conf = tmp_path / "gateway.yaml"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"admin_listen: 127.0.0.1:{admin}\n"
        "routes:\n"
        "  - name: api\n"
        "    path_prefix: /\n"
        "    upstreams:\n"
        f"      - address: {upstream.address}\n"
        "telemetry:\n"
        "  access_log:\n"
        f"    path: {log}\n"
        "  collector:\n"
        f"    url: http://127.0.0.1:{collector_port}/v1/events\n"
        "    flush_interval: 30\n"  # nothing is shipped before shutdown: the flush does it all
        "    batch_size: 1000\n"
    )
    received = Received()
    url = f"http://127.0.0.1:{port}"
    with (
        app_in_thread(collector_app(received), collector_port),
        running(
            gatewatch_cmd("gateway", "--config", str(conf)),
            ready_url=f"http://127.0.0.1:{admin}/healthz",
            log=tmp_path / "gateway.out",
        ) as proc,
    ):
        for i in range(20):
            assert request(url, "GET", f"/echo?i={i}").status == 200
        m = scrape(f"http://127.0.0.1:{admin}")
        assert sample(m, "http_requests_total", route="api", method="GET", code="200") == 20

        slow: list[int] = []
        t = threading.Thread(target=lambda: slow.append(request(url, "GET", "/slow?ms=1500").status))
        t.start()
        deadline_hits = 0
        while upstream.stats.requests < 21 and deadline_hits < 500:  # the slow request reached the upstream
            deadline_hits += 1
            threading.Event().wait(0.01)
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        code = proc.wait(30)
    assert code == 0
    assert slow == [200]  # in flight at SIGTERM, still answered
    assert len(received.events) == 21
    assert sorted(e.query or "" for e in received.events)[:2] == ["i=0", "i=1"]
    lines = log.read_bytes().splitlines()
    assert len(lines) == 21
    assert all(AccessEvent.model_validate_json(line).route == "api" for line in lines)


def test_taken_listen_address_exits_non_zero_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "gateway.yaml"
        conf.write_text(
            f"listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{free_port()}\n"
            "routes:\n  - name: a\n    path_prefix: /\n    upstreams: [{address: 127.0.0.1:9}]\n"
        )
        proc = subprocess.run(
            gatewatch_cmd("gateway", "--config", str(conf)), capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_requests_cut_off_by_the_drain_deadline_are_answered_503_recorded_and_shipped(
    tmp_path: Path,
) -> None:
    port, admin, collector_port, upstream_port = free_port(), free_port(), free_port(), free_port()
    log = tmp_path / "access.log"
    conf = tmp_path / "gateway.yaml"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"admin_listen: 127.0.0.1:{admin}\n"
        "drain_seconds: 1\n"
        "routes:\n"
        "  - name: api\n"
        "    path_prefix: /\n"
        "    upstreams:\n"
        f"      - address: 127.0.0.1:{upstream_port}\n"
        "telemetry:\n"
        "  access_log:\n"
        f"    path: {log}\n"
        "  collector:\n"
        f"    url: http://127.0.0.1:{collector_port}/v1/events\n"
        "    flush_interval: 30\n"  # shipped by the shutdown flush, after the cut-off
    )
    received = Received()
    url = f"http://127.0.0.1:{port}"
    gateway_log = tmp_path / "gateway.out"
    replies: list[Reply] = []
    with (
        app_in_thread(collector_app(received), collector_port),
        running(
            gatewatch_cmd("demo-upstream", "--listen", f"127.0.0.1:{upstream_port}"),
            ready_url=f"http://127.0.0.1:{upstream_port}/healthz",
        ),
        running(
            gatewatch_cmd("gateway", "--config", str(conf)),
            ready_url=f"http://127.0.0.1:{admin}/healthz",
            log=gateway_log,
        ) as proc,
    ):
        slow = threading.Thread(
            target=lambda: replies.append(
                request(url, "GET", "/slow", headers={"x-demo-delay-ms": "4000", "X-Request-ID": "cut-1"})
            )
        )
        slow.start()
        for _ in range(500):  # until the gateway has it in flight
            if sample(scrape(f"http://127.0.0.1:{admin}"), "active_connections") == 1:
                break
            threading.Event().wait(0.01)
        proc.send_signal(signal.SIGTERM)
        slow.join(30)
        code = proc.wait(30)
    assert code == 0
    (reply,) = replies  # answered before the 4 s the upstream would have taken
    assert reply.status == 503
    assert reply.json() == {"error": "drain_timeout", "request_id": "cut-1"}
    (event,) = [AccessEvent.model_validate_json(line) for line in log.read_bytes().splitlines()]
    assert (event.status, event.error, event.outcome, event.request_id) == (
        503,
        "drain_timeout",
        "failure",
        "cut-1",
    )
    assert [(e.request_id, e.error) for e in received.events] == [("cut-1", "drain_timeout")]
    out = gateway_log.read_text()
    assert "Traceback" not in out and "CancelledError" not in out
    assert [line for line in out.splitlines() if "drain_seconds" in line or "Cancel" in line] == [
        next(
            line
            for line in out.splitlines()
            if "drain_seconds (1s) passed with 1 request(s) in flight" in line
        )
    ]


# (setting, YAML for it under telemetry:, its line in the file, the OS error)
UNUSABLE = [
    (
        "telemetry.access_log.path",
        "  access_log:\n    path: /nonexistent/dir/log\n",
        9,
        "cannot open /nonexistent/dir/log for appending: No such file or directory",
    ),
    (
        "telemetry.collector.spool_dir",
        "  collector:\n    url: http://127.0.0.1:9/v1/events\n    spool_dir: /proc/nope\n",
        10,
        "cannot use /proc/nope as the spool directory: No such file or directory",
    ),
    (  # a directory that exists but takes no files: refused at start, not when spooling at exit
        "telemetry.collector.spool_dir",
        "  collector:\n    url: http://127.0.0.1:9/v1/events\n    spool_dir: /proc\n",
        10,
        "cannot use /proc as the spool directory: No such file or directory",
    ),
]


@pytest.mark.parametrize(
    ("field", "yaml", "line", "message"), UNUSABLE, ids=["access_log", "spool_missing", "spool_unwritable"]
)
def test_a_path_the_os_refuses_is_reported_against_its_setting_before_anything_listens(
    tmp_path: Path, field: str, yaml: str, line: int, message: str
) -> None:
    port = free_port()
    conf = tmp_path / "gateway.yaml"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"admin_listen: 127.0.0.1:{free_port()}\n"
        "routes:\n"
        "  - name: api\n"
        "    path_prefix: /\n"
        "    upstreams: [{address: 127.0.0.1:9}]\n"
        "telemetry:\n" + yaml
    )
    proc = subprocess.run(
        gatewatch_cmd("gateway", "--config", str(conf)), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{conf}:{line}: {field}: {message}" in proc.stderr.splitlines()
    assert "gateway listening" not in proc.stderr
