"""The demo upstream's pure answer rules."""

from __future__ import annotations

import httptools
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from traffic.demo_response import (
    DEMO_BYTES,
    DEMO_DELAY_MS,
    DEMO_STATUS,
    MAX_BODY_BYTES,
    DemoHeaderError,
    DemoPlan,
    body_allowed,
    content_length_allowed,
    echo_body,
    plan_response,
    response_head,
)


def test_no_headers_means_200_json_echo_without_delay() -> None:
    assert plan_response(None, None, None) == DemoPlan(200, None, 0.0)


def test_values_are_parsed_and_surrounding_blanks_ignored() -> None:
    assert plan_response(b" 503", b"70000000 ", b"12.5") == DemoPlan(503, 70_000_000, 12.5)
    assert plan_response(None, b"0", b"0") == DemoPlan(200, 0, 0.0)


@pytest.mark.parametrize(
    ("status", "size", "delay", "header"),
    [
        (b"abc", None, None, DEMO_STATUS),
        (b"", None, None, DEMO_STATUS),
        (b"99", None, None, DEMO_STATUS),
        (b"101", None, None, DEMO_STATUS),  # informational: never a final response
        (b"600", None, None, DEMO_STATUS),
        (b"+200", None, None, DEMO_STATUS),
        ("\u0662\u0660\u0660".encode(), None, None, DEMO_STATUS),  # non-ASCII digits
        (None, b"-1", None, DEMO_BYTES),
        (None, b"1e3", None, DEMO_BYTES),
        (None, b"1_000", None, DEMO_BYTES),
        (None, str(MAX_BODY_BYTES + 1).encode(), None, DEMO_BYTES),
        (None, None, b"-5", DEMO_DELAY_MS),
        (None, None, b"nan", DEMO_DELAY_MS),
        (None, None, b"600001", DEMO_DELAY_MS),
    ],
)
def test_invalid_values_name_the_header(
    status: bytes | None, size: bytes | None, delay: bytes | None, header: str
) -> None:
    with pytest.raises(DemoHeaderError) as info:
        plan_response(status, size, delay)
    assert info.value.header == header


@given(st.binary(max_size=20), st.binary(max_size=20), st.binary(max_size=20))
def test_any_bytes_give_a_plan_or_a_header_error(status: bytes, size: bytes, delay: bytes) -> None:
    try:
        plan = plan_response(status, size, delay)
    except DemoHeaderError as exc:
        assert exc.header in (DEMO_STATUS, DEMO_BYTES, DEMO_DELAY_MS)
        return
    assert 200 <= plan.status <= 599
    assert plan.body_bytes is not None and 0 <= plan.body_bytes <= MAX_BODY_BYTES
    assert plan.delay_ms >= 0


@given(st.integers(200, 599), st.integers(0, MAX_BODY_BYTES))
def test_valid_numbers_round_trip(status: int, size: int) -> None:
    assert plan_response(str(status).encode(), str(size).encode(), None) == DemoPlan(status, size, 0.0)


@pytest.mark.parametrize(
    ("method", "status", "body", "length"),
    [
        (b"GET", 200, True, True),
        (b"POST", 500, True, True),
        (b"HEAD", 200, False, True),
        (b"GET", 204, False, False),
        (b"GET", 304, False, False),
        (b"HEAD", 404, False, True),
    ],
)
def test_bodyless_responses(method: bytes, status: int, body: bool, length: bool) -> None:
    assert body_allowed(method, status) is body
    assert content_length_allowed(status) is length


def test_echo_body_reports_what_was_seen() -> None:
    doc = orjson.loads(echo_body(b"PUT", b"/a/b?x=1&y=%20", 7, 42, 201))
    assert doc == {
        "method": "PUT",
        "path": "/a/b",
        "query": "x=1&y=%20",
        "headers": 7,
        "received_bytes": 42,
        "status": 201,
    }


class _Head:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.done = True


@pytest.mark.parametrize(("status", "length"), [(200, 10), (599, 0), (204, None), (429, 5)])
def test_response_head_is_valid_http(status: int, length: int | None) -> None:
    head = response_head(
        status,
        content_type=b"application/json",
        content_length=length,
        received_bytes=3,
        connection=b"close",
        date=b"Thu, 01 Jan 2026 00:00:00 GMT",
    )
    seen = _Head()
    parser = httptools.HttpResponseParser(seen)
    parser.feed_data(head)
    assert seen.done
    assert parser.get_status_code() == status
    assert seen.headers[b"x-demo-received-bytes"] == b"3"
    assert seen.headers[b"connection"] == b"close"
    assert seen.headers.get(b"content-length") == (None if length is None else str(length).encode())
