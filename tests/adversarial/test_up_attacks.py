"""``gatewatch up`` given bad input, busy ports and signals: a clear message and a sensible exit
code, a summary whenever traffic ran, and never a child process left behind."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from gatewatch.up import Child, StartError, UpOptions, _wait_ready, resolve_ports, up_parser
from tests.collector.helpers import event, ndjson
from tests.support.procs import free_port, gatewatch_cmd, require_shared_data

APACHE = "access-logs/apache_logs_2015.log"


def up(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gatewatch_cmd("up", *args), capture_output=True, text=True, timeout=timeout)


def free_ports() -> list[str]:
    return ["--gateway-port", "0", "--admin-port", "0", "--collector-port", "0", "--upstream-port", "0"]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc; children first seen, then theirs)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# ---- input checked before anything starts ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replay", "/nonexistent/access.log"], "--replay /nonexistent/access.log: no such file"),
        (["--replay", "/"], "--replay /: not a regular file"),
        (["--gateway-port", "70000"], "--gateway-port: 70000 is not a port number (0-65535)"),
        (["--upstream-port", "-1"], "--upstream-port: -1 is not a port number (0-65535)"),
        (["--concurrency", "0"], "--concurrency: must be a whole number >= 1"),
        (["--speed", "-1"], "--speed: must be a positive number"),
        (["--rps", "nan"], "--rps: must be a positive number"),
        (["--duration", "inf"], "--duration: must be a positive number"),
        # options that would be ignored: refused, so nobody waits for a pace that never applies
        (["--speed", "60"], "gatewatch up: --speed sets the pace of a --replay; without --replay use --rps"),
        (
            ["--replay", "x.log", "--rps", "50"],
            "gatewatch up: --rps shapes the synthetic mix and means nothing",
        ),
        (["--replay", "x.log", "--duration", "5", "--rps", "9"], "--duration and --rps shape the synthetic"),
    ],
)
def test_bad_arguments_exit_2_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    proc = up(*args, "--workdir", str(tmp_path / "w"), "--exit-when-done", timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "w" / "logs").exists()  # nothing was started or written


def test_empty_replay_file_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    proc = up("--replay", str(empty), "--workdir", str(tmp_path / "w"), timeout=30)
    assert proc.returncode == 2
    assert f"--replay {empty}: the file is empty; nothing to replay" in proc.stderr


@pytest.mark.parametrize("where", ["file", "summary"])
def test_unwritable_workdir_or_summary_path_exits_2(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory")
    workdir = blocker / "w" if where == "file" else tmp_path / "w"
    summary = tmp_path / "s.json" if where == "file" else blocker / "s.json"
    proc = up(
        "--duration",
        "1",
        "--workdir",
        str(workdir),
        "--summary-json",
        str(summary),
        *free_ports(),
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    flag = "--workdir" if where == "file" else "--summary-json"
    assert f"{flag} {workdir if where == 'file' else summary}: cannot write there" in proc.stderr


def test_port_zero_for_the_upstreams_picks_two_free_ports() -> None:
    args = up_parser().parse_args(["--upstream-port", "0"])
    opts = resolve_ports(UpOptions.from_args(args))
    a, b = opts.upstream_ports
    assert a != b and a > 1024 and b > 1024


@contextmanager
def impostor_healthz(body: bytes) -> Iterator[str]:
    """Another program on a port ``gatewatch up`` chose: answers every GET with 200 and ``body``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"status":"ok","pid":1}', "another process (pid 1) answers there"),
        (b"<html>it works</html>", "another program answers there"),
    ],
)
def test_a_port_taken_after_the_check_is_not_mistaken_for_the_child(
    tmp_path: Path, body: bytes, message: str
) -> None:
    # The child never answers (as when its bind failed after the port check); something else does.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child = Child("gateway", proc, tmp_path / "gateway.log")
    try:
        with impostor_healthz(body) as url, pytest.raises(StartError) as exc:
            _wait_ready(child, url, timeout=1.0)
    finally:
        proc.kill()
        proc.wait()
    assert message in str(exc.value)
    assert str(exc.value).startswith(f"gateway did not answer {url} within 1s")


def test_a_child_that_exits_while_another_program_answers_is_reported(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("gatewatch gateway: cannot listen on 127.0.0.1:8080: address already in use\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(1)"])
    child = Child("gateway", proc, log)
    try:
        with impostor_healthz(b'{"status":"ok","pid":1}') as url, pytest.raises(StartError) as exc:
            _wait_ready(child, url, timeout=20.0)
    finally:
        proc.kill()
        proc.wait()
    assert str(exc.value).startswith("gateway exited with code 1:\ngatewatch gateway: cannot listen on")


