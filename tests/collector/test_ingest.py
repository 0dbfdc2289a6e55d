"""Decoding and validating ingest bodies (pure functions): gzip, line numbers, error messages."""

from __future__ import annotations

import gzip
import json

import pytest

from collector.ingest import (
    BodyError,
    check_content_encoding,
    check_content_type,
    decode_body,
    gunzip,
    parse_ndjson,
)
from tests.collector.helpers import event, ndjson, wire


def test_good_lines_are_kept_with_their_exact_text_and_bad_lines_named() -> None:
    good = [event(request_id=f"r-{i}") for i in range(3)]
    bad_status = json.dumps({**wire(good[0]), "http.response.status_code": 700})
    missing_route = json.dumps({k: v for k, v in wire(good[0]).items() if k != "gateway.route"})
    body = b"\n".join(
        [
            good[0].to_json_bytes(),
            b"",  # blank lines are skipped but keep the numbering
            bad_status.encode(),
            good[1].to_json_bytes() + b"\r",  # CRLF line end
            b"{not json",
            missing_route.encode(),
            good[2].to_json_bytes(),
            b"   ",
        ]
    )
    parsed = parse_ndjson(body)
    assert [e.request_id for e in parsed.events] == ["r-0", "r-1", "r-2"]
    assert parsed.lines == [g.to_json_bytes() for g in good]
    assert [(r.line, r.error) for r in parsed.rejected] == [
        (3, "http.response.status_code: Input should be less than or equal to 599"),
        (5, "invalid JSON: key must be a string at line 1 column 2"),
        (6, "gateway.route: Field required"),
    ]
    assert parsed.rejected_total == 3


def test_several_problems_on_one_line_are_all_named() -> None:
    line = json.dumps({**wire(event()), "source.ip": "300.1.1.1", "event.duration": -5, "colour": "red"})
    (rejection,) = parse_ndjson(line.encode()).rejected
    assert (
        "source.ip: Value error, '300.1.1.1' does not appear to be an IPv4 or IPv6 address" in rejection.error
    )
    assert "event.duration: Input should be greater than or equal to 0" in rejection.error
    assert "colour: Extra inputs are not permitted" in rejection.error


def test_rejections_are_capped_but_counted() -> None:
    parsed = parse_ndjson(b"{}\n" * 250, max_reported=100)
    assert len(parsed.rejected) == 100
    assert parsed.rejected_total == 250
    assert parsed.rejected[-1].line == 100


def test_non_object_and_non_utf8_lines_are_rejected() -> None:
    parsed = parse_ndjson(b"[1, 2]\n\xff\xfe\n42")
    assert [r.line for r in parsed.rejected] == [1, 2, 3]
    assert parsed.rejected[0].error == "Input should be an object"
    assert parsed.rejected[1].error.startswith("invalid JSON")


def test_gzip_by_header_by_magic_bytes_and_in_several_members() -> None:
    text = ndjson([event(), event()])
    assert decode_body(gzip.compress(text), gzip_header=True, max_bytes=10_000) == text
    assert decode_body(gzip.compress(text), gzip_header=False, max_bytes=10_000) == text  # magic bytes
    two_members = gzip.compress(text[:100]) + gzip.compress(text[100:])
    assert gunzip(two_members, 10_000) == text
    assert decode_body(text, gzip_header=False, max_bytes=10_000) == text


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"plain text, not gzip", 400, "body is not valid gzip"),
        (gzip.compress(b"x" * 1000)[:-12], 400, "truncated"),
        (gzip.compress(b"x" * 5000), 413, "decompressed body is larger than 4096 bytes"),
    ],
)
def test_bad_gzip_and_gzip_bombs_are_refused(body: bytes, status: int, message: str) -> None:
    with pytest.raises(BodyError) as exc:
        decode_body(body, gzip_header=True, max_bytes=4096)
    assert exc.value.status == status
    assert message in exc.value.message


def test_content_type_and_encoding_checks() -> None:
    check_content_type(None)
    check_content_type("application/x-ndjson; charset=utf-8")
    with pytest.raises(BodyError) as exc:
        check_content_type("multipart/form-data; boundary=x")
    assert exc.value.status == 415 and "multipart/form-data" in exc.value.message
    assert check_content_encoding("gzip") is True
    assert check_content_encoding(None) is False
    with pytest.raises(BodyError) as exc:
        check_content_encoding("br")
    assert exc.value.status == 415 and "'br'" in exc.value.message
