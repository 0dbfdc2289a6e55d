"""A small HTTP/1.1 client over the pooled connections: whole-body requests.

The proxy drives connections directly (it streams both ways); this module serves the callers
that send and receive small bodies: the event shipper and the active health checks.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sidecar_gateway.upstream.connection import Deadlines, Header, UpstreamConnection
from sidecar_gateway.upstream.errors import ConnectionClosed, UpstreamError
from sidecar_gateway.upstream.pool import DEFAULT_LIMITS, ConnectionPool, PoolLimits

IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


def build_head(method: bytes, target: bytes, headers: Sequence[Header]) -> bytes:
    """Request line and header block; names and values were validated by whoever made them."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[Header] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None


class UpstreamClient:
    """Pools keyed by (host, port, tls), shared by every caller in the process."""

    def __init__(self, limits: PoolLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._pools: dict[tuple[str, int, bool], ConnectionPool] = {}
        self._ssl: ssl_module.SSLContext | None = None
        self.deadlines = Deadlines()

    def pool(self, host: str, port: int, tls: bool = False) -> ConnectionPool:
        key = (host, port, tls)
        pool = self._pools.get(key)
        if pool is None:
            if tls and self._ssl is None:
                self._ssl = ssl_module.create_default_context()
            pool = ConnectionPool(host, port, self.limits, self._ssl if tls else None, self.deadlines)
            self._pools[key] = pool
        return pool

    @property
    def pools(self) -> list[ConnectionPool]:
        return list(self._pools.values())

    def sweep(self) -> None:
        for pool in self._pools.values():
            pool.sweep()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self.deadlines.close()

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[Header] = (),
        body: bytes = b"",
        timeout: float = 10.0,
        retry_stale: bool | None = None,
    ) -> Response:
        """Send one request with a whole body and read the whole response.

        A pooled connection the server closed while idle is retried once on a fresh one when
        the request is idempotent (or ``retry_stale`` says so) and no response byte came back.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        m = method.upper().encode()
        all_headers: list[Header] = [(b"host", parts.netloc.encode())]
        all_headers += headers
        if body or m not in (b"GET", b"HEAD"):
            all_headers.append((b"content-length", str(len(body)).encode()))
        head = build_head(m, target.encode(), all_headers)
        may_retry = (m in IDEMPOTENT_METHODS) if retry_stale is None else retry_stale
        pool = self.pool(parts.hostname, port, tls)
        conn, reused = await pool.acquire(timeout)
        try:
            return await self._exchange(pool, conn, m, head, body, timeout)
        except ConnectionClosed:
            if not (reused and may_retry and not conn.got_bytes):
                raise
        conn = await pool.connect(timeout)
        return await self._exchange(pool, conn, m, head, body, timeout)

    async def _exchange(
        self,
        pool: ConnectionPool,
        conn: UpstreamConnection,
        method: bytes,
        head: bytes,
        body: bytes,
        timeout: float,
    ) -> Response:
        ok = False
        try:
            conn.begin(method == b"HEAD")
            conn.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                conn.write(body)
                await conn.drain(timeout)
            await conn.read_head(timeout)
            chunks = []
            while True:
                chunk = await conn.read_body(timeout)
                if not chunk:
                    break
                chunks.append(chunk)
            ok = True
            return Response(conn.status, conn.headers, b"".join(chunks))
        except UpstreamError:
            raise
        finally:
            if ok:
                pool.release(conn)
            else:
                pool.discard(conn)
