"""Hostile clients against the real gateway process (in front of the real demo upstream).

Gateway bugs are written down here as strict xfails for the gateway's owner (this suite does not
edit sidecar_gateway/)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from tests.adversarial.stack import (
    Ports,
    collector_process,
    gateway_process,
    upstream_process,
    write_collector_config,
    write_gateway_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    tmp = tmp_path_factory.mktemp("gateway")
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
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


@pytest.mark.xfail(
    strict=True,
    reason="gateway bug: no limit on the request head; a 1 MiB header is forwarded upstream, and one "
    "client sending a 200 MB header grew the gateway's RSS from 49 MB to 461 MB (never given back). "
    "Expected: 431 from the gateway itself, connection closed",
)
def test_an_oversized_request_head_is_refused_by_the_gateway(ports: Ports) -> None:
    answer = exchange(
        ports.gateway,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\nConnection: close\r\n\r\n",
    )
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line in (b"HTTP/1.1 431 Request Header Fields Too Large", b"HTTP/1.1 400 Bad Request")
    assert b"gatewatch-demo-upstream" not in answer  # refused at the gateway, not forwarded


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
