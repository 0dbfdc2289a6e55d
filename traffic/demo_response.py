"""What the demo upstream answers, decided from the request alone (pure: no I/O, no state).

A client steers the demo upstream with three request headers:

- ``x-demo-status``: the response status, 200-599 (default 200). Informational 1xx statuses are
  refused: a 1xx is never a final response, so a client would wait forever for the real one.
- ``x-demo-bytes``: the exact response body size in bytes (default: a small JSON echo).
- ``x-demo-delay-ms``: wait this long before answering (default 0, decimals allowed).

Values must be plain ASCII decimals. Anything else is a :class:`DemoHeaderError`, which the
server turns into a 400 with a JSON body naming the header. The replayer writes these headers
from logged records, and the gateway forwards them untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

import orjson

DEMO_STATUS = "x-demo-status"
DEMO_BYTES = "x-demo-bytes"
DEMO_DELAY_MS = "x-demo-delay-ms"
RECEIVED_BYTES = "x-demo-received-bytes"

MAX_BODY_BYTES = 1 << 30  # 1 GiB: far above any logged response, small enough to stay a demo
MAX_DELAY_MS = 600_000.0  # 10 minutes

_INT = re.compile(rb"[0-9]{1,12}")
_DECIMAL = re.compile(rb"[0-9]{1,9}(?:\.[0-9]{1,6})?")
_REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}


class DemoHeaderError(ValueError):
    """An ``x-demo-*`` header the demo upstream cannot honour."""

    def __init__(self, header: str, value: bytes, reason: str) -> None:
        self.header = header
        self.value = value.decode("latin-1")
        self.reason = reason
        super().__init__(f"{header}: {reason} (got {self.value!r})")


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """The answer to give: status, body size (``None`` = JSON echo) and delay before answering."""

    status: int = 200
    body_bytes: int | None = None
    delay_ms: float = 0.0


DEFAULT_PLAN = DemoPlan()


def plan_response(status: bytes | None, body_bytes: bytes | None, delay_ms: bytes | None) -> DemoPlan:
    """Validate the raw ``x-demo-*`` header values (``None`` = header absent)."""
    if status is None and body_bytes is None and delay_ms is None:
        return DEFAULT_PLAN
    code = 200
    if status is not None:
        raw = status.strip(b" \t")
        if not _INT.fullmatch(raw):
            raise DemoHeaderError(DEMO_STATUS, status, "expected a 3-digit HTTP status code")
        code = int(raw)
        if not 200 <= code <= 599:
            reason = (
                "1xx statuses are informational and cannot be a final response"
                if 100 <= code <= 199
                else "status must be between 200 and 599"
            )
            raise DemoHeaderError(DEMO_STATUS, status, reason)
    size: int | None = None
    if body_bytes is not None:
        raw = body_bytes.strip(b" \t")
        if not _INT.fullmatch(raw):
            raise DemoHeaderError(DEMO_BYTES, body_bytes, "expected a non-negative integer byte count")
        size = int(raw)
        if size > MAX_BODY_BYTES:
            raise DemoHeaderError(DEMO_BYTES, body_bytes, f"at most {MAX_BODY_BYTES} bytes")
    delay = 0.0
    if delay_ms is not None:
        raw = delay_ms.strip(b" \t")
        if not _DECIMAL.fullmatch(raw):
            raise DemoHeaderError(DEMO_DELAY_MS, delay_ms, "expected non-negative milliseconds")
        delay = float(raw)
        if delay > MAX_DELAY_MS:
            raise DemoHeaderError(DEMO_DELAY_MS, delay_ms, f"at most {MAX_DELAY_MS:.0f} ms")
    return DemoPlan(code, size, delay)


def body_allowed(method: bytes, status: int) -> bool:
    """RFC 9110: no content in a HEAD response, nor in 1xx, 204 or 304."""
    return method != b"HEAD" and status >= 200 and status != 204 and status != 304


def content_length_allowed(status: int) -> bool:
    """RFC 9110 forbids Content-Length in 1xx and 204; we also leave it off 304 (no validator)."""
    return status >= 200 and status != 204 and status != 304


def echo_body(method: bytes, target: bytes, header_count: int, received_bytes: int, status: int) -> bytes:
    """The default body: what the upstream saw, so a caller can check the gateway forwarded it."""
    path, _, query = target.partition(b"?")
    return orjson.dumps(
        {
            "method": method.decode("latin-1"),
            "path": path.decode("utf-8", "replace"),
            "query": query.decode("utf-8", "replace"),
            "headers": header_count,
            "received_bytes": received_bytes,
            "status": status,
        }
    )


def error_body(error: str, header: str | None = None, value: str | None = None) -> bytes:
    doc: dict[str, str] = {"error": error}
    if header is not None:
        doc["header"] = header
    if value is not None:
        doc["value"] = value
    return orjson.dumps(doc)


def response_head(
    status: int,
    *,
    content_type: bytes,
    content_length: int | None,
    received_bytes: int,
    connection: bytes | None,
    date: bytes,
) -> bytes:
    """The HTTP/1.1 status line and headers, ending with the blank line.

    ``connection`` is ``b"close"`` when the server will close after this response, and
    ``b"keep-alive"`` for HTTP/1.0 clients that asked to keep the connection.
    """
    reason = _REASONS.get(status, b"Unknown")
    parts = [
        b"HTTP/1.1 %d %s\r\nserver: gatewatch-demo-upstream\r\ndate: %s\r\n" % (status, reason, date),
        b"x-demo-received-bytes: %d\r\n" % received_bytes,
    ]
    if content_length is not None:
        parts.append(b"content-type: %s\r\ncontent-length: %d\r\n" % (content_type, content_length))
    if connection is not None:
        parts.append(b"connection: %s\r\n" % connection)
    parts.append(b"\r\n")
    return b"".join(parts)
