"""Per-target pools of idle keep-alive connections: bounded, LIFO, with idle expiry.

LIFO reuse keeps a few connections hot and lets the surplus age out. Connections idle longer
than ``idle_timeout`` are closed rather than reused: upstream servers close idle keep-alive
connections on their own timers (uvicorn after 5 s), and a request written into a socket the
upstream is closing fails.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import time
from dataclasses import dataclass

from sidecar_gateway.upstream.connection import Deadlines, UpstreamConnection
from sidecar_gateway.upstream.errors import ConnectFailed, UpstreamTimeout


@dataclass(frozen=True)
class PoolLimits:
    max_idle: int = 256  # idle connections kept per target
    idle_timeout: float = 4.0  # seconds an idle connection may be reused after


DEFAULT_LIMITS = PoolLimits()


class ConnectionPool:
    """Idle connections to one ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        limits: PoolLimits = DEFAULT_LIMITS,
        ssl: ssl_module.SSLContext | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.deadlines = deadlines or Deadlines()
        self.host = host
        self.port = port
        self.limits = limits
        self.ssl = ssl
        self._idle: list[UpstreamConnection] = []
        self.opened = 0  # connections opened over the pool's life (for tests and debugging)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def take_idle(self) -> UpstreamConnection | None:
        now = time.monotonic()
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > self.limits.idle_timeout:
                conn.close()
                continue
            return conn
        return None

    async def connect(self, timeout: float) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(loop, self.deadlines),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.opened += 1
        return conn

    async def acquire(self, connect_timeout: float) -> tuple[UpstreamConnection, bool]:
        """A connection for one exchange and whether it was reused from the pool."""
        conn = self.take_idle()
        if conn is not None:
            return conn, True
        return await self.connect(connect_timeout), False

    def release(self, conn: UpstreamConnection) -> None:
        """Give back a connection after its exchange; keep it only if it can serve another."""
        conn.finish()
        if conn.reusable and len(self._idle) < self.limits.max_idle:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def discard(self, conn: UpstreamConnection) -> None:
        conn.finish()
        conn.abort()

    def sweep(self) -> None:
        """Close idle connections that are closed or too old (called periodically)."""
        now = time.monotonic()
        keep = []
        for conn in self._idle:
            if conn.closed:
                continue
            if now - conn.idle_since > self.limits.idle_timeout:
                conn.close()
            else:
                keep.append(conn)
        self._idle = keep

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle = []
