"""The proxy: a raw ASGI application (no framework on the hot path).

Per request: match the route, pick a target, forward head and body (streamed), stream the
response back, then append one telemetry record. Everything else (metrics, logs, events)
happens in the telemetry hub's background task.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
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
from sidecar_gateway.front import REFUSED, ClientDisconnected, RefusedHead
from sidecar_gateway.records import CLIENT_CLOSED_STATUS, RequestRecord
from sidecar_gateway.routing import Router, normalize_path, strip_prefix
from sidecar_gateway.runtime import Backend, RouteRuntime
from sidecar_gateway.telemetry import TelemetryHub
from sidecar_gateway.upstream import (
    IDEMPOTENT_METHODS,
    ConnectFailed,
    ConnectionClosed,
    ProtocolError,
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
# Outcomes that say nothing about the upstream's health: the breaker gets its slot back
# (release), neither a success nor a failure.
_NO_VERDICT = frozenset({"client_disconnect", "drain_timeout", "internal_error"})


class _ClientGone(Exception):
    """The client disconnected before the request body was complete.

    ``refused``: the front server refused the body (and answered and recorded that itself).
    """

    def __init__(self, refused: bool = False) -> None:
        super().__init__()
        self.refused = refused


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

    def head_refused(self, refused: RefusedHead) -> bytes:
        """Record a request the front server refused and answered itself (400, 431...).

        Called by ``FrontProtocol``; returns the request id its answer carries (the client's
        when sane, as for a proxied request). The headers read so far give the user agent and
        the X-Forwarded-For chain: the client address of a scanner is what security checks need.
        """
        raw = refused.path.encode("latin-1")
        route = self.router.match(normalize_path(raw).decode("latin-1")) if raw else None
        # url.path as for a proxied request: the path the client asked for, percent-decoded.
        path = urllib.parse.unquote(refused.path) if "%" in refused.path else refused.path
        incoming = split_request_headers(refused.headers)
        request_id = incoming.request_id
        if request_id is None or not sane_request_id(request_id):
            request_id = new_request_id()
        peer = refused.client[0] if refused.client else None
        # A refused 5xx is the gateway's own answer: never labelled upstream_5xx (no upstream saw it).
        error = "not_implemented" if refused.status >= 500 else None
        sent = len(refused.answer_body(request_id))
        self.telemetry.record(
            RequestRecord(
                time.time(), 0.0, route.name if route is not None else UNMATCHED_ROUTE, refused.method,
                refused.status, error, None, None, 0, sent, peer, incoming.forwarded_for,
                incoming.user_agent, path, refused.query, request_id, None, 0,
            )
        )  # fmt: skip
        return request_id

    async def proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward one HTTP request and its response; record it for telemetry."""
        t0 = time.monotonic()
        wall = time.time()
        method: str = scope["method"]
        path: str = scope["path"]
        incoming = split_request_headers(scope["headers"])
        request_id = incoming.request_id
        if request_id is None or not sane_request_id(request_id):
            request_id = new_request_id()
        client = scope.get("client")
        peer: str | None = client[0] if client else None
        query: bytes = scope.get("query_string", b"")

        # Route and forward from one form of the path: the raw path normalised (routing.py).
        # `path` (decoded, as the client asked) is what telemetry records.
        raw_path: bytes = normalize_path(scope.get("raw_path") or path.encode())
        route = self.router.match(raw_path.decode("latin-1"))
        if route is None:
            sent = await _error(send, 404, "no_route", request_id)
            self.telemetry.record(
                RequestRecord(
                    wall, time.monotonic() - t0, UNMATCHED_ROUTE, method, 404, "no_route", None, None,
                    0, sent, peer, incoming.forwarded_for, incoming.user_agent, path, query, request_id,
                    None, 0,
                )
            )  # fmt: skip
            return

        # ---- the request as the upstream will see it ----------------------------------------
        try:
            msg = await receive()
        except asyncio.CancelledError:
            # The shutdown drain ran out while the request body had not begun (see below).
            _uncancel()
            reply = _error_body("drain_timeout", request_id)
            self._record(wall, t0, route, method, 503, "drain_timeout", None, None, 0, len(reply), peer,
                         incoming, path, query, request_id, None, 0)  # fmt: skip
            await _send_error(send, 503, reply, request_id)
            return
        if msg["type"] == "http.disconnect":
            if not msg.get(REFUSED):  # else the front server answered 400 and recorded it
                self._record_early(wall, t0, route, method, peer, incoming, path, query, request_id)
            return
        body: bytes = msg.get("body", b"")
        more_body: bool = msg.get("more_body", False)
        headers = incoming.forward
        if peer is not None:
            headers.append((b"x-forwarded-for", append_forwarded_for(incoming.forwarded_for, peer)))
        elif incoming.forwarded_for:
            headers.append((b"x-forwarded-for", b", ".join(incoming.forwarded_for)))
        proto = incoming.forwarded_proto
        if proto is None or peer is None or peer not in self.trusted:
            proto = scope["scheme"].encode()
        headers.append((b"x-forwarded-proto", proto))
        headers.append((b"x-request-id", request_id))
        if incoming.host is None:
            headers.append((b"host", route.backends[0].label.encode()))
        if incoming.content_length is not None:
            headers.append((b"content-length", incoming.content_length))
            chunked = False
        elif more_body:
            headers.append((b"transfer-encoding", b"chunked"))
            chunked = True
        else:
            chunked = False
            if body or method.encode() in _BODY_METHODS:
                headers.append((b"content-length", str(len(body)).encode()))
        if route.strip_prefix:
            raw_path = strip_prefix(route.prefix, raw_path)
        target = raw_path + b"?" + query if query else raw_path
        bmethod = method.encode()
        head = build_head(bmethod, target, headers)

        # ---- pick a target and exchange -------------------------------------------------------
        admitted = time.monotonic()  # the breaker weighs a verdict by when its request was let in
        backend = route.choose(admitted)
        if backend is None:
            sent = await _error(send, 503, "circuit_open", request_id)
            self._record(wall, t0, route, method, 503, "circuit_open", None, None, len(body), sent,
                         peer, incoming, path, query, request_id, "open", 0)  # fmt: skip
            return
        # From here on the request holds the target's breaker (in half-open state, a probe slot)
        # and maybe an upstream connection. Every way out, expected or not, goes through the one
        # tail below the try: connection released or discarded, breaker told, one record
        # written, and a JSON error sent when the response has not started.
        timeouts = route.timeouts
        replayable = not more_body and bmethod in IDEMPOTENT_METHODS
        is_head = method == "HEAD"
        retries = 0
        request_bytes = len(body)
        body_done = not more_body
        conn: UpstreamConnection | None = None
        t_up = 0.0
        upstream_duration: float | None = None
        status = 0
        error: str | None = None
        started = False  # http.response.start went through: too late for an error status
        refused_by_front = False
        response_bytes = 0
        disconnect_watch: asyncio.Future[Message] | None = None
        try:
            # take_idle first: a coroutine call per request is measurable on this path.
            conn = backend.pool.take_idle()
            reused = conn is not None
            if conn is None:
                conn = await backend.pool.connect(timeouts.connect)
            while True:
                t_up = time.monotonic()
                conn.begin(is_head)
                try:
                    if more_body:
                        request_bytes, body_done = await _stream_body(
                            conn, head, body, receive, timeouts.idle, chunked
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

            # ---- response --------------------------------------------------------------------------
            upstream_duration = time.monotonic() - t_up
            status = conn.status
            backend.connect_ok = True
            out_headers = strip_response_hop_by_hop(conn.headers)
            for name, _ in out_headers:
                if name == b"x-request-id":
                    break  # the upstream echoed it already
            else:
                out_headers.append((b"x-request-id", request_id))
            try:
                await send({"type": "http.response.start", "status": status, "headers": out_headers})
            except RuntimeError as exc:
                # The front server refused the head (e.g. a header value it will not write): nothing
                # has reached the client yet, so it still gets a proper 502.
                log.warning(
                    "unforwardable response from %s for %s: %s", backend.label, request_id.decode(), exc
                )
                raise ProtocolError(f"unforwardable response head: {exc}") from None
            started = True
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
        except _ClientGone as gone:
            error = "client_disconnect"
            refused_by_front = gone.refused
            if not started:
                status = CLIENT_CLOSED_STATUS
        except ClientDisconnected:
            # Gone before (or while) the response was written: nobody got it, whatever the
            # upstream answered.
            error = "client_disconnect"
            if not started:
                status = CLIENT_CLOSED_STATUS
        except UpstreamError as exc:
            error = exc.reason
            if started:
                # Too late for an error status: the client sees a truncated response.
                log.warning(
                    "upstream %s failed mid-response for %s: %s", backend.label, request_id.decode(), exc
                )
            else:
                status = exc.status
                if isinstance(exc, ConnectFailed):
                    backend.connect_ok = False
        except asyncio.CancelledError:
            # Only the gateway's shutdown cancels a request (Gateway.stop, once drain_seconds
            # have passed, logs it in one line): answered and recorded like any other outcome.
            error = "drain_timeout"
            if not started:
                status = 503
            _uncancel()
        except Exception:
            # A bug (ours, or an ASGI server refusing what we send): still one record, the
            # breaker's slot back and the connection dropped, instead of a stuck probe slot.
            log.exception("proxying %s to %s failed unexpectedly", request_id.decode(), backend.label)
            error = "internal_error"
            if not started:
                status = 500
        finally:
            if disconnect_watch is not None and not disconnect_watch.done():
                disconnect_watch.cancel()

        # ---- the one way out once a target was chosen --------------------------------------------
        end = time.monotonic()
        if conn is not None:
            # Not when the upstream answered before the whole request body was sent (an early
            # 413, say): the connection still owes it the rest of the declared body, so the next
            # request's bytes would be read as that body, a smuggled request hidden in them.
            if error is None and body_done and conn.reusable:
                backend.pool.release(conn)
            else:
                backend.pool.discard(conn)
        breaker = backend.breaker
        if error is None:
            if status >= 500:
                breaker.on_failure(end, admitted)
            else:
                breaker.on_success(end, admitted)
        elif error in _NO_VERDICT:
            breaker.release(end, admitted)
        else:
            breaker.on_failure(end, admitted)
        error_reply: bytes | None = None
        if not started and error is not None and error != "client_disconnect":
            error_reply = _error_body(error, request_id)
            response_bytes = len(error_reply)
        if refused_by_front:
            return  # the front server refused the request body, answered 400 and recorded it
        # Recorded before the error reply is written: the record must not depend on that write.
        self.telemetry.record(
            RequestRecord(
                wall, end - t0, route.name, method, status, error, backend.label, upstream_duration,
                request_bytes, response_bytes, peer, incoming.forwarded_for, incoming.user_agent, path, query,
                request_id, breaker.state(end), retries,
            )
        )  # fmt: skip
        if error_reply is not None:
            await _send_error(send, status, error_reply, request_id)

    def _record(
        self,
        wall: float,
        t0: float,
        route: RouteRuntime,
        method: str,
        status: int,
        error: str | None,
        backend: Backend | None,
        upstream_duration: float | None,
        request_bytes: int,
        response_bytes: int,
        peer: str | None,
        incoming: IncomingRequest,
        path: str,
        query: bytes,
        request_id: bytes,
        circuit_state: str | None,
        retries: int,
    ) -> None:
        self.telemetry.record(
            RequestRecord(
                wall, time.monotonic() - t0, route.name, method, status, error,
                backend.label if backend is not None else None, upstream_duration, request_bytes,
                response_bytes, peer, incoming.forwarded_for, incoming.user_agent, path, query, request_id,
                circuit_state, retries,
            )
        )  # fmt: skip

    def _record_early(
        self,
        wall: float,
        t0: float,
        route: RouteRuntime,
        method: str,
        peer: str | None,
        incoming: IncomingRequest,
        path: str,
        query: bytes,
        request_id: bytes,
    ) -> None:
        self._record(wall, t0, route, method, CLIENT_CLOSED_STATUS, "client_disconnect", None, None, 0, 0,
                     peer, incoming, path, query, request_id, None, 0)  # fmt: skip


def _uncancel() -> None:
    """Mark the current task's cancellation as handled: the request then ends normally (its
    503 written, its record kept) instead of failing in the server with a traceback."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _next_body(receive: Receive) -> tuple[bytes, bool]:
    msg = await receive()
    if msg["type"] == "http.disconnect":
        raise _ClientGone(bool(msg.get(REFUSED)))
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


async def _error(send: Send, status: int, reason: str, request_id: bytes) -> int:
    body = _error_body(reason, request_id)
    await _send_error(send, status, body, request_id)
    return len(body)


def _error_body(reason: str, request_id: bytes) -> bytes:
    return orjson.dumps({"error": reason, "request_id": request_id.decode("latin-1")})


async def _send_error(send: Send, status: int, body: bytes, request_id: bytes) -> None:
    try:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
    except ClientDisconnected:
        pass  # the client has gone: there is nobody to tell


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
