"""Upstream answers at the edge of HTTP/1.1, through the real gateway (uvicorn + uvloop, in a
thread) in front of a scripted upstream that writes exact bytes: bodyless answers that declare
a length, trailers, impossible status codes, a close mid-body, an unasked-for 101. Each must
end in one honest outcome: the right answer to the client, a valid access event with the right
reason, the breaker told, and the upstream connection reused or dropped as it deserves."""

from __future__ import annotations

import http.client
import logging
import socket
import socketserver
import time
from pathlib import Path
from typing import Any

import pytest

from gatewatch.events import AccessEvent
from sidecar_gateway.server import CUT_OFF_GRACE, Gateway, _uvicorn_server
from tests.gateway.gateway_thread import gateway_thread, make_config
from tests.gateway.helpers import (
    host_port,
    read_until_closed,
    request,
    request_path,
    sample,
    scrape,
    scripted_server,
    tcp_server,
)

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FAIL = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
# RFC 9110 8.6: a 304 may carry the Content-Length a GET would have had; it still has no body.
CL304 = b'HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\nETag: "v1"\r\n\r\n'
CL204 = b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"


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


def open_the_breaker_then_wait(url: str) -> None:
    """failure_threshold 1, open_seconds 0.3: one 500 opens it; afterwards it is half-open."""
    assert request(url, "GET", "/fail").status == 500
    assert request(url, "GET", "/while-open").status == 503
    time.sleep(0.35)  # open_seconds pass: the next request is the half-open probe


BREAKER = {"circuit_breaker": {"failure_threshold": 1, "open_seconds": 0.3}}


