"""Apache/nginx access log lines (combined and common format) into typed records.

    127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif?x=1 HTTP/1.0" 200 2326 "http://r/" "UA"

``parse_line`` is pure: one line in, a :class:`LogRecord` out, or a :class:`ParseError` naming
what is wrong (the caller knows the line number). It never raises anything else, whatever the
input. Quoted fields keep their escapes as logged (Apache writes ``\\"``, nginx ``\\x22``): the
replayer sends targets exactly as logged. A syslog prefix (``Sep 15 16:13:46 host nginx[2869]: ``)
in front of the client address is skipped.

:class:`LogReader` iterates a file as ``(line_no, record | error)`` and counts what it could not
parse, keeping the first few reasons.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

# One pass over a well-formed line; fields are validated one by one afterwards so an error can
# say which field is wrong. Quoted strings allow backslash escapes, so a logged \" stays inside.
_QUOTED = r'[^"\\]*(?:\\.[^"\\]*)*'  # "unrolled": one run per escape, not one branch per char
_LINE = re.compile(
    r"(?P<ip>[^\s\"\[\]]+) (?P<ident>\S+) (?P<user>\S+) \[(?P<ts>[^\]]*)\] "
    rf'"(?P<request>{_QUOTED})" (?P<status>\S+) (?P<bytes>\S+)'
    # combined adds referer and user agent; some formats append more fields after them
    rf'(?: "(?P<referer>{_QUOTED})" "(?P<agent>{_QUOTED})"(?: .*)?)?[ \t]*'
)
# RFC 3164 ("Sep 15 16:13:46 host prog[12]: ") or RFC 3339 timestamps, optional <PRI>.
_SYSLOG = re.compile(
    r"(?:<\d{1,3}>)?"
    r"(?:[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?) "
    r"\S+ [^\s:\[]+(?:\[\d+\])?: "
)
_TIME = re.compile(r"(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1
    )
}
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
_PROTOCOL = re.compile(r"HTTP/\d(?:\.\d)?")
_PROTOCOL_LIKE = re.compile(r"[A-Za-z]{2,10}/[0-9.]{1,5}")  # HTTP/1.1, but also FTP/1.0, HTTP/9.9.9
_NGINX_ERROR = re.compile(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} \[(\w+)\] ")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS = re.compile(r"\d{3}")
_BYTES = re.compile(r"\d{1,15}")

MAX_LINE = 64 * 1024


class ParseError(ValueError):
    """A line that is not a combined/common log line; ``reason`` says why."""

    def __init__(self, reason: str, line_no: int | None = None) -> None:
        self.reason = reason
        self.line_no = line_no
        super().__init__(reason if line_no is None else f"line {line_no}: {reason}")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One access log line. ``None`` where the log has ``-`` (or common format lacks the field)."""

    client_ip: str
    ident: str | None
    user: str | None
    timestamp: datetime  # aware, UTC
    method: str
    target: str  # path and query exactly as logged
    protocol: str
    status: int
    bytes_sent: int  # "-" is 0
    referer: str | None
    user_agent: str | None

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]


def _dash(value: str | None) -> str | None:
    return None if value is None or value == "-" else value


@lru_cache(maxsize=65536)  # clients repeat in a log: validate each address text once
def _canonical_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# Offsets repeat endlessly in a log; build each tzinfo once.
_ZONES: dict[tuple[str, str, str], timezone] = {}


def parse_timestamp(text: str) -> datetime:
    """``10/Oct/2000:13:55:36 -0700`` -> aware UTC datetime, or ParseError."""
    m = _TIME.fullmatch(text)
    if m is None:
        raise ParseError(f"timestamp {text[:40]!r} is not dd/Mon/yyyy:HH:MM:SS +hhmm")
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        raise ParseError(f"timestamp {text!r}: unknown month {mon!r}")
    key = (sign, oh, om)
    zone = _ZONES.get(key)
    if zone is None:
        if int(oh) > 23 or int(om) > 59:
            raise ParseError(f"timestamp {text!r}: bad UTC offset")
        delta = timedelta(hours=int(oh), minutes=int(om))
        zone = timezone(-delta if sign == "-" else delta)
        _ZONES[key] = zone
    try:
        local = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=zone)
    except ValueError as exc:
        raise ParseError(f"timestamp {text!r}: {exc}") from None
    return local.astimezone(UTC)


def _diagnose(line: str) -> str:
    """Why ``line`` did not match the log format (only called for lines that failed)."""
    m = re.match(r"(\S+) (\S+) (\S+) \[", line)
    if m is None:
        error_log = _NGINX_ERROR.match(line)
        if error_log is not None:
            return (
                f"an nginx error-log line ([{error_log[1]}]), not an access-log line: does not start "
                "with 'client ident user ['"
            )
        return "does not start with 'client ident user ['"
    if "]" not in line[m.end() :]:
        return "truncated: timestamp has no closing ']'"
    rest = line[line.index("]", m.end()) + 1 :]
    if not rest.startswith(' "'):
        return "no quoted request after the timestamp"
    q = re.match(rf' "{_QUOTED}"', rest)
    if q is None:
        return "truncated: request field has no closing quote"
    tail = rest[q.end() :]
    fields = re.match(r" (\S+) (\S+)", tail)
    if fields is None:
        return "missing status and bytes after the request"
    after = tail[fields.end() :]
    if after.count('"') % 2 == 1 or re.match(rf' "{_QUOTED}" "{_QUOTED}"', after) is None:
        return "truncated or malformed referer/user-agent fields"
    return "not in combined or common log format"


