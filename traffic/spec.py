"""Request specs: what the replayer sends, from a log record or the synthetic mix (pure).

A :class:`RequestSpec` is one HTTP request to make against the gateway, with the ``x-demo-*``
headers that make the demo upstream answer as the original server did. ``at`` places it on the
traffic's own clock (seconds after the first request); the replayer maps that to wall time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from traffic.combined_log import LogRecord, ParseError
from traffic.demo_response import MAX_BODY_BYTES

# Methods whose replay carries a small request body (the log does not keep the original one).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
REPLAY_BODY = b'{"replayed":true}'

# Visible ASCII only: anything else cannot go on an HTTP/1.1 request line untouched.
_TARGET = re.compile(r"/[\x21-\x7e]*")


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request to send. ``None`` headers are left out."""

    method: str
    target: str  # origin-form path and query, sent exactly as given
    status: int = 200  # x-demo-status
    body_bytes: int | None = None  # x-demo-bytes; None = the upstream's JSON echo
    delay_ms: float = 0.0  # x-demo-delay-ms
    client_ip: str | None = None  # X-Forwarded-For
    user_agent: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # anything else (e.g. Authorization)
    body: bytes = b""
    at: float = 0.0  # seconds after the traffic's first request
    line_no: int | None = None  # where it came from, for error reports


def spec_from_record(record: LogRecord, origin: datetime, line_no: int | None = None) -> RequestSpec:
    """The request that reproduces ``record``; ParseError when it cannot be sent as logged."""
    target = record.target
    if _TARGET.fullmatch(target) is None:
        if not target.startswith("/"):
            reason = f"target {target[:60]!r} is not a path (absolute or authority form)"
        else:
            reason = "target has characters that cannot go on an HTTP/1.1 request line as logged"
        raise ParseError(reason, line_no)
    if record.method == "CONNECT":
        raise ParseError("CONNECT requests cannot be replayed", line_no)
    if record.status < 200:
        raise ParseError(f"informational status {record.status} cannot be a final response", line_no)
    if record.bytes_sent > MAX_BODY_BYTES:
        raise ParseError(f"logged bytes {record.bytes_sent} exceed the demo upstream limit", line_no)
    return RequestSpec(
        method=record.method,
        target=target,
        status=record.status,
        body_bytes=record.bytes_sent,
        client_ip=record.client_ip,
        user_agent=record.user_agent,
        body=REPLAY_BODY if record.method in BODY_METHODS else b"",
        at=(record.timestamp - origin).total_seconds(),
        line_no=line_no,
    )
