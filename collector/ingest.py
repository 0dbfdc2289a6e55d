"""Turn an ingest request body into validated access events. Pure: bytes in, results out.

The body is NDJSON, one :class:`~gatewatch.events.AccessEvent` per line (ECS wire names),
optionally gzip-compressed (by header or recognised by its magic bytes). Every line is validated
on its own, so one bad line costs only itself: the good lines are kept, and every bad line is
reported by its 1-based line number with the field and the reason. Blank lines are ignored but
still counted, so line numbers match what an editor shows.

Per-line ``model_validate_json`` was measured against validating the whole batch as one JSON
array with a ``TypeAdapter``: the array is no faster here (the per-field work dominates) and
would let two malformed lines join into one "valid" element, so lines are validated one by one.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from pydantic import ValidationError

from gatewatch.events import AccessEvent

GZIP_MAGIC = b"\x1f\x8b"
MAX_REPORTED_REJECTIONS = 100

# Media types accepted for an ingest body. NDJSON has several names in the wild; a missing
# Content-Type is accepted too (simple clients), anything else is a 415 that names these.
NDJSON_MEDIA_TYPES: frozenset[str] = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/json",
        "text/plain",
        "application/gzip",
        "application/x-gzip",
        "application/octet-stream",
    }
)
ACCEPTED_ENCODINGS: frozenset[str] = frozenset({"", "identity", "gzip", "x-gzip"})


class BodyError(Exception):
    """A body that cannot be read as NDJSON at all. ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int  # 1-based line number in the (decompressed) body
    error: str  # "field: message; field: message"


@dataclass(slots=True)
class ParsedBatch:
    """Good events, in body order, with the exact line each came from; and the bad lines."""

    events: list[AccessEvent] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)  # at most MAX_REPORTED_REJECTIONS
    rejected_total: int = 0


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media and media not in NDJSON_MEDIA_TYPES:
        raise BodyError(
            415,
            f"unsupported Content-Type {media!r}: send NDJSON access events as application/x-ndjson",
        )


def check_content_encoding(content_encoding: str | None) -> bool:
    """True when the header says gzip. Raises BodyError (415) for encodings we do not speak."""
    enc = (content_encoding or "").strip().lower()
    if enc not in ACCEPTED_ENCODINGS:
        raise BodyError(415, f"unsupported Content-Encoding {enc!r}: send gzip or an uncompressed body")
    return enc in ("gzip", "x-gzip")


def gunzip(body: bytes, max_bytes: int) -> bytes:
    """Decompress a gzip body (several concatenated members allowed), refusing to produce more
    than ``max_bytes`` (a small body must not expand into gigabytes)."""
    out: list[bytes] = []
    size = 0
    data = body
    while data:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            chunk = d.decompress(data, max_bytes - size + 1)
        except zlib.error as exc:
            raise BodyError(400, f"body is not valid gzip: {exc}") from None
        size += len(chunk)
        if size > max_bytes:
            raise BodyError(413, f"decompressed body is larger than {max_bytes} bytes")
        out.append(chunk)
        if not d.eof:
            raise BodyError(400, "body is not valid gzip: truncated stream")
        data = d.unused_data
        if data.strip(b"\x00") == b"":  # trailing zero padding after the last member is legal
            break
    return b"".join(out)


def decode_body(body: bytes, gzip_header: bool, max_bytes: int) -> bytes:
    """The NDJSON text of a body: gunzipped when the header says so or the magic bytes show it."""
    if gzip_header or body[:2] == GZIP_MAGIC:
        return gunzip(body, max_bytes)
    return body


def describe(exc: ValidationError) -> str:
    """``field: message`` for each problem, fields by their wire (ECS) names."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "json_invalid":
            parts.append(
                f"invalid JSON: {err['ctx'].get('error', err['msg'])}" if "ctx" in err else err["msg"]
            )
        elif loc:
            parts.append(f"{loc}: {err['msg']}")
        else:
            parts.append(err["msg"])
    return "; ".join(parts)


def parse_ndjson(text: bytes, max_reported: int = MAX_REPORTED_REJECTIONS) -> ParsedBatch:
    out = ParsedBatch()
    # The model's core validator, called directly: model_validate_json is this plus a Python
    # wrapper, which costs a few percent of the per-line budget.
    validate = cast("Callable[[bytes], AccessEvent]", AccessEvent.__pydantic_validator__.validate_json)
    events = out.events
    lines = out.lines
    for number, raw in enumerate(text.split(b"\n"), start=1):
        line = raw.strip()  # also drops a CRLF line end
        if not line:
            continue
        try:
            events.append(validate(line))
        except ValidationError as exc:
            out.rejected_total += 1
            if len(out.rejected) < max_reported:
                out.rejected.append(Rejection(number, describe(exc)))
            continue
        lines.append(line)
    return out
