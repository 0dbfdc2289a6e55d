"""The proxy: a raw ASGI application (no framework on the hot path).

Per request: match the route, pick a target, forward head and body (streamed), stream the
response back, then append one telemetry record. Everything else (metrics, logs, events)
happens in the telemetry hub's background task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from gatewatch.catalog import UNMATCHED_ROUTE
from sidecar_gateway.forwarding import (
    IncomingRequest,
    TrustedProxies,
    append_forwarded_for,
    new_request_id,
    sane_request_id,
    split_request_headers,
    strip_response_hop_by_hop,
)
from sidecar_gateway.front import FrontCycle
from sidecar_gateway.records import CLIENT_CLOSED_STATUS, RequestRecord
from sidecar_gateway.routing import Router, strip_prefix
from sidecar_gateway.runtime import Backend, RouteRuntime
from sidecar_gateway.telemetry import TelemetryHub
from sidecar_gateway.upstream import (
    IDEMPOTENT_METHODS,
    ConnectFailed,
    ConnectionClosed,
    UpstreamConnection,
    UpstreamError,
    build_head,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Header = tuple[bytes, bytes]

_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


class _ClientGone(Exception):
    """The client disconnected before the request body was complete."""


class _Request:
    """One request as the proxy forwards it: what both the fast and the general path need."""

    __slots__ = ("bmethod", "body", "chunked", "head", "incoming", "method", "more_body", "path", "peer",
                 "query", "request_id", "route", "t0", "wall")  # fmt: skip

    def __init__(
        self, t0: float, wall: float, method: str, path: str, incoming: IncomingRequest, request_id: bytes,
        peer: str | None, query: bytes, route: RouteRuntime,
    ) -> None:  # fmt: skip
        self.t0 = t0
        self.wall = wall
        self.method = method
        self.bmethod = method.encode()
        self.path = path
        self.incoming = incoming
        self.request_id = request_id
        self.peer = peer
        self.query = query
        self.route = route
        self.body = b""
        self.more_body = False
        self.chunked = False
        self.head = b""


class ProxyApp:
    def __init__(self, routes: list[RouteRuntime], telemetry: TelemetryHub, trusted: TrustedProxies) -> None:
        self.routes = routes
        self.router: Router[RouteRuntime] = Router([(r.prefix, r) for r in routes])
        self.telemetry = telemetry
        self.trusted = trusted
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        self.in_flight += 1
        try:
            await self.proxy(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _head(
        self, scope: Scope, client: tuple[str, int] | None
    ) -> tuple[_Request | None, IncomingRequest, bytes, float, float]:
        """Split the request head; the _Request is None when no route matches."""
        t0 = time.monotonic()
        wall = time.time()
        incoming = split_request_headers(scope["headers"])
        request_id = incoming.request_id
        if request_id is None or not sane_request_id(request_id):
            request_id = new_request_id()
        path: str = scope["path"]
        route = self.router.match(path)
        if route is None:
            return None, incoming, request_id, t0, wall
        peer = client[0] if client else None
        query: bytes = scope.get("query_string", b"")
        req = _Request(t0, wall, scope["method"], path, incoming, request_id, peer, query, route)
        return req, incoming, request_id, t0, wall

    def _build_upstream_head(self, req: _Request, scope: Scope, body: bytes, more_body: bool) -> None:
        """The request head as the upstream will see it (req.head), and whether the body goes chunked."""
        incoming = req.incoming
        peer = req.peer
        route = req.route
        req.body = body
        req.more_body = more_body
        headers = incoming.forward
        if peer is not None:
            headers.append((b"x-forwarded-for", append_forwarded_for(incoming.forwarded_for, peer)))
        elif incoming.forwarded_for:
            headers.append((b"x-forwarded-for", b", ".join(incoming.forwarded_for)))
        proto = incoming.forwarded_proto
        if proto is None or peer is None or peer not in self.trusted:
            proto = scope["scheme"].encode()
        headers.append((b"x-forwarded-proto", proto))
        headers.append((b"x-request-id", req.request_id))
        if incoming.host is None:
            headers.append((b"host", route.backends[0].label.encode()))
        if incoming.content_length is not None:
            headers.append((b"content-length", incoming.content_length))
        elif more_body:
            headers.append((b"transfer-encoding", b"chunked"))
            req.chunked = True
        elif body or req.bmethod in _BODY_METHODS:
            headers.append((b"content-length", str(len(body)).encode()))
        raw_path: bytes = scope.get("raw_path") or req.path.encode()
        if route.strip_prefix:
            raw_path = strip_prefix(route.prefix, raw_path)
        query = req.query
        target = raw_path + b"?" + query if query else raw_path
        req.head = build_head(req.bmethod, target, headers)

    async def proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward one HTTP request and its response; record it for telemetry."""
        client = scope.get("client")
        req, incoming, request_id, t0, wall = self._head(scope, client)
        if req is None:
            sent = await _error(send, 404, "no_route", request_id)
            self._record_unmatched(scope, client, incoming, request_id, t0, wall, sent)
            return

        msg = await receive()
        if msg["type"] == "http.disconnect":
            self._record(req, CLIENT_CLOSED_STATUS, "client_disconnect", None, None, 0, 0, None, 0)
            return
        self._build_upstream_head(req, scope, msg.get("body", b""), msg.get("more_body", False))
        backend = req.route.choose(time.monotonic())
        if backend is None:
            sent = await _error(send, 503, "circuit_open", req.request_id)
            self._record(req, 503, "circuit_open", None, None, len(req.body), sent, "open", 0)
            return
        await self._exchange(req, backend, receive, send, None, 0.0)

    def _record_unmatched(
        self, scope: Scope, client: tuple[str, int] | None, incoming: IncomingRequest, request_id: bytes,
        t0: float, wall: float, sent: int,
    ) -> None:  # fmt: skip
        self.telemetry.record(
            RequestRecord(
                wall, time.monotonic() - t0, UNMATCHED_ROUTE, scope["method"], 404, "no_route", None, None,
                0, sent, client[0] if client else None, incoming.forwarded_for, incoming.user_agent,
                scope["path"], scope.get("query_string", b""), request_id, None, 0,
            )
        )  # fmt: skip

    # ---- the fast path: a bodyless request on a pooled connection, answered from callbacks --------
    def handle_fast(self, cycle: FrontCycle) -> bool:
        """Proxy a complete bodyless request without a task when possible.

        Called by the front protocol instead of starting the ASGI task. Returns False (nothing
        done yet, the ASGI path runs as usual) when no route matches. Otherwise it takes the
        request: with a pooled upstream connection it writes the request and waits for the
        response in a callback; a response that arrives whole is answered right there. Anything
        else (no idle connection, a streamed or failing response, a timeout) continues in
        :meth:`_exchange`, the general path, as a task: same code, same behaviour.
        """
        scope = cycle.scope
        req = self._head(scope, scope.get("client"))[0]
        if req is None:
            return False
        cycle.take_request()  # the bodyless request message, as the ASGI path's first receive()
        self.in_flight += 1
        self._build_upstream_head(req, scope, b"", False)
        backend = req.route.choose(time.monotonic())
        if backend is None:
            try:
                sent = _error_now(cycle, 503, "circuit_open", req.request_id)
                self._record(req, 503, "circuit_open", None, None, 0, sent, "open", 0)
            finally:
                self.in_flight -= 1
            return True
        conn = backend.pool.take_idle()
        if conn is not None:
            t_up = time.monotonic()
            conn.begin(req.method == "HEAD")
            if not conn.closed and conn.transport is not None:
                conn.transport.write(req.head)

                def on_upstream() -> None:
                    self._fast_response(cycle, req, backend, conn, t_up)

                conn.listen(on_upstream, req.route.timeouts.response)
                return True
        # The general path from here (it also retries a pooled connection found closed).
        cycle.spawn(self._continue(req, backend, cycle, conn))
        return True

    async def _continue(
        self, req: _Request, backend: Backend, cycle: FrontCycle, conn: UpstreamConnection | None,
        t_up: float = 0.0,
    ) -> None:  # fmt: skip
        try:
            await self._exchange(req, backend, cycle.receive, cycle.send, conn, t_up)
        finally:
            self.in_flight -= 1

    def _fast_response(
        self, cycle: FrontCycle, req: _Request, backend: Backend, conn: UpstreamConnection, t_up: float
    ) -> None:
        """The upstream answered (or failed, or timed out) while nobody awaited it."""
        conn.unlisten()
        if not (conn.complete and conn.head_done and conn.error is None):
            cycle.spawn(self._continue(req, backend, cycle, conn, t_up))
            return
        try:
            upstream_duration = time.monotonic() - t_up
            status = conn.status
            backend.connect_ok = True
            out_headers = _response_headers(conn.headers, req.request_id)
            chunk = conn.take_buffered()
            try:
                cycle.respond(status, out_headers, chunk)
            except RuntimeError as exc:
                if cycle.started:
                    raise  # not the head: what the ASGI path would let through, too
                end = self._refused_head(exc, req, backend, conn)
                sent = _error_now(cycle, 502, "upstream_protocol", req.request_id)
                self._record(req, 502, "upstream_protocol", backend, upstream_duration, 0, sent,
                             backend.state(end), 0)  # fmt: skip
                return
            self._finish(req, backend, conn, status, None, upstream_duration, 0, len(chunk), 0)
        except Exception as exc:  # as the ASGI server would: log, 500 or close
            cycle.fail(exc)
        finally:
            self.in_flight -= 1

    # ---- the general path -----------------------------------------------------------------------
    async def _exchange(
        self, req: _Request, backend: Backend, receive: Receive, send: Send, conn: UpstreamConnection | None,
        t_up: float,
    ) -> None:  # fmt: skip
        """Send the request (unless the fast path did: ``t_up`` set), read and stream the response."""
        route = req.route
        timeouts = route.timeouts
        more_body = req.more_body
        body = req.body
        head = req.head
        replayable = not more_body and req.bmethod in IDEMPOTENT_METHODS
        is_head = req.method == "HEAD"
        retries = 0
        request_bytes = len(body)
        body_done = not more_body
        written = t_up != 0.0
        try:
            if conn is None:
                # take_idle first: a coroutine call per request is measurable on this path.
                conn = backend.pool.take_idle()
                reused = conn is not None
                if conn is None:
                    conn = await backend.pool.connect(timeouts.connect)
            else:
                reused = True  # handed over by the fast path, from the pool
            while True:
                if not written:
                    t_up = time.monotonic()
                    conn.begin(is_head)
                try:
                    if written:
                        written = False
                    elif more_body:
                        request_bytes, body_done = await _stream_body(
                            conn, head, body, receive, timeouts.idle, req.chunked
                        )
                    else:
                        conn.write(head + body if body else head)
                    await conn.read_head(timeouts.response)
                    break
                except ConnectionClosed:
                    # A pooled connection the upstream closed while idle: retry once, fresh.
                    if not (reused and replayable and not conn.got_bytes and retries == 0):
                        raise
                    backend.pool.discard(conn)
                    retries += 1
                    conn = await backend.pool.connect(timeouts.connect)
                    reused = False
        except _ClientGone:
            if conn is not None:
                backend.pool.discard(conn)
            backend.breaker.release(time.monotonic())
            self._record(req, CLIENT_CLOSED_STATUS, "client_disconnect", backend, None, request_bytes, 0,
                         backend.state(time.monotonic()), retries)  # fmt: skip
            return
        except UpstreamError as exc:
            if conn is not None:
                backend.pool.discard(conn)
            end = time.monotonic()
            backend.breaker.on_failure(end)
            if isinstance(exc, ConnectFailed):
                backend.connect_ok = False
            sent = await _error(send, exc.status, exc.reason, req.request_id)
            self._record(req, exc.status, exc.reason, backend, None, request_bytes, sent, backend.state(end),
                         retries)  # fmt: skip
            return

        # ---- response ------------------------------------------------------------------------------
        upstream_duration = time.monotonic() - t_up
        status = conn.status
        backend.connect_ok = True
        out_headers = _response_headers(conn.headers, req.request_id)
        error: str | None = None
        response_bytes = 0
        disconnect_watch: asyncio.Future[Message] | None = None
        try:
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
        except RuntimeError as exc:
            # The front server refused the head (e.g. a header value it will not write): nothing
            # has reached the client yet, so it still gets a proper 502.
            end = self._refused_head(exc, req, backend, conn)
            sent = await _error(send, 502, "upstream_protocol", req.request_id)
            self._record(req, 502, "upstream_protocol", backend, upstream_duration, request_bytes, sent,
                         backend.state(end), retries)  # fmt: skip
            return
        try:
            chunk = conn.take_buffered()
            if conn.complete:
                response_bytes = len(chunk)
                await send({"type": "http.response.body", "body": chunk})
            else:
                if body_done:
                    # The request body is consumed, so receive() now only reports a disconnect.
                    disconnect_watch = asyncio.ensure_future(receive())
                if not chunk:
                    # The front server writes the head with the first body message: send one
                    # now, so the client sees the head before the upstream sends any body.
                    await send({"type": "http.response.body", "body": b"", "more_body": True})
                while True:
                    if chunk:
                        response_bytes += len(chunk)
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        if disconnect_watch is not None and disconnect_watch.done():
                            raise _ClientGone
                    chunk = await conn.read_body(timeouts.idle)
                    if not chunk:
                        break  # complete
                await send({"type": "http.response.body", "body": b""})
        except _ClientGone:
            error = "client_disconnect"
        except UpstreamError as exc:
            # Too late for an error status: the client sees a truncated response.
            error = exc.reason
            log.warning(
                "upstream %s failed mid-response for %s: %s", backend.label, req.request_id.decode(), exc
            )
        finally:
            if disconnect_watch is not None and not disconnect_watch.done():
                disconnect_watch.cancel()
        self._finish(
            req, backend, conn, status, error, upstream_duration, request_bytes, response_bytes, retries
        )

    def _refused_head(
        self, exc: RuntimeError, req: _Request, backend: Backend, conn: UpstreamConnection
    ) -> float:
        """The front server refused the response head: drop the connection, count a failure."""
        log.warning("unforwardable response from %s for %s: %s", backend.label, req.request_id.decode(), exc)
        backend.pool.discard(conn)
        end = time.monotonic()
        backend.breaker.on_failure(end)
        return end

    def _finish(
        self, req: _Request, backend: Backend, conn: UpstreamConnection, status: int, error: str | None,
        upstream_duration: float, request_bytes: int, response_bytes: int, retries: int,
    ) -> None:  # fmt: skip
        end = time.monotonic()
        if error is None and conn.reusable:
            backend.pool.release(conn)
        else:
            backend.pool.discard(conn)
        if error == "client_disconnect":
            backend.breaker.release(end)
        elif status >= 500 or error is not None:
            backend.breaker.on_failure(end)
        else:
            backend.breaker.on_success(end)
        self.telemetry.record(
            RequestRecord(
                req.wall, end - req.t0, req.route.name, req.method, status, error, backend.label,
                upstream_duration, request_bytes, response_bytes, req.peer, req.incoming.forwarded_for,
                req.incoming.user_agent, req.path, req.query, req.request_id, backend.breaker.state(end),
                retries,
            )
        )  # fmt: skip

    def _record(
        self, req: _Request, status: int, error: str | None, backend: Backend | None,
        upstream_duration: float | None, request_bytes: int, response_bytes: int, circuit_state: str | None,
        retries: int,
    ) -> None:  # fmt: skip
        incoming = req.incoming
        self.telemetry.record(
            RequestRecord(
                req.wall, time.monotonic() - req.t0, req.route.name, req.method, status, error,
                backend.label if backend is not None else None, upstream_duration, request_bytes,
                response_bytes, req.peer, incoming.forwarded_for, incoming.user_agent, req.path, req.query,
                req.request_id, circuit_state, retries,
            )
        )  # fmt: skip


