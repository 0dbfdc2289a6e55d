"""Upstream answers at the edge of HTTP/1.1, through the real gateway (uvicorn + uvloop, in a
thread) in front of a scripted upstream that writes exact bytes: bodyless answers that declare
a length, trailers, impossible status codes, a close mid-body, an unasked-for 101. Each must
end in one honest outcome: the right answer to the client, a valid access event with the right
reason, the breaker told, and the upstream connection reused or dropped as it deserves."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

import pytest

from gatewatch.events import AccessEvent
from tests.gateway.gateway_thread import gateway_thread, make_config
from tests.gateway.helpers import host_port, request, request_path, scripted_server

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def route(port: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": "api", "path_prefix": "/", "upstreams": [{"address": f"127.0.0.1:{port}"}], **extra}]


def logged(path: Path) -> dict[str, Any]:
    return {"access_log": {"enabled": True, "path": str(path)}}


def events(path: Path) -> list[AccessEvent]:
    return [AccessEvent.model_validate_json(line) for line in path.read_bytes().splitlines()]


def by_path(replies: dict[bytes, bytes]) -> Any:
    def respond(head: bytes) -> tuple[bytes, bool]:
        return replies.get(request_path(head), OK), False

    return respond


def test_trailer_fields_never_become_response_headers() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-T: v\r\nX-Other: w\r\n\r\n"
    )
    with (
        scripted_server(by_path({b"/trailers": chunked})) as port,
        gateway_thread(make_config(route(port))) as gw,
    ):
        conn = http.client.HTTPConnection(*host_port(gw.url), timeout=10)
        for _ in range(2):  # the same upstream connection parses the next answer cleanly
            r = request(gw.url, "GET", "/trailers", conn=conn)
            assert (r.status, r.body) == (200, b"hello")
            assert "x-t" not in r.headers and "x-other" not in r.headers and "trailer" not in r.headers
        assert request(gw.url, "GET", "/plain", conn=conn).body == b"ok"
        assert gw.gateway.routes[0].backends[0].pool.opened == 1
