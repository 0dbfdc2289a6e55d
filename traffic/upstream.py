"""The demo upstream: a small, fast HTTP/1.1 server that answers as ``x-demo-*`` headers say.

It stands in for real services behind the gateway in ``gatewatch up``, in tests and in demos.
It is an asyncio Protocol with httptools parsing (on uvloop when installed) rather than an ASGI
app: the gateway is measured through it, so it must cost far less per request than the gateway.

Behaviour (see :mod:`traffic.demo_response` for the header rules):

- reads the whole request body, counting bytes (reported in ``x-demo-received-bytes``);
- answers ``x-demo-status`` (default 200) with a body of exactly ``x-demo-bytes`` bytes or,
  without it, a small JSON echo of method, path, query, header count and body size;
- waits ``x-demo-delay-ms`` first; bodies of any size are written from one pre-built chunk,
  under transport flow control, so a 70 MB body costs no memory;
- no body for HEAD, 204 and 304; invalid ``x-demo-*`` values or a malformed request get a 400
  with a JSON body; ``GET /healthz`` is always 200.

Entry points: :func:`run` (blocking, for ``gatewatch demo-upstream``), :func:`serve` (async, until
cancelled), :class:`DemoUpstream` (start/stop in-process) and :class:`UpstreamThread` (a server on
its own loop thread, for synchronous callers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from types import TracebackType
from typing import cast

import httptools

from traffic.demo_response import (
    DemoHeaderError,
    body_allowed,
    content_length_allowed,
    echo_body,
    error_body,
    plan_response,
    response_head,
)

CHUNK_SIZE = 256 * 1024
# One pre-built chunk; every body is a series of views into it, so body size costs no memory.
_CHUNK = memoryview(b"x" * CHUNK_SIZE)
# Bodies up to this size are written in one go straight from the parser callback (no task).
_INLINE_LIMIT = 64 * 1024
_MAX_TARGET = 64 * 1024
# The request line and headers together. httptools hands a header to us only when it is complete
# and buffers it until then, so without a bound one client could fill memory with one header.
_MAX_HEAD = 2 * _MAX_TARGET
# After refusing a request mid-stream, keep discarding what the client still sends this long before
# closing: closing with unread input makes the kernel send a RST, which can destroy the answer
# before the client reads it (nginx's "lingering close").
_LINGER_SECONDS = 2.0
_MAX_PIPELINED = 32  # stop reading a connection with this many requests waiting for answers
_JSON = b"application/json"
# /healthz names the process, so a supervisor (``gatewatch up``) can tell its own child from a
# process that took the port first.
_HEALTHY = b'{"status":"ok","pid":%d}' % os.getpid()
_OCTETS = b"application/octet-stream"


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request as the demo upstream saw it, and what it answered (for tests and demos)."""

    method: str
    target: str  # path and query exactly as received
    status: int
    body_bytes: int  # response body size (0 for HEAD, 204, 304)
    received_bytes: int
    user_agent: str | None
    forwarded_for: str | None
    headers: int  # number of request headers


@dataclass
class UpstreamStats:
    requests: int = 0
    bad_requests: int = 0
    bytes_received: int = 0
    body_bytes_sent: int = 0
    connections: int = 0


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6; port 0 picks a free port) or ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected host:port to listen on, got {listen!r}")
    return host.strip("[]"), int(port)


class _Request:
    __slots__ = (
        "bad_header",
        "close",
        "delay_h",
        "error",
        "expect",
        "head_done",
        "header_count",
        "http10",
        "method",
        "received",
        "size_h",
        "status_h",
        "target",
        "user_agent",
        "xff",
    )

    def __init__(self) -> None:
        self.method = b"GET"
        self.target = b""
        self.header_count = 0
        self.status_h: bytes | None = None
        self.size_h: bytes | None = None
        self.delay_h: bytes | None = None
        self.user_agent: bytes | None = None
        self.xff: bytes | None = None
        self.expect = False
        self.head_done = False
        self.received = 0
        self.close = False
        self.http10 = False
        self.bad_header: DemoHeaderError | None = None
        # (status, JSON body) for a request refused before it was understood
        self.error: tuple[int, bytes] | None = None