def _response_headers(headers: list[Header], request_id: bytes) -> list[Header]:
    out_headers = strip_response_hop_by_hop(headers)
    for name, _ in out_headers:
        if name == b"x-request-id":
            break  # the upstream echoed it already
    else:
        out_headers.append((b"x-request-id", request_id))
    return out_headers


async def _next_body(receive: Receive) -> tuple[bytes, bool]:
    msg = await receive()
    if msg["type"] == "http.disconnect":
        raise _ClientGone
    return msg.get("body", b""), msg.get("more_body", False)


async def _stream_body(
    conn: UpstreamConnection, head: bytes, first: bytes, receive: Receive, idle: float, chunked: bool
) -> tuple[int, bool]:
    """Send the head and a streamed body, raw (declared Content-Length) or chunked.

    Returns the bytes sent and whether the whole body was read from the client: an upstream
    that answers early (e.g. 413) does not want the rest, so we stop sending it.
    """
    total = len(first)
    if chunked:
        conn.write(head + (b"%x\r\n%b\r\n" % (len(first), first) if first else b""))
    else:
        conn.write(head + first)
    more = True
    while more:
        if conn.write_paused:
            await conn.drain(idle)
        if conn.head_done:
            return total, False
        chunk, more = await _next_body(receive)
        if chunk:
            total += len(chunk)
            conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
    if chunked:
        conn.write(b"0\r\n\r\n")
    return total, True


def _error_body(reason: str, request_id: bytes) -> bytes:
    return orjson.dumps({"error": reason, "request_id": request_id.decode("latin-1")})


def _error_headers(body: bytes, request_id: bytes) -> list[Header]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id),
    ]


async def _error(send: Send, status: int, reason: str, request_id: bytes) -> int:
    body = _error_body(reason, request_id)
    await send({"type": "http.response.start", "status": status, "headers": _error_headers(body, request_id)})
    await send({"type": "http.response.body", "body": body})
    return len(body)


def _error_now(cycle: FrontCycle, status: int, reason: str, request_id: bytes) -> int:
    """:func:`_error` for the fast path: written at once."""
    body = _error_body(reason, request_id)
    cycle.respond(status, _error_headers(body, request_id), body)
    return len(body)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
