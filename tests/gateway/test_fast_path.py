"""The proxy's fast path (a bodyless request on a pooled upstream connection, answered from
callbacks) must end every way the general path does: each test warms the pool first so the
request under test takes the fast path, then makes the upstream misbehave."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gatewatch.events import AccessEvent
from tests.gateway.gateway_thread import gateway_thread, make_config
from tests.gateway.helpers import request
from tests.gateway.upstream_server import RunningUpstream

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def one_route(address: str, **route: Any) -> list[dict[str, Any]]:
    return [{"name": "api", "path_prefix": "/", "upstreams": [{"address": address}], **route}]


@contextmanager
def scripted(replies: list[bytes | None]) -> Iterator[int]:
    """Per connection, answer the n-th request with ``replies[n]``; None closes the connection
    without answering. Replies past the end repeat the last one."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            for i in range(100):
                if not sock.recv(65536):
                    return
                reply = replies[min(i, len(replies) - 1)]
                if reply is None:
                    return
                sock.sendall(reply)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_timeout_on_a_pooled_connection_is_504(upstream: RunningUpstream) -> None:
    cfg = make_config(one_route(upstream.address, timeouts={"response": 0.2}))
    with gateway_thread(cfg) as gw:
        assert request(gw.url, "GET", "/slow?ms=0").status == 200
        r = request(gw.url, "GET", "/slow?ms=3000", headers={"X-Request-ID": "t1"})
        assert (r.status, r.json()) == (504, {"error": "upstream_timeout", "request_id": "t1"})
        assert request(gw.url, "GET", "/slow?ms=0").status == 200


def test_pooled_connection_closed_without_answer_is_retried_once() -> None:
    # The second request on each upstream connection is dropped unanswered.
    with scripted([OK, None]) as port, gateway_thread(make_config(one_route(f"127.0.0.1:{port}"))) as gw:
        assert request(gw.url, "GET", "/a").body == b"ok"
        r = request(gw.url, "GET", "/b")
        assert (r.status, r.body) == (200, b"ok")
        assert gw.gateway.routes[0].backends[0].pool.opened == 2


def test_non_idempotent_request_is_not_retried() -> None:
    with scripted([OK, None]) as port, gateway_thread(make_config(one_route(f"127.0.0.1:{port}"))) as gw:
        assert request(gw.url, "GET", "/a").body == b"ok"
        r = request(gw.url, "POST", "/b")  # no body: the fast path's kind of request
        assert (r.status, r.json()["error"]) == (502, "upstream_refused")


def test_invalid_response_header_on_a_pooled_connection_is_502(tmp_path: Path) -> None:
    bad = b"HTTP/1.1 200 OK\r\nX-Bad: a\x7fb\r\nContent-Length: 2\r\n\r\nok"
    log = tmp_path / "access.log"
    with scripted([OK, bad]) as port:
        telemetry = {"access_log": {"enabled": True, "path": str(log)}}
        with gateway_thread(make_config(one_route(f"127.0.0.1:{port}"), telemetry=telemetry)) as gw:
            assert request(gw.url, "GET", "/a").body == b"ok"
            r = request(gw.url, "GET", "/b", headers={"X-Request-ID": "bad1"})
            assert (r.status, r.json()) == (502, {"error": "upstream_protocol", "request_id": "bad1"})
    events = [AccessEvent.model_validate_json(x) for x in log.read_bytes().splitlines()]
    assert [(e.status, e.error) for e in events] == [(200, None), (502, "upstream_protocol")]


def test_streamed_response_on_a_pooled_connection_continues_as_a_stream(upstream: RunningUpstream) -> None:
    with gateway_thread(make_config(one_route(upstream.address))) as gw:
        assert request(gw.url, "GET", "/echo").status == 200
        r = request(gw.url, "GET", "/bytes?n=3000000&chunked=1")
        assert r.headers.get("transfer-encoding") == "chunked" and len(r.body) == 3_000_000
        r = request(gw.url, "HEAD", "/bytes?n=10")
        assert (r.status, r.headers["content-length"], r.body) == (200, "10", b"")
