"""One keep-alive HTTP/1.1 connection to an upstream, on asyncio.Protocol + httptools.

The protocol keeps the state of the one exchange in flight (no pipelining): response head,
buffered body chunks, completion. Waiting is done on plain futures whose timeouts a shared
``Deadlines`` checker enforces, so an exchange costs no extra tasks and no loop timers.
Both directions apply backpressure: writes wait while the
transport is paused, and reading pauses once ``read_high_water`` body bytes wait unconsumed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import httptools

from sidecar_gateway.upstream.errors import (
    ConnectionClosed,
    ProtocolError,
    ResponseTruncated,
    UpstreamError,
    UpstreamTimeout,
)

Header = tuple[bytes, bytes]

READ_HIGH_WATER = 256 * 1024
READ_LOW_WATER = 64 * 1024


class _BadHead(Exception):
    """Raised from a parser callback to stop parsing a response head we refuse (the reason is
    already in ``_error``; httptools wraps it in an HttpParserCallbackError)."""


class Deadlines:
    """Timeouts for every waiting exchange, checked by one task every ``resolution`` seconds.

    A loop timer per wait (call_later + cancel) cost 3.6 us on uvloop here, several per request;
    a deadline attribute and a set membership cost almost nothing. Timeouts therefore fire up
    to ``resolution`` late, which is fine for limits measured in seconds.
    """

    def __init__(self, resolution: float = 0.05) -> None:
        self.resolution = resolution
        self._waiting: set[UpstreamConnection] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, conn: UpstreamConnection) -> None:
        self._waiting.add(conn)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="upstream-deadlines")

    def discard(self, conn: UpstreamConnection) -> None:
        self._waiting.discard(conn)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                await asyncio.sleep(self.resolution)
                now = loop.time()
                for conn in [c for c in self._waiting if c.deadline <= now]:
                    conn.expire()
        finally:
            self._task = None

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._waiting.clear()


class UpstreamConnection(asyncio.Protocol):
    """A pooled connection; the pool hands it to one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadlines: Deadlines) -> None:
        self.loop = loop
        self.deadlines = deadlines
        self.deadline = 0.0  # loop time at which the current wait times out
        self._timeout_reason = ""
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.exchanges = 0  # completed or started exchanges on this connection
        self._error: UpstreamError | None = None
        self._write_paused = False
        self._write_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._waiter: asyncio.Future[None] | None = None  # head or body progress
        self._active = False
        self._reset_exchange(False)

    # ---- exchange state ------------------------------------------------------------------
    def _reset_exchange(self, is_head: bool) -> None:
        self.status = 0
        # Names lower case. No Transfer-Encoding as received: one naming the codings still on
        # the body, if any (see _take_codings); the chunked framing is undone here.
        self.headers: list[Header] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = True
        self.got_bytes = False
        self._is_head = is_head
        self._interim = False
        self._has_length = False
        self._codings: bytes | None = None  # the Transfer-Encoding values, joined
        self._chunked = False
        self._until_eof = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self.body_bytes = 0

    def begin(self, is_head: bool) -> None:
        """Start a new exchange on this (idle or fresh) connection."""
        self._reset_exchange(is_head)
        self._active = True
        self.exchanges += 1

    @property
    def reusable(self) -> bool:
        return (
            not self.closed
            and self.complete
            and self.keep_alive
            and not self._chunks
            and self._error is None
            and not self._write_paused
        )

    def finish(self) -> None:
        """The exchange is over (consumed or abandoned); the pool decides what happens next."""
        self._active = False
        if self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()

    # ---- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._active:
            # Bytes on an idle connection: the upstream is confused; never reuse it.
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"invalid upstream response: {exc}"))
            self.close()
            return
        except httptools.HttpParserUpgrade:
            # Not an HttpParserError: uncaught, it escaped into the event loop's handler. A 101
            # is refused in on_headers_complete already; this covers any other switch.
            self._fail(ProtocolError("upstream switched protocols, which the proxy never asks for"))
            self.close()
            return
        if self._is_head and self.head_done:
            # A HEAD response has no body whatever its Content-Length says; httptools cannot be
            # told so, hence a fresh parser for the next exchange.
            self.parser = httptools.HttpResponseParser(self)

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._active and not self.complete:
            if self.head_done and self._until_eof:
                self.complete = True  # body delimited by connection close
                self.keep_alive = False
            elif self.head_done:
                self._fail(ResponseTruncated("upstream closed the connection in the middle of the body"))
            else:
                self._fail(ConnectionClosed("upstream closed the connection before responding"))
        self._wake()
        w = self._write_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        w = self._write_waiter
        if w is not None and not w.done():
            w.set_result(None)

    # ---- httptools callbacks -------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            # A trailer field (after a chunked body). Appending it here made it a response
            # header, which RFC 9110 6.5.1 forbids. The proxy drops trailers instead of
            # forwarding them (it strips the Trailer header too, as hop-by-hop): a recipient
            # that removes the chunked coding may discard them (RFC 9112 7.1.2), and
            # re-encoding them would cost every chunked response for what no client here uses.
            return
        name = name.lower()
        if name == b"content-length":
            self._has_length = True
        elif name == b"transfer-encoding":
            # Not kept as received: on_headers_complete puts back what is still on the body.
            codings = self._codings
            self._codings = value if codings is None else codings + b"," + value
            return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if not 100 <= status <= 599 or status == 101:
            # llhttp takes any three digits. A status outside 100-599 has no meaning in HTTP
            # (and the access-event schema refuses it); a 101 switches protocols, which we
            # never ask for (Upgrade is hop-by-hop and not forwarded).
            self._fail(
                ProtocolError(f"upstream answered with status {status}, which the proxy cannot forward")
            )
            raise _BadHead
        if 100 <= status < 200:
            # Interim response (e.g. 103 Early Hints): not forwarded; the final one follows.
            self._interim = True
            self.headers = []
            self._has_length = False
            self._codings = None
            return
        codings = self._codings
        if codings is not None:
            if codings == b"chunked":  # nearly always: no list to take apart
                self._chunked = True
            else:
                self._take_codings(codings)
        self.status = status
        self.head_done = True
        self._until_eof = not (self._has_length or self._chunked or self._is_head or status in (204, 304))
        if self._is_head:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    def _take_codings(self, codings: bytes) -> None:
        """Frame a response by its transfer codings, as llhttp does, and keep the rest in ``headers``.

        llhttp undoes ``chunked`` only when it is the final coding (RFC 9112 6.3: otherwise the
        body runs until the connection closes), matching the last list element as this does (it
        skips spaces and tabs before the name but only spaces after it), and undoes nothing
        else: a coding such as gzip is still on the body bytes. So ``headers`` gets one
        Transfer-Encoding field naming the codings left, which whoever forwards the body must pass
        on (the proxy: the client cannot decode what it is not told about). A ``chunked`` anywhere
        else (applied twice, which RFC 9112 7 forbids, or before another coding) is refused: its
        framing is still in the bytes, and nobody downstream could tell it from ours.
        """
        parts = codings.split(b",")
        self._chunked = parts[-1].lstrip(b" \t").rstrip(b" ").lower() == b"chunked"
        if self._chunked:
            parts.pop()
        left = [coding for part in parts if (coding := part.strip(b" \t"))]
        if any(coding.partition(b";")[0].rstrip(b" \t").lower() == b"chunked" for coding in left):
            self._fail(ProtocolError(f"upstream transfer codings {codings[:100]!r}: chunked not only last"))
            raise _BadHead
        if left:
            self.headers.append((b"transfer-encoding", b", ".join(left)))

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        n = len(body)
        self._buffered += n
        self.body_bytes += n
        if self._buffered >= READ_HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # ---- what the exchange calls ---------------------------------------------------------
    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self, waiter: asyncio.Future[None], timeout: float, reason: str) -> None:
        self.deadline = self.loop.time() + timeout
        self._timeout_reason = reason
        self.deadlines.add(self)
        try:
            await waiter
        finally:
            self.deadlines.discard(self)

    def expire(self) -> None:
        """Called by Deadlines when the current wait has run out of time."""
        w = self._waiter
        if w is not None and not w.done():
            w.set_exception(UpstreamTimeout(self._timeout_reason))

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise self._error or ConnectionClosed("upstream connection is closed")
        self.transport.write(data)

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    async def drain(self, timeout: float) -> None:
        """Wait until the upstream accepts more request bytes, or a response/close arrives."""
        while self._write_paused and not self.closed and not self.head_done:
            waiter = self.loop.create_future()
            self._write_waiter = waiter
            # An early response (e.g. 413) must also end the wait: share the progress waiter.
            self._waiter = waiter
            try:
                await self._wait(waiter, timeout, "upstream stopped reading the request body")
            finally:
                self._write_waiter = None
                self._waiter = None
        if self._error is not None:
            raise self._error

    async def read_head(self, timeout: float) -> None:
        """Wait for the response status line and headers (``status``/``headers``)."""
        while not self.head_done:
            if self._error is not None:
                raise self._error
            if self.closed:
                raise ConnectionClosed("upstream closed the connection before responding")
            # The wait is inlined (not self._wait) because this runs once per request.
            waiter = self.loop.create_future()
            self._waiter = waiter
            self.deadline = self.loop.time() + timeout
            self._timeout_reason = "no response from upstream in time"
            deadlines = self.deadlines
            deadlines.add(self)
            try:
                await waiter
            finally:
                deadlines.discard(self)
                self._waiter = None
        if self._error is not None and not self.head_done:
            raise self._error

    def take_buffered(self) -> bytes:
        """Every body byte received so far, without waiting."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()
        return data

    async def read_body(self, timeout: float) -> bytes:
        """The next body bytes; ``b""`` once the response is complete."""
        while True:
            if self._chunks:
                return self.take_buffered()
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            if self.closed:
                raise ResponseTruncated("upstream closed the connection in the middle of the body")
            waiter = self.loop.create_future()
            self._waiter = waiter
            try:
                await self._wait(waiter, timeout, "upstream body stalled")
            finally:
                self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def __repr__(self) -> str:
        return f"<UpstreamConnection closed={self.closed} exchanges={self.exchanges}>"
