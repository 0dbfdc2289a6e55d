"""Upstream failures, each mapped to one gateway error reason (gatewatch.events.ERROR_REASONS)."""

from __future__ import annotations


class UpstreamError(Exception):
    reason = "upstream_refused"
    status = 502


class ConnectFailed(UpstreamError):
    """The TCP connection could not be opened (refused, unreachable, reset)."""


class ConnectionClosed(UpstreamError):
    """The upstream closed or reset the connection before it sent a response head."""


class ResponseTruncated(ConnectionClosed):
    """The upstream closed or reset the connection after the response head, before the body was
    complete. Not a refusal: the upstream took the request and answered part of it."""

    reason = "upstream_truncated"


class UpstreamTimeout(UpstreamError):
    reason = "upstream_timeout"
    status = 504


class ProtocolError(UpstreamError):
    """The upstream's bytes are not a valid HTTP/1.1 response."""

    reason = "upstream_protocol"