class _Connection(asyncio.Protocol):
    def __init__(self, server: DemoUpstream) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._req: _Request | None = None  # the request being parsed
        self._queue: deque[_Request] = deque()  # parsed, waiting for the worker
        self._worker: asyncio.Task[None] | None = None
        self._write_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._closing = False  # no further requests are read on this connection
        self._close_when_done = False  # close once the answers already owed are written
        self._shutdown = False  # the server is stopping: the request being read is the last
        self._head_bytes = 0  # bytes received while the current request's head was incomplete

    # --- transport callbacks -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._server._connections.add(self)
        self._server.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        self._transport = None
        self._queue.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._worker is not None:
            self._worker.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # after a protocol error or Connection: close nothing more is read
        try:
            self._parser.feed_data(data)
            req = self._req
            if req is not None and not req.head_done:
                # Counts whole chunks, so a head may be refused a little before the limit: fine.
                self._head_bytes += len(data)
                if self._head_bytes > _MAX_HEAD:
                    self._refuse(431, f"request head larger than {_MAX_HEAD} bytes")
        except httptools.HttpParserUpgrade:
            # Upgrades (websocket, h2c) and CONNECT are not something a demo upstream offers.
            # The parser stops after the headers; when it already completed the request, that
            # request is answered normally and the connection ends after it.
            if self._req is not None:
                self._refuse(400, "protocol upgrades are not supported")
            else:
                self._finish_after_owed()
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed HTTP request: {exc}")

    # --- httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._req = _Request()
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        req = self._req
        assert req is not None
        if len(req.target) + len(url) > _MAX_TARGET:
            req.error = (414, error_body(f"request target longer than {_MAX_TARGET} bytes"))
        else:
            req.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self._req
        assert req is not None
        req.header_count += 1
        name = name.lower()
        if name == b"x-demo-status":
            req.status_h = value
        elif name == b"x-demo-bytes":
            req.size_h = value
        elif name == b"x-demo-delay-ms":
            req.delay_h = value
        elif name == b"user-agent":
            req.user_agent = value
        elif name == b"x-forwarded-for":
            req.xff = value
        elif name == b"expect":
            req.expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        req = self._req
        assert req is not None
        req.head_done = True
        parser = self._parser
        req.method = parser.get_method()
        req.close = not parser.should_keep_alive()
        req.http10 = parser.get_http_version() == "1.0"
        if req.expect and self._worker is None and not self._queue and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        assert self._req is not None
        self._req.received += len(body)

    def on_message_complete(self) -> None:
        req = self._req
        assert req is not None
        self._req = None
        self._dispatch(req)

    # --- answering ------------------------------------------------------------------------
    def _refuse(self, status: int, message: str) -> None:
        req = self._req or _Request()
        self._req = None
        req.error = (status, error_body(message))
        req.close = True
        self._dispatch(req)

    def _finish_after_owed(self) -> None:
        """Read no more requests; close once every answer already owed is written."""
        self._closing = True
        self._req = None
        if self._transport is None:
            return
        if self._worker is None and not self._queue:
            self._transport.close()
        else:
            self._close_when_done = True

    def _dispatch(self, req: _Request) -> None:
        if self._closing:
            return  # pipelined after a request that ended the connection: never answered
        if self._shutdown:
            req.close = True
        if req.close:
            self._closing = True
        if self._worker is None and not self._queue and not self._write_paused:
            done = self._answer_inline(req)
            if done:
                return
        else:
            self._queue.append(req)
        if self._worker is None:
            self._worker = self._loop.create_task(self._work())
        if len(self._queue) >= _MAX_PIPELINED and not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _plan(self, req: _Request) -> tuple[int, bytes | None, int, float, bool]:
        """(status, literal body or None, body size, delay seconds, refused) for a request."""
        if req.error is not None:
            status, body = req.error
            return status, body, len(body), 0.0, True
        if req.method == b"CONNECT":
            body = error_body("CONNECT is not supported: this is an origin server, not a proxy")
            return 405, body, len(body), 0.0, True
        if req.target == b"/healthz" and req.method in (b"GET", b"HEAD"):
            body = _HEALTHY
            return 200, body, len(body), 0.0, False
        try:
            plan = plan_response(req.status_h, req.size_h, req.delay_h)
        except DemoHeaderError as exc:
            body = error_body(exc.reason, exc.header, exc.value)
            return 400, body, len(body), 0.0, True
        if plan.body_bytes is None:
            body = echo_body(req.method, req.target, req.header_count, req.received, plan.status)
            return plan.status, body, len(body), plan.delay_ms / 1000.0, False
        return plan.status, None, plan.body_bytes, plan.delay_ms / 1000.0, False

    def _head(self, req: _Request, status: int, literal: bytes | None, size: int) -> tuple[bytes, int]:
        """The response head and the number of body bytes that follow it."""
        if req.close:
            connection: bytes | None = b"close"
        elif req.http10:
            connection = b"keep-alive"
        else:
            connection = None
        send_length = content_length_allowed(status)
        head = response_head(
            status,
            content_type=_JSON if literal is not None else _OCTETS,
            content_length=size if send_length else None,
            received_bytes=req.received,
            connection=connection,
            date=self._server._date(),
        )
        return head, size if body_allowed(req.method, status) else 0

    def _record(self, req: _Request, status: int, sent: int, refused: bool) -> None:
        server = self._server
        stats = server.stats
        stats.requests += 1
        stats.bytes_received += req.received
        stats.body_bytes_sent += sent
        if refused:
            stats.bad_requests += 1
        if server.on_request is not None:
            server.on_request(
                SeenRequest(
                    method=req.method.decode("latin-1"),
                    target=req.target.decode("latin-1"),
                    status=status,
                    body_bytes=sent,
                    received_bytes=req.received,
                    user_agent=None if req.user_agent is None else req.user_agent.decode("latin-1"),
                    forwarded_for=None if req.xff is None else req.xff.decode("latin-1"),
                    headers=req.header_count,
                )
            )

    def _answer_inline(self, req: _Request) -> bool:
        """Answer now, from the parser callback, when no waiting is needed; False otherwise."""
        status, literal, size, delay, refused = self._plan(req)
        if delay > 0 or (literal is None and size > _INLINE_LIMIT):
            self._queue.append(req)
            return False
        transport = self._transport
        if transport is None:
            return True
        head, sent = self._head(req, status, literal, size)
        if sent == 0:
            transport.write(head)
        elif literal is not None:
            transport.write(head + literal)
        else:
            transport.write(head + _CHUNK[:sent])
        self._record(req, status, sent, refused)
        if req.close:
            self._end(transport, refused)
        return True

    async def _work(self) -> None:
        try:
            while self._queue:
                req = self._queue.popleft()
                await self._answer(req)
                if self._transport is None or req.close:
                    return
                if self._reading_paused and len(self._queue) < _MAX_PIPELINED // 2:
                    self._reading_paused = False
                    self._transport.resume_reading()
        finally:
            self._worker = None
        if self._close_when_done and self._transport is not None:
            self._transport.close()

    async def _answer(self, req: _Request) -> None:
        status, literal, size, delay, refused = self._plan(req)
        if delay > 0:
            await asyncio.sleep(delay)
        transport = self._transport
        if transport is None:
            return
        head, remaining = self._head(req, status, literal, size)
        sent = remaining
        if literal is not None and remaining:
            transport.write(head + literal)
        else:
            transport.write(head)
            while remaining > 0:
                n = min(remaining, CHUNK_SIZE)
                transport.write(_CHUNK[:n])
                remaining -= n
                if self._write_paused:
                    await self._wait_writable()
                if self._transport is None:
                    return  # the client went away mid-body
        self._record(req, status, sent, refused)
        if req.close:
            self._end(transport, refused)

    def _end(self, transport: asyncio.Transport, refused: bool) -> None:
        if refused and transport.can_write_eof():
            transport.write_eof()  # the answer and EOF go out; input is discarded (_closing)
            self._loop.call_later(_LINGER_SECONDS, transport.close)
        else:
            transport.close()

    async def _wait_writable(self) -> None:
        if not self._write_paused:
            return
        self._writable = self._loop.create_future()
        try:
            await self._writable
        finally:
            self._writable = None

    def shutdown(self) -> None:
        """Close now when idle, otherwise after the answers already owed."""
        self._shutdown = True
        if self._req is None:
            self._finish_after_owed()
        # else: the request being read is answered, with ``connection: close``, and is the last

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class DemoUpstream:
    """A demo upstream server on one event loop. ``listen`` may use port 0 (see :attr:`port`).

    ``on_request`` is called on the server's loop for every answered request.
    """

    def __init__(
        self, listen: str = "127.0.0.1:0", *, on_request: Callable[[SeenRequest], None] | None = None
    ) -> None:
        self.host, self._port = parse_listen(listen)
        self.on_request = on_request
        self.stats = UpstreamStats()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._date_second = -1
        self._date_value = b""

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    def _date(self) -> bytes:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_value = formatdate(now, usegmt=True).encode()
        return self._date_value

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self._port, reuse_address=True, backlog=1024
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, finish the answers owed (up to ``grace`` seconds), then close."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections):
            conn.shutdown()
        deadline = time.monotonic() + grace
        while self._connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self._connections):
            conn.abort()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> DemoUpstream:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def serve(
    listen: str,
    *,
    on_request: Callable[[SeenRequest], None] | None = None,
    ready: Callable[[DemoUpstream], None] | None = None,
) -> None:
    """Serve until cancelled, then stop gracefully. ``ready`` is called once listening."""
    server = DemoUpstream(listen, on_request=on_request)
    await server.start()
    try:
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()
    finally:
        await server.stop()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(listen: str) -> None:
    """Serve on ``listen`` until SIGINT/SIGTERM (``gatewatch demo-upstream --listen H:P``)."""
    try:
        parse_listen(listen)
    except ValueError as exc:
        print(f"gatewatch demo-upstream: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    async def main() -> None:
        server = DemoUpstream(listen)
        try:
            await server.start()
        except OSError as exc:
            print(f"gatewatch demo-upstream: cannot listen on {listen}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"demo upstream listening on {server.url}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        print(f"demo upstream stopped after {server.stats.requests} requests", file=sys.stderr)

    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(main())


class UpstreamThread:
    """A demo upstream on its own event-loop thread: ``with UpstreamThread() as up: up.url``."""

    def __init__(
        self, listen: str = "127.0.0.1:0", *, on_request: Callable[[SeenRequest], None] | None = None
    ) -> None:
        self.server = DemoUpstream(listen, on_request=on_request)
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-upstream", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> UpstreamThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
