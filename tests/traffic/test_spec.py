"""Log records into request specs (pure)."""

from __future__ import annotations

import pytest

from traffic.combined_log import LogRecord, ParseError, parse_line
from traffic.spec import REPLAY_BODY, spec_from_record


def rec(
    ts: str, request_line: str = "GET /a?b=1 HTTP/1.1", status: int = 200, size: str = "10", agent: str = "ua"
) -> LogRecord:
    return parse_line(f'192.0.2.1 - - [{ts}] "{request_line}" {status} {size} "-" "{agent}"')


def test_spec_carries_what_the_upstream_must_reproduce() -> None:
    origin = rec("10/Oct/2023:11:00:00 +0200")
    spec = spec_from_record(
        rec("10/Oct/2023:09:00:30 +0000", status=503, size="-", agent="-"), origin.timestamp, 7
    )
    assert (spec.method, spec.target, spec.status, spec.body_bytes) == ("GET", "/a?b=1", 503, 0)
    assert (spec.client_ip, spec.user_agent, spec.line_no, spec.body) == ("192.0.2.1", None, 7, b"")
    # 11:00 at +0200 is 09:00 UTC: the second record is 30 s later, whatever the offsets.
    assert spec.at == 30.0


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_methods_with_bodies_get_a_small_body(method: str) -> None:
    r = rec("10/Oct/2023:11:00:00 +0200", request_line=f"{method} /x HTTP/1.1")
    assert spec_from_record(r, r.timestamp).body == REPLAY_BODY


@pytest.mark.parametrize(
    ("request_line", "status", "reason"),
    [
        ("GET * HTTP/1.1", 200, "not a path"),
        ("GET http://x/ HTTP/1.1", 200, "not a path"),
        ("GET /\u00e9 HTTP/1.1", 200, "request line"),
        ("CONNECT /h:443 HTTP/1.1", 200, "CONNECT"),
        ("GET /ws HTTP/1.1", 101, "informational"),
    ],
)
def test_unreplayable_records_are_parse_errors_with_the_line(
    request_line: str, status: int, reason: str
) -> None:
    r = rec("10/Oct/2023:11:00:00 +0200", request_line=request_line, status=status)
    with pytest.raises(ParseError) as info:
        spec_from_record(r, r.timestamp, 42)
    assert reason in info.value.reason
    assert info.value.line_no == 42
