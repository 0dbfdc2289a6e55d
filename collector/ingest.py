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
from datetime import datetime
from typing import cast

from pydantic import ValidationError

from gatewatch.events import AccessEvent

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
MAX_REPORTED_REJECTIONS = 100
# Work per request is bounded by bytes *and* lines: a line costs ~2 us even when blank and up to
# ~40 us to reject ("{}"), so 32 MiB of tiny lines (a 32 KiB gzip body) was minutes of CPU and a
# 256 MB list. A gateway batch is at most 100,000 events (CollectorSink.batch_size).
MAX_LINES_PER_BATCH = 100_000
# After this many invalid lines the sender is broken (or hostile): the rest is refused unread.
MAX_REJECTED_PER_BATCH = 1_000
# One rejection's text is bounded: some messages quote the offending value (e.g. a 16 KiB
# "source.ip"), and 100 of them must not make the answer larger than the batch.
MAX_ERROR_CHARS = 1000

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
    numbers: list[int] = field(default_factory=list)  # 1-based body line of each good event
    rejected: list[Rejection] = field(default_factory=list)  # at most MAX_REPORTED_REJECTIONS
    rejected_total: int = 0

    def reject(self, line: int, error: str, max_reported: int = MAX_REPORTED_REJECTIONS) -> None:
        self.rejected_total += 1
        if len(self.rejected) < max_reported:
            self.rejected.append(Rejection(line, error))


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
    text = "; ".join(parts)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _without_bom(
    line: bytes, validate: Callable[[bytes], AccessEvent]
) -> tuple[AccessEvent, bytes] | ValidationError | None:
    """A line that failed only because of a leading UTF-8 byte-order mark (Windows editors, some
    log shippers put one at the start of a file): the event and the line without it."""
    if not line.startswith(UTF8_BOM):
        return None
    stripped = line[len(UTF8_BOM) :].strip()
    try:
        return validate(stripped), stripped
    except ValidationError as exc:
        return exc


def _refuse_rest(out: ParsedBatch, raw_lines: list[bytes], number: int) -> None:
    """Refuse line ``number`` and every non-blank line after it without validating them."""
    rest = sum(1 for raw in raw_lines[number:] if raw.strip())
    out.rejected_total += 1 + rest
    out.rejected.append(  # listed even when the list is full: it explains the count
        Rejection(
            number,
            f"not validated: this batch already had {MAX_REJECTED_PER_BATCH} invalid lines; this line "
            f"and the {rest} non-blank lines after it are refused unread",
        )
    )


def parse_ndjson(
    text: bytes, max_reported: int = MAX_REPORTED_REJECTIONS, not_after: datetime | None = None
) -> ParsedBatch:
    """Validate every line. ``not_after`` (aware): events stamped later are rejected (a broken
    gateway clock or a forged year-9999 event would otherwise sit in the store past retention)."""
    line_count = text.count(b"\n") + (1 if text and not text.endswith(b"\n") else 0)
    if line_count > MAX_LINES_PER_BATCH:
        raise BodyError(
            413,
            f"body has {line_count} lines; at most {MAX_LINES_PER_BATCH} per request (send smaller batches)",
        )
    out = ParsedBatch()
    # The model's core validator, called directly: model_validate_json is this plus a Python
    # wrapper, which costs a few percent of the per-line budget.
    validate = cast("Callable[[bytes], AccessEvent]", AccessEvent.__pydantic_validator__.validate_json)
    events = out.events
    lines = out.lines
    numbers = out.numbers
    raw_lines = text.split(b"\n")
    for number, raw in enumerate(raw_lines, start=1):
        line = raw.strip()  # also drops a CRLF line end
        if not line:
            continue
        if out.rejected_total >= MAX_REJECTED_PER_BATCH:
            _refuse_rest(out, raw_lines, number)
            break
        try:
            event = validate(line)
        except ValidationError as exc:
            retried = _without_bom(line, validate)
            if not isinstance(retried, tuple):
                out.reject(number, describe(retried or exc), max_reported)
                continue
            event, line = retried
        if not_after is not None and event.timestamp > not_after:
            out.reject(
                number,
                f"@timestamp: {event.timestamp.isoformat().replace('+00:00', 'Z')} is more than "
                f"limits.max_future_seconds ahead of the collector's clock (latest accepted: "
                f"{not_after.isoformat(timespec='seconds').replace('+00:00', 'Z')})",
                max_reported,
            )
            continue
        events.append(event)
        lines.append(line)
        numbers.append(number)
    return out
