"""Hostile clients against the real gateway process (in front of the real demo upstream): each
gets a precise answer, each is recorded (metrics, the stored event), and the gateway keeps
serving."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.stack import (
    Ports,
    collector_process,
    gateway_process,
    stored_events,
    upstream_process,
    wait_until,
    write_collector_config,
    write_gateway_config,
)
from tests.gateway.helpers import read_until_closed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="module")
def ports(tmp: Path) -> Iterator[Ports]:
    ports = Ports.pick()
    with (
        upstream_process(tmp, ports),
        collector_process(tmp, ports, write_collector_config(tmp, ports)),
        gateway_process(tmp, ports, write_gateway_config(tmp, ports)),
    ):
        yield ports


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        with contextlib.suppress(OSError):  # the server may answer and close before reading it all
            s.sendall(data)
        return read_until_closed(s)


def test_an_oversized_request_head_is_refused_by_the_gateway(ports: Ports) -> None:
    answer = exchange(
        ports.gateway,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\nConnection: close\r\n\r\n",
    )
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line in (b"HTTP/1.1 431 Request Header Fields Too Large", b"HTTP/1.1 400 Bad Request")
    assert b"gatewatch-demo-upstream" not in answer  # refused at the gateway, not forwarded


def _counted(ports: Ports, metric: str, label: str) -> int:
    """The sum of ``metric``'s series whose labels include ``label`` (e.g. ``code="400"``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ports.admin}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _requests_counted(ports: Ports, code: str) -> int:
    return _counted(ports, "http_requests_total", f'code="{code}"')


def test_a_refused_head_gets_a_json_431_and_is_counted(ports: Ports) -> None:
    before = _requests_counted(ports, "431")
    # The limit is 64 KiB by default; the oversized header is the first one after the URL here.
    answer = exchange(ports.gateway, b"GET /big?q=1 HTTP/1.1\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "request_header_too_large"
    assert wait_until("the 431 counted", lambda: _requests_counted(ports, "431"), before + 1) == before + 1


def test_heads_and_bodies_within_the_limit_are_not_refused(ports: Ports) -> None:
    # A head just under 64 KiB, and a small head followed by a large body in the same writes:
    # the body's bytes are not head bytes.
    near = b"GET /near HTTP/1.1\r\nHost: x\r\nX-Big: " + b"n" * 60_000 + b"\r\nConnection: close\r\n\r\n"
    assert exchange(ports.gateway, near).startswith(b"HTTP/1.1 200 ")
    body = b"p" * (1 << 20)
    post = b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    assert exchange(ports.gateway, post + body).startswith(b"HTTP/1.1 200 ")


def test_malformed_requests_get_400_and_the_gateway_keeps_serving(ports: Ports) -> None:
    for bad in (
        b"GARBAGE\r\n\r\n",
        b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
    ):
        assert exchange(ports.gateway, bad).startswith(b"HTTP/1.1 400 "), bad
    ok = exchange(ports.gateway, b"GET /still-up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")


def _stored_event(tmp: Path, request_id: str) -> dict[str, object]:
    """The event the collector stored for ``request_id`` (waits for the shipper and the store)."""
    deadline = time.monotonic() + 30
    while True:
        found = [e for e in stored_events(tmp) if e["http.request.id"] == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, (request_id, found)
            return found[0]
        time.sleep(0.1)


def test_malformed_requests_reach_metrics_and_the_collector_as_the_400_they_got(
    ports: Ports, tmp: Path
) -> None:
    before_400, before_499 = _requests_counted(ports, "400"), _requests_counted(ports, "499")
    cases = (
        # (request, method, url.path, route) as recorded
        (b"GARBAGE\r\n\r\n", "-", "/", "unmatched"),
        (b"GET /a\x00b HTTP/1.1\r\nHost: x\r\nUser-Agent: scan/1\r\n\r\n", "GET", "/", "unmatched"),
        # A valid head, then an invalid chunk size: the app had the request when it broke.
        (
            b"POST /chunked?z=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: scan/2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
            "POST",
            "/chunked",
            "api",
        ),
    )
    for request, method, path, route in cases:
        head, _, body = exchange(ports.gateway, request).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), request
        answer = json.loads(body)
        assert answer["error"] == "bad_request"
        event = _stored_event(tmp, answer["request_id"])
        assert (event["http.request.method"], event["url.path"], event["gateway.route"]) == (
            method,
            path,
            route,
        )
        assert (event["http.response.status_code"], event["event.outcome"]) == (400, "success")
        assert "gateway.error" not in event and event["source.ip"] == "127.0.0.1"
    assert event["url.query"] == "z=1" and event["user_agent.original"] == "scan/2"
    assert (
        wait_until("the 400s counted", lambda: _requests_counted(ports, "400"), before_400 + 3)
        == before_400 + 3
    )
    assert _requests_counted(ports, "499") == before_499  # not a client disconnect


def test_a_missing_or_duplicate_host_is_refused_not_proxied(ports: Ports, tmp: Path) -> None:
    for request, error in (
        (b"GET /two-hosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", "duplicate_host"),
        (b"GET /no-host HTTP/1.1\r\nConnection: close\r\n\r\n", "missing_host"),
    ):
        head, _, body = exchange(ports.gateway, request).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ") and b"gatewatch-demo-upstream" not in head, request
        answer = json.loads(body)
        assert answer["error"] == error
        event = _stored_event(tmp, answer["request_id"])
        assert (event["http.response.status_code"], event["gateway.route"], event["url.path"]) == (
            400,
            "api",
            request.split(b" ")[1].decode(),
        )
        assert "gateway.backend" not in event  # never sent upstream
    # HTTP/1.0 may leave Host out.
    assert exchange(ports.gateway, b"GET /old HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")


def test_a_transfer_coding_the_gateway_cannot_decode_is_refused_with_501(ports: Ports, tmp: Path) -> None:
    before = _requests_counted(ports, "501")
    blamed_on_upstreams = _counted(ports, "http_requests_errors_total", 'reason="upstream_5xx"')
    head, _, body = exchange(
        ports.gateway,
        b"POST /gz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501 ") and b"gatewatch-demo-upstream" not in head
    answer = json.loads(body)
    assert answer["error"] == "unsupported_transfer_coding"
    event = _stored_event(tmp, answer["request_id"])
    assert (event["http.response.status_code"], event["http.request.method"], event["url.path"]) == (
        501,
        "POST",
        "/gz",
    )
    assert "gateway.backend" not in event
    assert event["gateway.error"] == "not_implemented"  # the gateway's own answer, not an upstream's
    assert wait_until("the 501 counted", lambda: _requests_counted(ports, "501"), before + 1) == before + 1
    assert _counted(ports, "http_requests_errors_total", 'reason="upstream_5xx"') == blamed_on_upstreams
