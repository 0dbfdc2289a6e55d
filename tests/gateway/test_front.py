"""FrontProtocol (the proxy port's HTTP/1.1 server) on a real uvicorn listener, over raw sockets.

A small ASGI app stands in for the proxy so each behaviour the protocol must keep from
uvicorn's own (pipelining, 100-continue, HTTP/1.0, HEAD, keep-alive timeout, 400/500, refused
response heads) is checked byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
import uvloop

from sidecar_gateway.front import REFUSED, UNPARSED_METHOD, FrontProtocol, RefusedHead, front_protocol
from tests.gateway.helpers import read_until_closed
from tests.support.procs import free_port

# The last request message the app received, by path (to see what a refusal told the app).
_last_message: dict[str, dict[str, Any]] = {}


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = b""
    while True:
        msg = await receive()
        _last_message[path] = msg
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    if path == "/sleep":
        await asyncio.sleep(0.3)
    if path == "/boom":
        raise ValueError("app failure")
    if path == "/bad-header":
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\x01b")]})
        except RuntimeError:
            await send({"type": "http.response.start", "status": 502, "headers": [(b"content-length", b"7")]})
            await send({"type": "http.response.body", "body": b"refused"})
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/coded":
        # A body still in a transfer coding the server does not know (as a proxy forwards it).
        coded = [(b"transfer-encoding", b"gzip")]
        await send({"type": "http.response.start", "status": 200, "headers": coded})
        for part in (b"one", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/no-content":
        framing = [(b"content-length", b"5"), (b"transfer-encoding", b"chunked"), (b"etag", b"x")]
        await send({"type": "http.response.start", "status": 204, "headers": framing})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/headers":
        text = json.dumps([[n.decode(), v.decode()] for n, v in scope["headers"]]).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(text))],
            }
        )
        await send({"type": "http.response.body", "body": text})
        return
    text = f"{scope['method']} {path} q={scope['query_string'].decode()} len={len(body)}".encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(text))]}
    )
    await send({"type": "http.response.body", "body": text})


@contextmanager
def front_server(keep_alive: int = 30, protocol: type[FrontProtocol] = FrontProtocol) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_config=None,
        timeout_keep_alive=keep_alive, server_header=False, date_header=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def _read_exact_responses(s: socket.socket, n: int) -> list[bytes]:
    """n responses that all carry Content-Length."""
    buf = b""
    out: list[bytes] = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, (out, buf)
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(rest) < length:
            chunk = s.recv(65536)
            assert chunk
            rest += chunk
        out.append(head + b"\r\n\r\n" + rest[:length])
        buf = rest[length:]
    return out


def test_pipelined_requests_are_answered_in_order_head_and_body_in_one_piece() -> None:
    with front_server() as port, _connect(port) as s:
        s.sendall(
            b"GET /a?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /c%20d HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        first, second, third = _read_exact_responses(s, 3)
    assert first.startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 18\r\n\r\n")
    assert first.endswith(b"GET /a q=x=1 len=0")
    assert second.endswith(b"POST /b q= len=5")
    assert third.endswith(b"GET /c d q= len=0")


def test_expect_100_continue_then_body() -> None:
    with front_server() as port, _connect(port) as s:
        s.sendall(b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"abc")
        (resp,) = _read_exact_responses(s, 1)
    assert resp.endswith(b"PUT /up q= len=3")


def test_http_10_closes_and_head_has_no_body() -> None:
    with front_server() as port:
        with _connect(port) as s:
            s.sendall(b"GET /old HTTP/1.0\r\n\r\n")
            resp = read_until_closed(s)
        assert resp.startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\nconnection: close\r\n\r\n")
        with _connect(port) as s:
            s.sendall(
                b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            )
            resp = read_until_closed(s)
        head_resp, rest = resp.split(b"\r\n\r\n", 1)
        assert head_resp.startswith(b"HTTP/1.1 200 OK") and b"content-length: 16" in head_resp
        assert rest.startswith(b"HTTP/1.1 200 OK") and rest.endswith(b"GET /after q= len=0")


def test_streamed_response_is_chunked() -> None:
    with front_server() as port, _connect(port) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        resp = read_until_closed(s)
    assert resp == (
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
    )


def test_a_body_in_another_transfer_coding_keeps_its_label_and_ends_with_the_connection() -> None:
    with front_server() as port:
        with _connect(port) as s:
            s.sendall(b"GET /coded HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n")
            resp = read_until_closed(s)
        # No chunked framing added, so the close ends the body; the pipelined request is not
        # answered (the client retries it on a new connection).
        assert resp == b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\r\nonetwo"
        with _connect(port) as s:
            s.sendall(b"GET /coded HTTP/1.0\r\n\r\n")
            resp = read_until_closed(s)
        # Never a Transfer-Encoding to HTTP/1.0 (RFC 9112 6.1): the app is refused the start.
        assert resp.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


def test_a_204_goes_out_without_content_length_or_transfer_encoding() -> None:
    # RFC 9110 8.6 and RFC 9112 6.1: never in a 204 (or a 1xx), whatever the app says.
    with front_server() as port, _connect(port) as s:
        s.sendall(b"GET /no-content HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = b""
        while not answer.endswith(b"GET /after q= len=0"):
            chunk = s.recv(65536)
            assert chunk, answer
            answer += chunk
    head204, _, rest = answer.partition(b"\r\n\r\n")
    assert head204 == b"HTTP/1.1 204 No Content\r\netag: x"
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")  # nothing between: no body was expected


def test_garbage_gets_400_app_failure_gets_500_refused_head_lets_the_app_answer() -> None:
    with front_server() as port:
        with _connect(port) as s:
            s.sendall(b"NOT HTTP\r\n\r\n")
            assert read_until_closed(s).startswith(b"HTTP/1.1 400 Bad Request\r\n")
        with _connect(port) as s:
            s.sendall(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
            resp = read_until_closed(s)
            assert resp.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
            assert resp.endswith(b"\r\n\r\nInternal Server Error")
        with _connect(port) as s:
            s.sendall(b"GET /bad-header HTTP/1.1\r\nHost: t\r\n\r\n")
            (resp,) = _read_exact_responses(s, 1)
            assert resp == b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 7\r\n\r\nrefused"


def test_idle_keep_alive_connection_is_closed_after_the_timeout() -> None:
    with front_server(keep_alive=1) as port, _connect(port) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        _read_exact_responses(s, 1)
        s.settimeout(5)
        assert s.recv(100) == b""  # closed by the server, not by our 5 s timeout


def test_client_disconnect_reaches_a_waiting_receive() -> None:
    seen: list[str] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            msg = await receive()
            seen.append(msg["type"])
            if msg["type"] == "http.disconnect":
                done.set()
                return

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=FrontProtocol, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.02)
        with _connect(port) as s:
            s.sendall(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            threading.Event().wait(0.2)
        assert done.wait(5)
        assert seen[0] == "http.request" and seen[-1] == "http.disconnect"
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()


def test_request_trailers_never_become_header_fields() -> None:
    # The whole request arrives in one read, so the parser has seen the trailers before the app
    # reads scope["headers"]: they used to be appended to that very list.
    with front_server() as port, _connect(port) as s:
        s.sendall(
            b"POST /headers HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\nX-Request-ID: forged\r\n"
            b"Authorization: Bearer x\r\n\r\n"
            b"GET /headers HTTP/1.1\r\nHost: next\r\n\r\n"
        )
        first, second = _read_exact_responses(s, 2)
    assert json.loads(first.split(b"\r\n\r\n", 1)[1]) == [["host", "h"], ["transfer-encoding", "chunked"]]
    assert json.loads(second.split(b"\r\n\r\n", 1)[1]) == [["host", "next"]]


def _refusing_server() -> tuple[list[RefusedHead], type[FrontProtocol]]:
    """A FrontProtocol whose refusal hook keeps what it was told (and hands out ids r1, r2...)."""
    seen: list[RefusedHead] = []

    def hook(refused: RefusedHead) -> bytes:
        seen.append(refused)
        return b"r%d" % len(seen)

    return seen, front_protocol(64 * 1024, hook)


def test_every_refusal_is_recorded_through_the_hook_and_answered_with_json() -> None:
    seen, protocol = _refusing_server()
    with front_server(protocol=protocol) as port:
        answers = []
        for bad in (
            b"GARBAGE\r\n\r\n",
            b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n",
            b"PUT /p?q=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: scan/1\r\nAccept: */*\r\nBad Name: x\r\n\r\n",
            b"POST /chunks?z HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
        ):
            with _connect(port) as s:
                s.sendall(bad)
                answers.append(read_until_closed(s))
    for i, answer in enumerate(answers, 1):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
        assert head.endswith(
            b"\r\nx-request-id: r%d\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close" % (i, len(body))
        )
        assert json.loads(body) == {"error": "bad_request", "request_id": f"r{i}"}
    garbage, nul, bad_header, bad_chunk = seen
    # No method was parsed: a placeholder (a valid token), not llhttp's default (DELETE).
    assert (garbage.method, garbage.path, garbage.status) == (UNPARSED_METHOD, "", 400)
    assert (nul.method, nul.path, nul.status) == ("GET", "", 400)  # the URL never completed
    assert (bad_header.method, bad_header.path, bad_header.query) == ("PUT", "/p", b"q=1")
    # httptools hands a header over once the next one begins: Accept was still pending.
    assert list(bad_header.headers) == [(b"host", b"t"), (b"user-agent", b"scan/1")]
    assert (bad_chunk.method, bad_chunk.path, bad_chunk.query, bad_chunk.status) == (
        "POST",
        "/chunks",
        b"z",
        400,
    )
    # The app had the head already: it was told the request was refused, not that the client left.
    assert _last_message["/chunks"] == {"type": "http.disconnect", REFUSED: True}


def test_a_refusal_is_answered_after_the_responses_pipelined_before_it() -> None:
    seen, protocol = _refusing_server()
    with front_server(protocol=protocol) as port, _connect(port) as s:
        s.sendall(
            b"GET /sleep HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\n"
        )
        answer = read_until_closed(s)
    first, rest = answer.split(b"GET /sleep q= len=0", 1)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    second, third = rest.split(b"GET /second q= len=0", 1)
    assert second.startswith(b"HTTP/1.1 200 OK\r\n")
    assert third.startswith(b"HTTP/1.1 400 Bad Request\r\n") and third.endswith(
        b'{"error":"bad_request","request_id":"r1"}'
    )
    assert len(seen) == 1


def test_missing_or_duplicate_host_is_refused_before_the_app() -> None:
    seen, protocol = _refusing_server()
    with front_server(protocol=protocol) as port:
        answers = []
        for request in (
            b"GET /two?x=1 HTTP/1.1\r\nHost: a\r\nHOST: b\r\nContent-Length: 2\r\n\r\nhi",
            b"GET /none HTTP/1.1\r\nUser-Agent: u\r\n\r\n",
            b"GET /old-two HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        ):
            with _connect(port) as s:
                s.sendall(request)
                answers.append(read_until_closed(s))
        with _connect(port) as s:  # HTTP/1.0 needs no Host
            s.sendall(b"GET /old HTTP/1.0\r\n\r\n")
            assert read_until_closed(s).endswith(b"GET /old q= len=0")
    errors = []
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"\r\nconnection: close" in head
        errors.append(json.loads(body)["error"])
    assert errors == ["duplicate_host", "missing_host", "duplicate_host"]
    assert [(r.method, r.path, r.query, r.status) for r in seen] == [
        ("GET", "/two", b"x=1", 400),
        ("GET", "/none", b"", 400),
        ("GET", "/old-two", b"", 400),
    ]
    assert list(seen[0].headers) == [(b"host", b"a"), (b"host", b"b"), (b"content-length", b"2")]
    assert "/two" not in _last_message and "/none" not in _last_message  # the app never saw them


def test_transfer_codings_other_than_plain_chunked_are_refused() -> None:
    seen, protocol = _refusing_server()
    chunked_body = b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    with front_server(protocol=protocol) as port:
        answers = []
        for codings in (
            b"Transfer-Encoding: gzip, chunked",
            b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",  # the same, in two fields
            b"Transfer-Encoding: gzip",  # chunked not last: the body's length is unknown
        ):
            with _connect(port) as s:
                s.sendall(b"POST /te HTTP/1.1\r\nHost: t\r\n" + codings + chunked_body)
                answers.append(read_until_closed(s))
        with _connect(port) as s:
            s.sendall(b"POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked" + chunked_body)
            (plain,) = _read_exact_responses(s, 1)
    assert plain.endswith(b"POST /te q= len=5")
    got = [(a.split(b"\r\n", 1)[0], json.loads(a.partition(b"\r\n\r\n")[2])["error"]) for a in answers]
    assert got == [
        (b"HTTP/1.1 501 Not Implemented", "unsupported_transfer_coding"),
        (b"HTTP/1.1 501 Not Implemented", "unsupported_transfer_coding"),
        (b"HTTP/1.1 400 Bad Request", "bad_request"),
    ]
    assert [(r.method, r.path, r.status) for r in seen] == [("POST", "/te", 501)] * 2 + [("POST", "/te", 400)]


def test_a_fragment_in_the_request_target_is_dropped() -> None:
    with front_server() as port, _connect(port) as s:
        s.sendall(
            b"GET /frag#top HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /frag?q=1#top HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /fr%61g#a%20b HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        answers = _read_exact_responses(s, 3)
    assert [a.partition(b"\r\n\r\n")[2] for a in answers] == [
        b"GET /frag q= len=0",
        b"GET /frag q=q=1 len=0",
        b"GET /frag q= len=0",
    ]


def test_a_trailer_section_longer_than_the_head_limit_is_refused() -> None:
    # httptools buffers a trailer field by repeated concatenation: unbounded, a 20 MB trailer
    # cost it seconds of CPU on the event loop. It is bounded like a head: 431.
    seen, protocol = _refusing_server()
    with front_server(protocol=protocol) as port, _connect(port) as s:
        s.sendall(
            b"POST /trailers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-T: "
        )
        with contextlib.suppress(OSError):
            for _ in range(32):  # 2 MiB, far beyond the 64 KiB limit
                s.sendall(b"a" * 65536)
                threading.Event().wait(0.005)  # separate reads, as from a slow client
        answer = read_until_closed(s)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert json.loads(body) == {"error": "request_trailers_too_large", "request_id": "r1"}
    assert [(r.method, r.path, r.status) for r in seen] == [("POST", "/trailers", 431)]
    assert _last_message["/trailers"] == {"type": "http.disconnect", REFUSED: True}


def _trailer_refusal(port: int, parts: list[bytes]) -> bytes:
    with _connect(port) as s:
        for i, part in enumerate(parts):
            if i:
                threading.Event().wait(0.1)  # a separate read
            with contextlib.suppress(OSError):
                s.sendall(part)
        return read_until_closed(s)


def test_a_trailer_section_over_the_head_limit_is_refused_however_it_arrives() -> None:
    # httptools hands over each trailer field whole: one big field, or many small ones, in one
    # read were never counted (only whole reads after the first were), and got a 200.
    seen, protocol = _refusing_server()
    start = (
        b"POST /trailers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"1\r\na\r\n0\r\n"
    )
    cases = [
        [start + b"X: " + b"a" * 70_000 + b"\r\n\r\n"],
        [start + b"X: " + b"a" * 35_000, b"a" * 35_000 + b"\r\n\r\n"],
        [start + b"".join(b"X%d: %b\r\n" % (i, b"a" * 100) for i in range(1000)) + b"\r\n"],
    ]
    with front_server(protocol=protocol) as port:
        answers = [_trailer_refusal(port, parts) for parts in cases]
        # Trailers within the limit (counted apart from the head) are fine.
        near = [start + b"X: " + b"a" * 60_000 + b"\r\n\r\n"]
        assert _trailer_refusal(port, near).endswith(b"POST /trailers q= len=1")
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert json.loads(body)["error"] == "request_trailers_too_large"
    assert [(r.method, r.path, r.status) for r in seen] == [("POST", "/trailers", 431)] * 3


def test_an_invalid_host_is_refused_before_the_app() -> None:
    seen, protocol = _refusing_server()
    bad = [b"a,b", b"a b", b"a/b", b"[::1", b"u@h", b"h:8a", b"[1::2::3]", b"h\\x", b"[::1]x"]
    good = [b"example.com:8080", b"[::1]:80", b"10.0.0.1", b"a%41b", b"", b"[v1.fe]", b"h:"]
    with front_server(protocol=protocol) as port:
        answers = []
        for host in bad:
            with _connect(port) as s:
                s.sendall(b"GET /bad-host HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
                answers.append(read_until_closed(s))
        for host in good:
            with _connect(port) as s:
                s.sendall(b"GET /headers HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
                got = json.loads(read_until_closed(s).partition(b"\r\n\r\n")[2])
            assert got[0] == ["host", host.decode()]
    for host, answer in zip(bad, answers, strict=True):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), host
        assert json.loads(body)["error"] == "invalid_host"
    assert [(r.path, r.status) for r in seen] == [("/bad-host", 400)] * len(bad)
    assert "/bad-host" not in _last_message


def test_an_absolute_form_target_wins_over_the_host_field() -> None:
    # RFC 9112 3.2.2: a server receiving absolute-form uses the target's authority, not Host.
    seen, protocol = _refusing_server()
    with front_server(protocol=protocol) as port:
        with _connect(port) as s:
            s.sendall(
                b"GET http://evil.example/headers HTTP/1.1\r\nHost: good\r\nAccept: */*\r\n\r\n"
                b"GET HTTP://evil.example:8080?q=1#f HTTP/1.1\r\nHost: good\r\n\r\n"
            )
            first, second = _read_exact_responses(s, 2)
        refused = []
        for target in (
            b"http://u:p@evil.example/h",
            b"http://[1::2::3]/h",
            b"ftp://evil.example/h",
            b"http:///h",
        ):
            with _connect(port) as s:
                s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: good\r\nConnection: close\r\n\r\n")
                refused.append(json.loads(read_until_closed(s).partition(b"\r\n\r\n")[2])["error"])
    assert json.loads(first.partition(b"\r\n\r\n")[2]) == [["host", "evil.example"], ["accept", "*/*"]]
    assert second.endswith(b"GET / q=q=1 len=0")  # an empty path is "/" (RFC 9112 3.3)
    # (llhttp's URL parser refuses "http:///h" itself, and most bad authorities.)
    assert refused == ["invalid_host", "invalid_host", "bad_request", "bad_request"]
    assert [r.status for r in seen] == [400] * 4


def test_a_refusal_tells_the_hook_the_body_its_answer_carries() -> None:
    # The hook records the refusal before the answer is written; answer_body() lets it count the
    # bytes the client gets (the access event's http.response.body.bytes was always 0).
    seen, protocol = _refusing_server()
    requests = [
        b"GARBAGE\r\n\r\n",
        b"GET /none HTTP/1.1\r\n\r\n",
        b"GET /big HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
        b"POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ]
    with front_server(protocol=protocol) as port:
        answers = []
        for data in requests:
            with _connect(port) as s:
                s.sendall(data)
                answers.append(read_until_closed(s))
    for i, (refused, answer) in enumerate(zip(seen, answers, strict=True), 1):
        body = answer.partition(b"\r\n\r\n")[2]
        assert refused.answer_body(b"r%d" % i) == body
        assert json.loads(body)["error"] == refused.error.decode()
    assert [r.status for r in seen] == [400, 400, 431, 501]
    assert RefusedHead("GET", "/", b"", None, 400).answer_body(b"") == b'{"error":"bad_request"}'