# ---- whole runs ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_second_run_in_the_same_workdir_starts_with_an_empty_store_and_access_log(tmp_path: Path) -> None:
    work = tmp_path / "w"
    for rps in ("20", "30"):
        summary = tmp_path / f"s{rps}.json"
        proc = up(
            "--duration", "1", "--rps", rps, "--exit-when-done", "--workdir", str(work),
            "--summary-json", str(summary), *free_ports(),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        data = json.loads(summary.read_text())
        counted = sum(r["requests"] for r in data["routes"].values())
        access_lines = (work / "logs" / "access.ndjson").read_text().splitlines()
        assert data["requests"] == counted == len(access_lines) > 0


def test_only_garbage_lines_runs_counts_them_writes_the_summary_and_exits_1(tmp_path: Path) -> None:
    log = tmp_path / "garbage.log"
    log.write_bytes(b"garbage line\n" * 40 + os.urandom(3000) + b"\n" + b"\x00\x01binary\n" * 10)
    lines = log.read_bytes().count(b"\n")
    summary = tmp_path / "summary.json"
    # Left over from an earlier run whose collector went away: not this run's traffic.
    spool = tmp_path / "w" / "spool"
    spool.mkdir(parents=True)
    (spool / "00000000000000000001-3.ndjson").write_bytes(ndjson([event(), event(), event()]))
    proc = up(
        "--replay", str(log), "--exit-when-done", "--summary-json", str(summary),
        "--workdir", str(tmp_path / "w"), *free_ports(),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert f"none of the {lines} lines of {log} could be parsed" in proc.stderr
    data = json.loads(summary.read_text())
    assert data == {"requests": 0, "unparsed_lines": lines, "routes": {}}


@contextmanager
def occupied(n: int) -> Iterator[list[int]]:
    with ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            s.listen()
            ports.append(s.getsockname()[1])
        yield ports


def wait_for_events(collector_port: int, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{collector_port}/healthz", timeout=2) as r:
                seen = json.loads(r.read())["events_ingested"]
        except OSError:
            pass
        if seen >= at_least:
            return seen
        time.sleep(0.1)
    return seen


@pytest.mark.integration
def test_busy_ports_and_repeated_signals_during_a_replay_leave_no_process_behind(tmp_path: Path) -> None:
    log = require_shared_data(APACHE)
    collector_port = free_port()
    with occupied(2) as (busy_gateway, busy_admin):
        proc = subprocess.Popen(
            gatewatch_cmd(
                "up", "--replay", str(log), "--speed", "100", "--exit-when-done",
                "--workdir", str(tmp_path / "w"), "--summary-json", str(tmp_path / "s.json"),
                "--gateway-port", str(busy_gateway), "--admin-port", str(busy_admin),
                "--collector-port", str(collector_port), "--upstream-port", "0",
            ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            # The replay is running: events reach the collector.
            assert wait_for_events(collector_port, 5) >= 5
            children = descendants(proc.pid)
            assert len(children) >= 4  # two demo upstreams, collector, gateway
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)  # impatient: a second signal while stopping
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert f"port {busy_gateway} for the gateway is taken; using" in err
    assert f"port {busy_admin} for the gateway admin is taken; using" in err
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    left = [pid for pid in children if alive(pid)]
    assert left == [], f"orphans: {left}"


@pytest.mark.integration
def test_sigterm_during_a_replay_stops_in_order_and_the_summary_counts_what_was_sent(tmp_path: Path) -> None:
    log = require_shared_data(APACHE)
    collector_port = free_port()
    summary = tmp_path / "s.json"
    proc = subprocess.Popen(
        gatewatch_cmd(
            "up", "--replay", str(log), "--speed", "100", "--exit-when-done",
            "--workdir", str(tmp_path / "w"), "--summary-json", str(summary),
            "--gateway-port", "0", "--admin-port", "0", "--collector-port", str(collector_port),
            "--upstream-port", "0",
        ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_for_events(collector_port, 5) >= 5
        children = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert [pid for pid in children if alive(pid)] == []
    data = json.loads(summary.read_text())
    counted = sum(r["requests"] for r in data["routes"].values())
    # Answered requests were all counted (the gateway flushed before the collector stopped); a
    # request cut off by the signal may have reached the gateway without being answered, and the
    # run says how many were cut off.
    cut = re.search(r"interrupted with (\d+) requests in flight", out)
    in_flight = int(cut[1]) if cut else 0
    assert 5 <= data["requests"] <= counted <= data["requests"] + in_flight <= data["requests"] + 32, out
    assert "did not send" not in out, out  # nobody else used the gateway
    assert data["unparsed_lines"] == 0