def test_a_304_keeps_its_content_length_a_204_loses_it_and_the_connection_goes_on(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    replies = {b"/fail": FAIL, b"/cl304": CL304, b"/cl204": CL204}
    with (
        scripted_server(by_path(replies)) as port,
        gateway_thread(make_config(route(port, **BREAKER), telemetry=logged(log))) as gw,
    ):
        open_the_breaker_then_wait(gw.url)
        # The 304 is the half-open probe; two more requests are pipelined behind it.
        with socket.create_connection(host_port(gw.url), timeout=10) as s:
            s.sendall(
                b"GET /cl304 HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /cl204 HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            )
            answer = read_until_closed(s)
        head304, head204, head200, body = answer.split(b"\r\n\r\n")
        assert head304.startswith(b"HTTP/1.1 304 ") and b"\r\ncontent-length: 1000" in head304.lower()
        assert b'etag: "v1"' in head304.lower()
        # RFC 9110 8.6: a server never sends Content-Length in a 204 (a 304 may keep it).
        assert head204.startswith(b"HTTP/1.1 204 ") and b"content-length" not in head204.lower()
        assert head200.startswith(b"HTTP/1.1 200 ") and body == b"ok"
        assert request(gw.url, "GET", "/again").status == 200  # the probe closed the breaker
        m = scrape(gw.admin_url)
        assert sample(m, "circuit_breaker_state", route="api", backend=f"127.0.0.1:{port}") == 0
        assert sample(m, "http_requests_total", route="api", method="GET", code="304") == 1
        # Every upstream answer was complete: one upstream connection served them all.
        assert gw.gateway.routes[0].backends[0].pool.opened == 1
    got = [(e.path, e.status, e.error, e.response_bytes) for e in events(log)]
    assert got == [
        ("/fail", 500, None, 0),
        ("/while-open", 503, "circuit_open", len(b'{"error":"circuit_open","request_id":""}') + 32),
        ("/cl304", 304, None, 0),
        ("/cl204", 204, None, 0),
        ("/after", 200, None, 2),
        ("/again", 200, None, 2),
    ]


def _stock_uvicorn_front(gateway: Gateway) -> None:
    """The proxy port on uvicorn's own httptools protocol, which refuses (RuntimeError) a 304
    whose Content-Length promises a body: a real ASGI server raising from send()."""
    gateway.proxy_server = _uvicorn_server(gateway.app, gateway.config.listen, 5)


def test_an_exception_from_send_is_recorded_and_gives_the_probe_slot_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "access.log"
    with (
        scripted_server(by_path({b"/fail": FAIL, b"/cl304": CL304})) as port,
        gateway_thread(
            make_config(route(port, **BREAKER), telemetry=logged(log)), prepare=_stock_uvicorn_front
        ) as gw,
    ):
        open_the_breaker_then_wait(gw.url)
        conn = http.client.HTTPConnection(*host_port(gw.url), timeout=10)
        conn.request("GET", "/cl304")
        assert conn.getresponse().status == 304  # the head went out before send() raised
        conn.close()
        # The probe slot came back (neither verdict: the failure was not the upstream's) ...
        assert request(gw.url, "GET", "/after").status == 200
        # ... and the connection the failed exchange held was dropped, not pooled.
        assert gw.gateway.routes[0].backends[0].pool.opened == 2
    probe = [e for e in events(log) if e.path == "/cl304"]
    assert [(e.status, e.error, e.outcome) for e in probe] == [(304, "internal_error", "failure")]
    assert "Response content shorter than Content-Length" in caplog.text  # the bug is in the log


def test_a_body_in_a_coding_other_than_chunked_is_forwarded_with_its_label_until_the_close(
    tmp_path: Path,
) -> None:
    # RFC 9112 6.3: a Transfer-Encoding that does not end in chunked means the body runs until
    # the connection closes. It used to be taken for chunked: "transfer-encoding: chunked", no
    # final chunk and upstream_truncated for a complete response, the gzip label gone.
    log = tmp_path / "access.log"
    replies = {
        b"/gzip": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nGZIPPEDBYTES", True),
        # Chunked last: llhttp undoes the framing, gzip is still on the bytes.
        b"/gzip-chunked": (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n"
            b"5\r\nGZIPP\r\n7\r\nEDBYTES\r\n0\r\n\r\n",
            False,
        ),
    }

    def respond(head: bytes) -> tuple[bytes, bool]:
        return replies.get(request_path(head), (OK, False))

    with (
        scripted_server(respond) as port,
        gateway_thread(make_config(route(port, **BREAKER), telemetry=logged(log))) as gw,
    ):
        for path in (b"/gzip", b"/gzip-chunked"):
            with socket.create_connection(host_port(gw.url), timeout=10) as s:
                s.sendall(b"GET %b HTTP/1.1\r\nHost: t\r\n\r\n" % path)
                head, _, body = read_until_closed(s).partition(b"\r\n\r\n")
            lines = head.lower().split(b"\r\n")
            assert lines[0].startswith(b"http/1.1 200 ") and b"connection: close" in lines, path
            assert [line for line in lines if line.startswith(b"transfer-encoding")] == [
                b"transfer-encoding: gzip"
            ]
            assert b"content-length" not in head.lower() and body == b"GZIPPEDBYTES"
        # No failure counted: with failure_threshold 1 the breaker would refuse this one.
        assert request(gw.url, "GET", "/after").status == 200
        # The chunked answer left its upstream connection reusable for /after.
        assert gw.gateway.routes[0].backends[0].pool.opened == 2
    got = [(e.path, e.status, e.error, e.response_bytes) for e in events(log)]
    assert got == [("/gzip", 200, None, 12), ("/gzip-chunked", 200, None, 12), ("/after", 200, None, 2)]


def test_a_coded_body_that_cannot_be_forwarded_is_a_502_upstream_protocol(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    coded = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    # Chunked twice (RFC 9112 7 forbids it): after llhttp's one pass the bytes are still framed.
    twice = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    with (
        scripted_server(by_path({b"/coded": coded, b"/twice": twice})) as port,
        gateway_thread(make_config(route(port), telemetry=logged(log))) as gw,
    ):
        # HTTP/1.0 may not be sent a Transfer-Encoding (RFC 9112 6.1), and without one it would
        # take the gzip bytes for the content.
        with socket.create_connection(host_port(gw.url), timeout=10) as s:
            s.sendall(b"GET /coded HTTP/1.0\r\n\r\n")
            head, _, body = read_until_closed(s).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 502 ") and b'"error":"upstream_protocol"' in body
        r = request(gw.url, "GET", "/twice")
        assert (r.status, r.json()["error"]) == (502, "upstream_protocol")
    assert [(e.path, e.status, e.error) for e in events(log)] == [
        ("/coded", 502, "upstream_protocol"),
        ("/twice", 502, "upstream_protocol"),
    ]


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


@pytest.mark.parametrize("status_line", [b"999 X", b"600 Beyond", b"099 Below", b"000 Zero"])
def test_a_status_outside_100_to_599_is_a_502_upstream_protocol(tmp_path: Path, status_line: bytes) -> None:
    log = tmp_path / "access.log"
    reply = b"HTTP/1.1 %b\r\nContent-Length: 2\r\n\r\nok" % status_line
    with (
        scripted_server(by_path({b"/odd": reply})) as port,
        gateway_thread(make_config(route(port), telemetry=logged(log))) as gw,
    ):
        r = request(gw.url, "GET", "/odd", headers={"X-Request-ID": "odd-1"})
        assert (r.status, r.json()) == (502, {"error": "upstream_protocol", "request_id": "odd-1"})
        m = scrape(gw.admin_url)
        code = status_line.split()[0].decode().lstrip("0") or "0"
        assert sample(m, "http_requests_total", route="api", method="GET", code=code) is None
        assert sample(m, "http_requests_total", route="api", method="GET", code="502") == 1
        assert sample(m, "http_requests_errors_total", route="api", reason="upstream_protocol") == 1
        assert request(gw.url, "GET", "/fine").status == 200
    (event, _) = events(log)  # valid events: the collector would accept them
    assert (event.status, event.error, event.outcome) == (502, "upstream_protocol", "failure")


def test_an_upstream_closing_mid_body_is_upstream_truncated_not_refused(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000

    def respond(head: bytes) -> tuple[bytes, bool]:
        return partial, True  # then close

    with (
        scripted_server(respond) as port,
        gateway_thread(make_config(route(port), telemetry=logged(log))) as gw,
    ):
        conn = http.client.HTTPConnection(*host_port(gw.url), timeout=10)
        conn.request("GET", "/cut")
        resp = conn.getresponse()
        assert resp.status == 200  # the head was on its way before the upstream went
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
        m = scrape(gw.admin_url)
        assert sample(m, "http_requests_errors_total", route="api", reason="upstream_truncated") == 1
        assert sample(m, "http_requests_errors_total", route="api", reason="upstream_refused") is None
    (event,) = events(log)
    assert (event.status, event.error, event.response_bytes) == (200, "upstream_truncated", 1000)


def test_an_unsolicited_101_is_a_502_upstream_protocol_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "access.log"
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    with (
        scripted_server(by_path({b"/switch": switch})) as port,
        gateway_thread(make_config(route(port), telemetry=logged(log))) as gw,
        caplog.at_level(logging.WARNING),
    ):
        r = request(gw.url, "GET", "/switch")
        assert (r.status, r.json()["error"]) == (502, "upstream_protocol")
        assert request(gw.url, "GET", "/fine").status == 200
    (event, _) = events(log)
    assert (event.status, event.error) == (502, "upstream_protocol")
    assert [rec.getMessage() for rec in caplog.records if rec.exc_info] == []


def test_a_response_still_streaming_at_the_drain_deadline_is_recorded(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"p" * 100  # the rest never comes

    def respond(head: bytes) -> tuple[bytes, bool]:
        return partial, False

    with scripted_server(respond) as port:
        cfg = make_config(route(port), telemetry=logged(log), drain_seconds=1)
        with gateway_thread(cfg) as gw:
            conn = http.client.HTTPConnection(*host_port(gw.url), timeout=30)
            conn.request("GET", "/stream")
            resp = conn.getresponse()
            assert resp.status == 200
            # A request whose body has not begun: the proxy is still waiting for it.
            no_body = socket.create_connection(host_port(gw.url), timeout=30)
            no_body.sendall(b"POST /no-body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
            # A connection whose request head never completes: not a request, but it must not
            # hold the shutdown until uvicorn's own backstop.
            half = socket.create_connection(host_port(gw.url), timeout=30)
            half.sendall(b"GET /never-finished HTTP/1.1\r\nHost:")
            while gw.call(lambda: gw.gateway.app.in_flight) < 2:
                time.sleep(0.01)
            stopping = time.monotonic()
        stopped_after = time.monotonic() - stopping  # the block's exit stopped the gateway
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
        head, _, body = read_until_closed(no_body).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ") and b'"error":"drain_timeout"' in body
        assert half.recv(100) == b""
        no_body.close()
        half.close()
    got = sorted((e.path, e.status, e.error, e.outcome, e.response_bytes) for e in events(log))
    assert got == [
        ("/no-body", 503, "drain_timeout", "failure", len(body)),
        ("/stream", 200, "drain_timeout", "failure", 100),
    ]
    # A hang detector, not a timing test: drain_seconds (1) plus the cut-off, far below the
    # 11 s uvicorn would wait on the half-sent head.
    assert stopped_after < 1 + CUT_OFF_GRACE + 3


def test_an_upstream_that_answers_before_the_body_is_sent_never_gets_its_connection_reused() -> None:
    """The upstream answers 413 (keep-alive) on the head of a POST whose body the gateway has only
    begun to send; the gateway stops sending the body. That connection still owes the upstream
    the rest of the declared length: reused, the next request's bytes would be read as that body,
    and a request hidden in a body would be smuggled past the gateway's routing."""
    received: list[list[bytes]] = []  # per upstream connection: the request heads it read

    class Upstream(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            heads: list[bytes] = []
            received.append(heads)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                heads.append(head.split(b"\r\n", 1)[0])
                early = request_path(head) == b"/early"
                sock.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n" if early else OK)
                if not early:
                    buf = buf[int(dict(_headers(head)).get(b"content-length", b"0")) :]

    with tcp_server(Upstream) as port, gateway_thread(make_config(route(port))) as gw:
        with socket.create_connection(host_port(gw.url), timeout=10) as s:
            s.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
            time.sleep(0.3)  # the upstream has answered by now
            s.sendall(b"y" * 10)  # the gateway sees the answer and stops forwarding the body
            assert s.recv(65536).startswith(b"HTTP/1.1 413 ")
        hidden = b"GET /hidden HTTP/1.1\r\nHost: h\r\n\r\n"
        body = b"\r\n" * 800 + hidden
        reply = request(gw.url, "POST", "/harmless", body=body)
        assert reply.status == 200
    assert [h for heads in received for h in heads] == [b"POST /early HTTP/1.1", b"POST /harmless HTTP/1.1"]
    assert len(received) == 2  # the early-answered connection was dropped, not pooled


def _headers(head: bytes) -> list[tuple[bytes, bytes]]:
    lines = head.split(b"\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(b":") for line in lines)]


def test_a_refusal_records_the_bytes_of_its_answer(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with (
        scripted_server(by_path({})) as port,
        gateway_thread(make_config(route(port), telemetry=logged(log))) as gw,
        socket.create_connection(host_port(gw.url), timeout=10) as s,
    ):
        s.sendall(b"GET /two HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        body = read_until_closed(s).partition(b"\r\n\r\n")[2]
    (event,) = events(log)
    assert (event.status, event.response_bytes) == (400, len(body))
