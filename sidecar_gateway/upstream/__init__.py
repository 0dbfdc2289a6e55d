"""A small HTTP/1.1 upstream client: asyncio Protocols, httptools parsing, pooled keep-alive."""

from sidecar_gateway.upstream.client import IDEMPOTENT_METHODS, Response, UpstreamClient, build_head
from sidecar_gateway.upstream.connection import UpstreamConnection
from sidecar_gateway.upstream.errors import (
    ConnectFailed,
    ConnectionClosed,
    ProtocolError,
    ResponseTruncated,
    UpstreamError,
    UpstreamTimeout,
)
from sidecar_gateway.upstream.pool import ConnectionPool, PoolLimits

__all__ = [
    "IDEMPOTENT_METHODS",
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionPool",
    "PoolLimits",
    "ProtocolError",
    "Response",
    "ResponseTruncated",
    "UpstreamClient",
    "UpstreamConnection",
    "UpstreamError",
    "UpstreamTimeout",
    "build_head",
]