def parse_line(line: str) -> LogRecord:
    """Parse one line (trailing newline allowed). Raises only :class:`ParseError`."""
    line = line.rstrip("\r\n")
    if not line.strip():
        raise ParseError("empty line")
    if len(line) > MAX_LINE:
        raise ParseError(f"line longer than {MAX_LINE} characters")
    if _CONTROL.search(line) is not None or "\ufffd" in line:
        raise ParseError("binary data: control characters or invalid UTF-8")
    start = 0
    prefix = _SYSLOG.match(line)
    if prefix is not None:
        start = prefix.end()
    m = _LINE.fullmatch(line, start)
    if m is None:
        raise ParseError(_diagnose(line[start:]))

    ip_text = m["ip"]
    client_ip = _canonical_ip(ip_text)
    if client_ip is None:
        raise ParseError(f"client {ip_text[:64]!r} is not an IP address")

    timestamp = parse_timestamp(m["ts"])

    request = m["request"]
    if request == "-":
        raise ParseError("request field is '-': no request line was received")
    parts = request.split(" ")
    if len(parts) < 2:
        raise ParseError(f"request {request[:80]!r} is not 'METHOD TARGET PROTOCOL'")
    if len(parts) > 3 or (len(parts) == 2 or _PROTOCOL_LIKE.fullmatch(parts[2]) is None):
        # Scanners send raw spaces ("?cmd=ls -al") and servers log them as received (often with
        # a 400): the last word is then part of the target, not a protocol.
        raise ParseError(
            f"request {request[:80]!r} is not 'METHOD TARGET PROTOCOL': a space in the target, "
            "or no HTTP/x.y protocol"
        )
    method, target, protocol = parts
    if _METHOD.fullmatch(method) is None:
        raise ParseError(f"request method {method[:40]!r} is not an HTTP token")
    if not target:
        raise ParseError("request target is empty")
    if _PROTOCOL.fullmatch(protocol) is None:
        raise ParseError(f"request protocol {protocol[:40]!r} is not HTTP/x.y")

    status_text = m["status"]
    if _STATUS.fullmatch(status_text) is None or not 100 <= int(status_text) <= 599:
        raise ParseError(f"status {status_text[:20]!r} is not an HTTP status 100-599")
    size_text = m["bytes"]
    if size_text == "-":
        size = 0
    elif _BYTES.fullmatch(size_text) is not None:
        size = int(size_text)
    else:
        raise ParseError(f"bytes {size_text[:20]!r} is not a byte count or '-'")

    return LogRecord(
        client_ip=client_ip,
        ident=_dash(m["ident"]),
        user=_dash(m["user"]),
        timestamp=timestamp,
        method=method,
        target=target,
        protocol=protocol,
        status=int(status_text),
        bytes_sent=size,
        referer=_dash(m["referer"]),
        user_agent=_dash(m["agent"]),
    )


# Bytes read for one line at most: MAX_LINE characters of UTF-8 (up to 4 bytes each) and the line end.
_MAX_LINE_BYTES = 4 * MAX_LINE + 2


def _bounded_lines(f: BinaryIO) -> Iterator[bytes | None]:
    """The lines of ``f`` (split on ``\\n``), or None for a line too long to parse: a single
    line of gigabytes is skipped in chunks, never held in memory."""
    while raw := f.readline(_MAX_LINE_BYTES + 1):
        if len(raw) <= _MAX_LINE_BYTES or raw.endswith(b"\n"):
            yield raw
            continue
        while (rest := f.readline(1 << 16)) and not rest.endswith(b"\n"):
            pass
        yield None


def parse_or_error(line: str, line_no: int | None = None) -> LogRecord | ParseError:
    try:
        return parse_line(line)
    except ParseError as exc:
        return ParseError(exc.reason, line_no) if line_no is not None else exc


@dataclass
class LogReader:
    """Iterate a log file as ``(line_no, record | error)``; counts survive the iteration.

    Lines are split on ``\\n`` only and decoded as UTF-8 (an undecodable line is an error, never
    a crash). ``keep_errors`` bounds how many errors are remembered for reporting.
    """

    path: Path
    keep_errors: int = 10
    lines: int = 0
    parsed: int = 0
    unparsed: int = 0
    first_errors: list[ParseError] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[int, LogRecord | ParseError]]:
        with open(self.path, "rb") as f:
            for line_no, raw in enumerate(_bounded_lines(f), start=1):
                self.lines = line_no
                if raw is None:
                    result: LogRecord | ParseError = ParseError(
                        f"line longer than {MAX_LINE} characters", line_no
                    )
                else:
                    result = parse_or_error(raw.decode("utf-8", "replace"), line_no)
                if isinstance(result, ParseError):
                    self.unparsed += 1
                    if len(self.first_errors) < self.keep_errors:
                        self.first_errors.append(result)
                else:
                    self.parsed += 1
                yield line_no, result
