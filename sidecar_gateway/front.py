"""The proxy's client-facing HTTP/1.1 server: an ASGI server protocol on httptools.

uvicorn still runs the listener (sockets, signals, graceful shutdown); this class replaces its
``HttpToolsProtocol`` for the proxy port only (``uvicorn.Config(http=FrontProtocol)``). It keeps
that protocol's observable behaviour (ASGI 3 scope, 100-continue, pipelining, keep-alive
timeout, 400 on unparsable requests, 500 when the app fails before its response, flow control
both ways, graceful shutdown) and drops per-request work that a proxy pays for at every request:

- the response head is written together with the first body message: one ``send`` syscall for
  a whole small response instead of two (the app must follow ``http.response.start`` with a
  body message without waiting on anything else, which ``ProxyApp`` does);
- no loop timer per request for the keep-alive timeout: one timer per connection, re-armed
  from the idle time when it fires (a timer costs ~3.6 us on uvloop, two per request before);
- no ``asyncio.Event`` per request (a future only when ``receive()`` must really wait);
- response headers are checked for forbidden bytes with two regex searches per response, not
  two per header; a head the checks refuse raises ``RuntimeError`` *before* the response
  counts as started, so the app can still answer 502.

It also bounds the request head (request line + headers; uvicorn does not): a longer head is
answered 431 here and never reaches the app.

Every request this server refuses itself (431, 400 for an unparsable head or body or a missing,
repeated or invalid Host, 501 for a transfer coding it cannot undo) is answered
with a JSON body ``{"error": ..., "request_id": ...}`` in its turn (after the responses to the
requests pipelined before it), recorded through the refusal hook (so telemetry sees scanners
and broken clients), and the connection is closed after a short lingering read (so the client
reads the answer instead of a reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import ipaddress
import logging
import re
import sys
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

log = logging.getLogger("uvicorn.error")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[object]]

HIGH_WATER = 65536  # request body bytes buffered before reading pauses (uvicorn's limit)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
DEFAULT_MAX_HEAD = 64 * 1024  # request line + headers
# After a 431 the rest of the oversized head is read and thrown away for a while, then the
# connection closes: closing with unread bytes makes the kernel send a reset, which can destroy
# the answer before the client reads it.
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 4 * 1024 * 1024
_ASGI = {"version": "3.0", "spec_version": "2.3"}

# The bytes uvicorn refuses in header names and values. Names are joined with "a" and values
# with a tab (both allowed where they are joined) so that one search covers every header.
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


_STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}


@dataclass(frozen=True, slots=True)
class RefusedHead:
    """A request the front server refused and answered itself.

    Mostly refused in its head (the app never saw it); when its body could not be parsed after
    the head had gone to the app, the app is told through :data:`REFUSED` not to record it again.
    """

    method: str  # UNPARSED_METHOD when the method itself could not be read
    path: str  # raw (not percent-decoded), as far as it was read ("" when not even that)
    query: bytes
    client: tuple[str, int] | None
    status: int
    headers: Sequence[tuple[bytes, bytes]] = ()  # the header fields read so far, names lower case
    error: bytes = b"bad_request"  # the answer's "error"

    def answer_body(self, request_id: bytes) -> bytes:
        """The JSON body of the answer carrying ``request_id`` (the refusal hook's; b"": none).

        A method, not a field, because the hook that records the refusal chooses the id: it can
        count the bytes the client is sent (``http.response.body.bytes``) before they are.
        """
        body = b'{"error":"%s"' % self.error
        if request_id:
            body += b',"request_id":"%s"' % request_id
        return body + b"}"


# Records a refused request (telemetry); returns the request id the answer carries.
RefusalHook = Callable[[RefusedHead], bytes]

# The method recorded for a request whose method could not be parsed: a valid token (the event
# schema requires one), and never a method llhttp would accept, so it cannot be mistaken for one.
UNPARSED_METHOD = "-"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")

# A key set (True) on the ``http.disconnect`` message when the front server refused the request
# after its head had gone to the app (e.g. an invalid chunk size): the client got a 400 from the
# front server, which recorded it through the refusal hook, so the app must not also record a
# client disconnect. Other ASGI apps simply see a disconnect.
REFUSED = "gatewatch.refused"


class ClientDisconnected(OSError):
    """``send`` on a response whose client has gone (as the ASGI spec recommends: an OSError
    subclass). Dropping the message silently would let a proxy record a response nobody got as
    a success, and give the breaker a verdict the client never saw."""


# Byte values for `in` on the URL: with a bytes needle (b"%" in url) CPython 3.11 first tries
# it as an int and pays for the TypeError, ~150 ns a test; an int needle is one memchr, ~20 ns.
_QMARK, _PERCENT, _HASH = b"?%#"

# A Host field value (RFC 9110 7.2): uri-host [ ":" port ] in RFC 3986 3.2.2-3.2.3 syntax, without
# ",": a sub-delim in RFC 3986, but "a,b" reads as two Host fields folded into one list (RFC 9110
# 5.3), which RFC 9112 3.2 refuses. _HOST_PLAIN is the common case, one cheap match (a reg-name
# without percent-escapes, which covers IPv4address); _HOST matches everything valid: escapes
# too, and an IP-literal, whose IPv6 address is then checked by ipaddress.
_REG_NAME_CHAR = rb"-A-Za-z0-9._~!$&'()*+;="
_HOST_PLAIN = re.compile(rb"[%b]*(?::[0-9]*)?" % _REG_NAME_CHAR)
_HOST = re.compile(
    rb"(?:(?:[%b]|%%[0-9A-Fa-f]{2})*|\[([0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[%b:]+)\])(?::[0-9]*)?"
    % (_REG_NAME_CHAR, _REG_NAME_CHAR)
)
# Host values found valid, so that a request usually costs one set lookup (there are few hosts);
# bounded, as clients choose them.
_VALID_HOSTS: set[bytes] = set()
_AUTHORITY = re.compile(rb"[^/?#]*")  # of an absolute-form target, after "scheme://"


def _valid_host(value: bytes) -> bool:
    if _HOST_PLAIN.fullmatch(value) is None:
        match = _HOST.fullmatch(value)
        if match is None:
            return False
        literal = match.group(1)
        if literal is not None and literal[:1] != b"v":
            try:
                ipaddress.IPv6Address(literal.decode("ascii"))
            except ValueError:
                return False
    if len(_VALID_HOSTS) >= 1024:
        _VALID_HOSTS.clear()
    _VALID_HOSTS.add(value)
    return True


# Header names on_header looks at (lower case).
_WATCHED = frozenset({b"host", b"transfer-encoding", b"expect"})


class _Refusal(Exception):
    """Raised from a parser callback to stop parsing and refuse the request."""

    def __init__(self, status: int, error: bytes) -> None:
        super().__init__(error.decode())
        self.status = status
        self.error = error


class _HeadTooLarge(_Refusal):
    """Raised from a parser callback to stop parsing an oversized head."""

    def __init__(self) -> None:
        super().__init__(431, b"request_header_too_large")


class _Cycle:
    """One request and its response on a connection."""

    __slots__ = ("body", "bodyless", "chunked", "complete", "conn", "disconnected", "expect_100", "head",
                 "is_head", "keep_alive", "more_body", "ready", "refused", "remaining", "scope", "started",
                 "until_close", "waiter")  # fmt: skip

    def __init__(
        self, conn: FrontProtocol, scope: dict[str, Any], keep_alive: bool, expect_100: bool
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        self.is_head = scope["method"] == "HEAD"
        self.bodyless = self.is_head  # no body bytes on the wire, whatever Content-Length says
        self.body = b""
        self.more_body = True
        self.ready = False  # something for receive(): body bytes, the end, a disconnect
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.refused = False  # answered by the front server (see REFUSED)
        self.started = False
        self.complete = False
        self.chunked = False
        self.remaining = 0  # Content-Length bytes still to send
        self.until_close = False  # the body ends where the connection does (see _coded)
        self.head: bytes | None = None  # written with the first body message

    def wake(self) -> None:
        self.ready = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def run(self, app: App) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if isinstance(exc, ClientDisconnected):
                return  # an app that did not catch it: nobody is left to answer
            log.error("Exception in ASGI application\n", exc_info=exc)
            if self.disconnected:
                return
            if not self.started:
                await self._send_500()
            else:
                self.conn.transport.close()
        else:
            if result is not None:
                log.error("ASGI callable should return None, but returned '%s'.", result)
                self.conn.transport.close()
            elif not self.started and not self.disconnected:
                log.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.complete and not self.disconnected:
                log.error("ASGI callable returned without completing response.")
                self.conn.transport.close()

    async def _send_500(self) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"21"),
                    (b"connection", b"close"),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    # ---- ASGI ------------------------------------------------------------------------------------
    async def receive(self) -> Message:
        conn = self.conn
        if self.expect_100:
            self.expect_100 = False
            if not conn.transport.is_closing():
                conn.transport.write(_CONTINUE)
        if not self.disconnected and not self.complete:
            conn.resume_reading()
            if not self.ready:
                waiter = self.waiter = conn.loop.create_future()
                try:
                    await waiter
                finally:
                    self.waiter = None
            self.ready = False
        if self.disconnected or self.complete:
            if self.refused:
                return {"type": "http.disconnect", REFUSED: True}
            return {"type": "http.disconnect"}
        body, self.body = self.body, b""
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Message) -> None:
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        if not self.started:
            if message["type"] != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."
                )
            self._start(message["status"], message.get("headers", ()))
            return
        if self.complete:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}' sent, after response already completed."
            )
        if message["type"] != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        head = self.head
        if head is not None:
            self.head = None
        if self.bodyless:
            self.remaining = 0
            data = head or b""
        elif self.chunked:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
            if head is not None:
                data = head + data
        else:
            n = len(body)
            if n > self.remaining:
                raise RuntimeError("Response content longer than Content-Length")
            self.remaining -= n
            data = head + body if head is not None else body
        if data:
            conn.transport.write(data)
        if not more_body:
            if self.remaining != 0 and not self.until_close:
                raise RuntimeError("Response content shorter than Content-Length")
            self.complete = True
            self.wake()
            if not self.keep_alive:
                conn.transport.close()
            conn.response_complete(self)

    def _start(self, status: int, headers: Any) -> None:
        default = self.conn.default_headers
        if default:
            headers = [*default, *headers]
        names = []
        values = []
        parts = [_STATUS_LINES.get(status) or _status_line(status)]
        chunked: bool | None = None
        coded = False  # a Transfer-Encoding other than chunked
        has_close = False
        # RFC 9110 8.6, RFC 9112 6.1: a server never sends Content-Length or Transfer-Encoding
        # in a 1xx or 204 (an upstream may, and is forwarded). A 304 may keep them: they describe
        # the representation a 200 would have had.
        unframed = status == 204 or status < 200
        for name, value in headers:
            names.append(name)
            values.append(value)
            name = name.lower()
            if name == b"content-length":
                if unframed:
                    continue
                if chunked is None:
                    self.remaining = int(value.decode())
                    chunked = False
            elif name == b"transfer-encoding":
                if unframed:
                    continue
                if value.lower() == b"chunked":
                    self.remaining = 0
                    chunked = True
                else:
                    coded = True
            elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
                self.keep_alive = False
                has_close = True
            parts += (name, b": ", value, b"\r\n")
        if _BAD_NAME.search(b"a".join(names)):
            raise RuntimeError("Invalid HTTP header name.")
        if _BAD_VALUE.search(b"\t".join(values)):
            raise RuntimeError("Invalid HTTP header value.")
        if unframed or status == 304:
            # These never carry a body (RFC 9110 6.4.1, 15.2); a 304's Content-Length (above) is
            # forwarded as is, and no body is expected.
            self.bodyless = True
        if coded:
            self._coded(chunked is None)
        if not self.keep_alive and not has_close:
            parts.append(b"connection: close\r\n")
        if chunked is None and not self.bodyless and not self.until_close:
            chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        self.chunked = bool(chunked)
        self.started = True
        self.expect_100 = False
        self.head = b"".join(parts)

    def _coded(self, unframed: bool) -> None:
        """The app sends a body in a transfer coding other than chunked (the proxy: an upstream's
        gzip, say, which it does not decode; see UpstreamConnection._take_codings).

        Unless the app frames it itself, the body goes out as it comes, delimited by closing the
        connection (RFC 9112 6.1 allows either that or chunked as the final coding). Adding chunked
        ("gzip, chunked") would keep the connection, but clients that only know a Transfer-Encoding
        of exactly "chunked" (Python's http.client, so requests and urllib3) would read the chunk
        framing as content; such codings are rare enough that the lost keep-alive does not matter.
        """
        if self.scope["http_version"] == "1.0":
            # RFC 9112 6.1: no Transfer-Encoding to an HTTP/1.0 client, and without it the client
            # would take the coded bytes for the content: before the start, so the app can 502.
            raise RuntimeError("Transfer-Encoding in a response to an HTTP/1.0 request.")
        if unframed and not self.bodyless:
            self.until_close = True
            self.keep_alive = False
            self.remaining = sys.maxsize  # no length to hold the body to


class FrontProtocol(asyncio.Protocol):
    """One client connection (uvicorn creates it with its config and server state).

    ``front_protocol()`` makes a subclass with other limits and a refusal hook.
    """

    max_head_bytes: int = DEFAULT_MAX_HEAD
    refusal_hook: RefusalHook | None = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app: App = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.root_path = config.root_path
        self.keep_alive_timeout = float(config.timeout_keep_alive)
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        self.app_state = app_state
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # older httptools
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.cycle: _Cycle | None = None  # the one being answered
        self._parsing: _Cycle | None = None  # the one whose body the parser is reading
        self.pipeline: deque[_Cycle] = deque()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._expect_100 = False
        self._hosts = 0  # Host fields in the head being read
        self._host = b""  # the last of them
        self._coding: bytes | None = None  # its Transfer-Encoding values, joined
        self._read_paused = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._idle_since: float | None = None  # None while a request is arriving or answered
        self._idle_timer: asyncio.TimerHandle | None = None
        # Request-head accounting. Both counts are lower bounds of the head's size, so a head
        # within the limit is never refused: ``_head_bytes`` sums the URL and header pieces the
        # parser handed over, ``_head_raw`` the whole reads that arrived while a head begun in
        # an earlier read was still incomplete (httptools buffers a header until it is whole,
        # by repeated concatenation: a 20 MB header cost it seconds of CPU). Both also bound a
        # chunked body's trailer section (``_head_bytes`` its fields, counted from 0 again once
        # the head is complete), which httptools buffers the same way; for ``_head_raw``,
        # ``_chunk_head`` is set from a chunk header until a body byte or the chunk's end
        # shows it was not the last chunk (whose trailer section follows), or the section ends.
        self._head_open = False
        self._head_began = False  # a head or a chunk header began in the current read
        self._chunk_head = False
        self._head_bytes = 0
        self._head_raw = 0
        self._url_complete = False
        self._lingering: int | None = None  # bytes thrown away once parsing stopped (a refusal)
        self._linger_timer: asyncio.TimerHandle | None = None
        self._refusal: bytes | None = None  # an answer waiting for earlier pipelined responses

    # ---- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)  # type: ignore[arg-type]
        self.transport = transport  # type: ignore[assignment]
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)
        self.scheme = "https" if is_ssl(self.transport) else "http"

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        cycle = self.cycle
        if cycle is not None:
            if not cycle.complete:
                cycle.disconnected = True
            cycle.wake()
        for queued in self.pipeline:
            queued.disconnected = True
        self._resume_writers()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:
            self._lingering += len(data)
            if self._lingering > LINGER_MAX_BYTES:
                self.transport.close()
            return
        self._idle_since = None
        self._head_began = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
            return
        except httptools.HttpParserUpgrade:
            # No protocol switching here: the request went to the app as plain HTTP.
            log.warning("Unsupported upgrade request.")
            return
        if not self._head_began and (self._head_open or self._chunk_head):
            # A head (or maybe trailer section) began in an earlier read and is still incomplete:
            # all of this read is part of it.
            self._head_raw += len(data)
            if self._head_raw > self.max_head_bytes:
                if self._head_open:
                    self._refuse_head()
                elif self._parsing is not None:
                    self._body_failed(
                        self._parsing, 431, b"request_trailers_too_large",
                        f"trailer section over {self.max_head_bytes} bytes",
                    )  # fmt: skip

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self._resume_writers()

    def _resume_writers(self) -> None:
        self.write_paused = False
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def drain(self) -> None:
        waiter = self._drain_waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._drain_waiter = None

    def pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()

    # ---- httptools callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._parsing = None
        self._url = b""
        self._headers = []
        self._expect_100 = False
        self._hosts = 0
        self._coding = None
        self._head_open = True
        self._head_began = True
        self._head_bytes = 0
        self._head_raw = 0
        self._url_complete = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self.max_head_bytes:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if not self._head_open:
            # A trailer field (after a chunked body): dropped. A proxy may discard request
            # trailers (RFC 9110 6.5.1), and appending them here would put them into
            # ``scope["headers"]`` (this very list) after the app may already have read it, so a
            # client could forge X-Request-ID, X-Forwarded-For or Authorization past our checks.
            # Counted first, like head fields (from 0 again, see on_headers_complete): the whole
            # reads counted in data_received miss the fields that arrive in one read.
            if self._head_bytes > self.max_head_bytes:
                raise _Refusal(431, b"request_trailers_too_large")
            return
        self._url_complete = True
        if self._head_bytes > self.max_head_bytes:
            raise _HeadTooLarge
        name = name.lower()
        # llhttp keeps trailing whitespace, which RFC 9110 5.5 excludes from the value.
        value = value.rstrip(b" \t")
        if name in _WATCHED:  # one set lookup per field instead of a comparison per name
            if name == b"host":
                self._hosts += 1
                self._host = value
            elif name == b"transfer-encoding":
                coding = self._coding
                self._coding = value if coding is None else coding + b"," + value
            elif value.lower() == b"100-continue":  # expect
                self._expect_100 = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._head_bytes = 0  # a trailer section is bounded on its own, as a head
        parser = self.parser
        url = self._url
        # A fragment is never part of the request target on the wire (RFC 9112 3.2), but llhttp
        # passes one on: parse_url drops it, so it goes neither upstream nor into telemetry.
        schema: bytes | None = None
        if _QMARK in url or _PERCENT in url or _HASH in url or url[:1] != b"/":
            parsed = httptools.parse_url(url)
            schema = parsed.schema  # absolute-form
            raw_path: bytes = parsed.path or b"/"  # "http://h" or "http://h?q" (RFC 9112 3.3)
            query: bytes = parsed.query or b""
            path = raw_path.decode("ascii")
            if "%" in path:
                path = urllib.parse.unquote(path)
        else:
            raw_path, query, path = url, b"", url.decode("ascii")
        http_version = parser.get_http_version()
        if self._hosts != 1 and (self._hosts or http_version != "1.0"):
            # RFC 9112 3.2: 400 for an HTTP/1.1 request without Host and for any request with
            # more than one (which one the upstream believes is anybody's guess).
            raise _Refusal(400, b"duplicate_host" if self._hosts else b"missing_host")
        if self._hosts and self._host not in _VALID_HOSTS and not _valid_host(self._host):
            raise _Refusal(400, b"invalid_host")  # RFC 9112 3.2, as for a missing one
        if schema is not None:
            self._take_authority(url, schema)
        coding = self._coding
        if coding is not None and coding.lower() != b"chunked":
            # llhttp undoes only the chunked framing: "gzip, chunked" would reach the app (and
            # the upstream, with a Content-Length) still gzipped but without the label saying so.
            # Chunked last: the body can be framed but not decoded, 501 (RFC 9112 6.1). Not
            # last: its length is unknown, 400 and close (RFC 9112 6.3).
            if coding.rpartition(b",")[2].strip().lower() == b"chunked":
                raise _Refusal(501, b"unsupported_transfer_coding")
            raise _Refusal(400, b"bad_request")
        root = self.root_path
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": root,
            "path": root + path if root else path,
            "raw_path": root.encode("ascii") + raw_path if root else raw_path,
            "query_string": query,
            "headers": self._headers,
        }
        if self.app_state:
            scope["state"] = self.app_state.copy()
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        cycle = self._parsing = _Cycle(self, scope, keep_alive, self._expect_100)
        current = self.cycle
        if current is None or current.complete:
            self._start(cycle)
        else:
            # A pipelined request: answered once the one before it is.
            self.pause_reading()
            self.pipeline.append(cycle)

    def _take_authority(self, url: bytes, schema: bytes) -> None:
        """RFC 9112 3.2.2: for an absolute-form target the server uses the target's authority
        and ignores Host, so it goes upstream (and to the app) as the Host field.

        Refusing absolute-form with a 400 would be simpler, but a server must accept it (same
        section). Rewriting is safe: the client could have sent that Host itself (routing is by
        path alone), and the upstream then sees the authority the request named, not another.
        """
        if schema.lower() not in (b"http", b"https"):
            raise _Refusal(400, b"bad_request")
        authority = _AUTHORITY.match(url.partition(b"://")[2])
        host = authority.group() if authority else b""
        # An http(s) URI needs a host (RFC 9110 4.2.1) and no userinfo (4.2.4; "@" fails the check).
        if host[:1] in (b"", b":") or (host not in _VALID_HOSTS and not _valid_host(host)):
            raise _Refusal(400, b"invalid_host")
        headers = self._headers
        for i, (name, _) in enumerate(headers):
            if name == b"host":
                headers[i] = (b"host", host)
                return
        headers.append((b"host", host))  # HTTP/1.0, which may leave Host out

    def on_chunk_header(self) -> None:
        self._chunk_head = True  # maybe the last chunk: see _head_raw
        self._head_began = True
        self._head_raw = 0

    def on_chunk_complete(self) -> None:
        self._chunk_head = False

    def on_body(self, body: bytes) -> None:
        self._chunk_head = False
        cycle = self._parsing
        if cycle is None or cycle.complete:
            return
        cycle.body = cycle.body + body if cycle.body else body
        if len(cycle.body) > HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self._parsing
        if cycle is None or cycle.complete:
            return
        cycle.more_body = False
        cycle.wake()

    # ---- cycles -----------------------------------------------------------------------------------
    def _start(self, cycle: _Cycle) -> None:
        self.cycle = cycle
        task = self.loop.create_task(cycle.run(self.app))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def response_complete(self, cycle: _Cycle) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.resume_reading()
        if self.pipeline:
            self._start(self.pipeline.popleft())
            return
        if self._refusal is not None:
            answer, self._refusal = self._refusal, None
            self._write_refusal(answer)
            return
        self._idle_since = self.loop.time()
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_later(self.keep_alive_timeout, self._check_idle)

    def _check_idle(self) -> None:
        """The keep-alive timeout: close after ``timeout_keep_alive`` seconds without a request."""
        self._idle_timer = None
        since = self._idle_since
        if since is None or self.transport.is_closing():
            return  # busy (re-armed when idle again) or gone
        left = since + self.keep_alive_timeout - self.loop.time()
        if left <= 0:
            self.transport.close()
        else:
            self._idle_timer = self.loop.call_later(left, self._check_idle)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close when idle, else after the current response."""
        cycle = self.cycle
        if cycle is None or cycle.complete:
            self.transport.close()
        else:
            cycle.keep_alive = False

    # ---- refusals ---------------------------------------------------------------------------------
    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        """The parser stopped: refuse the request it was reading (parsing never resumes)."""
        cause = exc.__context__
        status, error = (cause.status, cause.error) if isinstance(cause, _Refusal) else (400, b"bad_request")
        cycle = self._parsing
        if cycle is not None and cycle.more_body:
            self._body_failed(cycle, status, error, exc if cause is None else cause)
            return
        if status == 431:
            self._refuse_head()
            return
        log.warning(
            "Invalid HTTP request refused with %d (client %s): %s",
            status, self.client[0] if self.client else "-", exc if cause is None else cause,
        )  # fmt: skip
        # llhttp reads the method first; after any other error it is the parsed one.
        self._refuse_in_head(status, error, not isinstance(exc, httptools.HttpParserInvalidMethodError))

    def _refuse_head(self) -> None:
        """Answer 431 to a head longer than ``max_head_bytes``."""
        log.warning(
            "Request head longer than %d bytes refused with 431 (client %s, path %.200r%s).",
            self.max_head_bytes,
            self.client[0] if self.client else "-",
            self._url[:200].decode("latin-1"),
            "" if self._url_complete else ", incomplete",
        )
        self._refuse_in_head(431, b"request_header_too_large", True)

    def _refuse_in_head(self, status: int, error: bytes, method_parsed: bool) -> None:
        """Refuse the request whose head is being read (no cycle exists for it)."""
        url = self._url
        # The refusal can come while the URL itself is still arriving: its start still tells
        # the route (prefix match), and the access event keeps at most 8 KiB of it anyway.
        path_part, _, query = url[:16384].partition(b"?")
        path_part = path_part.partition(b"#")[0]
        query = query.partition(b"#")[0]
        path = path_part.decode("latin-1") if path_part[:1] == b"/" else ""
        method = UNPARSED_METHOD
        if method_parsed:
            with contextlib.suppress(httptools.HttpParserError, UnicodeDecodeError):
                parsed = self.parser.get_method().decode("ascii")
                if _TOKEN.fullmatch(parsed):
                    method = parsed
        self._refuse(RefusedHead(method, path, query, self.client, status, self._headers, error))

    def _body_failed(self, cycle: _Cycle, status: int, error: bytes, reason: object) -> None:
        """The body of a request whose head went to the app (or is queued for it) is refused."""
        log.warning(
            "Request body refused with %d (client %s, %s %.200r): %s",
            status, self.client[0] if self.client else "-", cycle.scope["method"], cycle.scope["raw_path"],
            reason,
        )  # fmt: skip
        scope = cycle.scope
        refused = RefusedHead(
            scope["method"], scope["raw_path"].decode("latin-1"), scope["query_string"], self.client, status,
            scope["headers"], error,
        )  # fmt: skip
        if cycle in self.pipeline:
            # Queued behind an earlier request: the app never sees it; refused in its turn.
            self.pipeline.remove(cycle)
            self._refuse(refused)
        elif cycle.complete:
            # Answered before its body was read; the stream cannot be framed any further.
            self._lingering = 0
            self._write_refusal(b"")
        elif cycle.started:
            # Too late for a 400: the response goes on (the app records it), then we close.
            cycle.keep_alive = False
            self._lingering = 0
        else:
            # The app sees a disconnect marked REFUSED, so only the refusal is recorded.
            cycle.disconnected = cycle.refused = True
            cycle.wake()
            self._refuse(refused, after_current=False)

    def _refuse(self, refused: RefusedHead, after_current: bool = True) -> None:
        """Record and answer a refused request; nothing after it on this connection is parsed."""
        self._head_open = False
        self._lingering = 0
        request_id = b""
        hook = self.refusal_hook
        if hook is not None:
            request_id = hook(refused)
        body = refused.answer_body(request_id)
        parts = [_STATUS_LINES[refused.status]]
        for name, value in self.default_headers:
            parts += (name, b": ", value, b"\r\n")
        if request_id:
            parts += (b"x-request-id: ", request_id, b"\r\n")
        parts += (
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
        answer = b"".join(parts)
        current = self.cycle
        if after_current and ((current is not None and not current.complete) or self.pipeline):
            # Requests pipelined before this one are still being answered: this answer follows
            # theirs (written from response_complete), or the client would take it for theirs.
            self._refusal = answer
            return
        self._write_refusal(answer)

    def _write_refusal(self, answer: bytes) -> None:
        """Write the answer, then close after a lingering read (see LINGER_SECONDS)."""
        transport = self.transport
        if transport.is_closing():
            return
        if answer:
            transport.write(answer)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, transport.close)
        self.resume_reading()


def front_protocol(max_head_bytes: int, refusal_hook: RefusalHook | None = None) -> type[FrontProtocol]:
    """A ``FrontProtocol`` class for uvicorn (``Config(http=...)``) with these settings."""
    return type(
        "FrontProtocol",
        (FrontProtocol,),
        {
            "max_head_bytes": max_head_bytes,
            "refusal_hook": staticmethod(refusal_hook) if refusal_hook else None,
        },
    )
