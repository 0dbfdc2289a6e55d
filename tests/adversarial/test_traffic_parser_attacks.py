"""The access-log parser on every attack log in ../shared/data/attack-logs and on very long lines:
each line is a record or a precise reason, and a huge line costs neither memory nor the lines
around it."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from tests.support.procs import require_shared_data
from traffic.combined_log import MAX_LINE, LogReader, ParseError, parse_or_error
from traffic.replay import specs_from_log

GOOD = '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 5 "-" "ua"'

# file -> (lines, parsed); counted by hand from the files.
EXPECTED = {
    "apache-http-probing.log": (77, 75),
    "http-bf-wordpress-bf.log": (10, 9),  # the last line is blank
    "http_dos_random_uri.log": (66, 66),
    "http-dos-switching-ua.log": (15, 15),
    "nginx-bad-user-agent.log": (3, 3),
    "nginx-http-generic-bf.log": (22, 6),  # 16 nginx error-log lines
    "nginx-http-path-traversal.log": (9, 9),
    "nginx-http-sensitive-files.log": (9, 9),
    "nginx-http-sqli-probing.log": (16, 16),
    "nginx-http-xss-probing.log": (26, 26),
    "nginx_req_limit_exceeded.log": (9, 0),  # an nginx error log, not an access log
}


def attack_logs() -> list[Path]:
    root = require_shared_data("attack-logs")
    return sorted(root.glob("*/*.log"))


def test_every_attack_log_line_is_a_record_or_a_precise_reason() -> None:
    seen = {}
    reasons: Counter[str] = Counter()
    for path in attack_logs():
        reader = LogReader(path, keep_errors=1000)
        items = list(specs_from_log(reader))
        assert len(items) == reader.lines
        seen[path.name] = (reader.lines, reader.parsed)
        reasons.update(
            e.reason.split(":")[0] if "request" not in e.reason else "spaced request"
            for e in items
            if isinstance(e, ParseError)
        )
    assert seen == EXPECTED
    assert reasons == {
        "an nginx error-log line ([error]), not an access-log line": 25,
        "spaced request": 2,
        "empty line": 1,
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            '172.17.0.1 - - [29/Sep/2021:12:37:05 +0000] "GET /x.php?cmd=ls -al&y=z??" 400 226',
            "request 'GET /x.php?cmd=ls -al&y=z??' is not 'METHOD TARGET PROTOCOL': a space in the "
            "target, or no HTTP/x.y protocol",
        ),
        (
            "2021/12/02 11:53:15 [error] 4065777#4065777: *42952950 limiting requests, excess: 5.428 "
            'by zone "z", client: ::1, server: , request: "GET / HTTP/1.1", host: "la03.d.sb"',
            "an nginx error-log line ([error]), not an access-log line",
        ),
        (
            '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1 extra" 200 5',
            "request 'GET /a HTTP/1.1 extra' is not 'METHOD TARGET PROTOCOL'",
        ),
    ],
)
def test_reasons_name_the_real_problem(line: str, reason: str) -> None:
    result = parse_or_error(line)
    assert isinstance(result, ParseError)
    assert result.reason.startswith(reason)


@pytest.mark.parametrize("size", [MAX_LINE + 1, 20 * 1024 * 1024])
def test_a_huge_line_is_one_unparsed_line_and_costs_no_memory(tmp_path: Path, size: int) -> None:
    log = tmp_path / "huge.log"
    with open(log, "wb") as f:
        f.write(GOOD.encode() + b"\n")
        f.write(b"x" * size + b"\n")
        f.write(GOOD.encode() + b"\n")
        f.write(b"y" * size)  # the last line has no newline
    reader = LogReader(log)
    tracemalloc.start()
    try:
        items = list(reader)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [n for n, _ in items] == [1, 2, 3, 4]
    assert [type(x).__name__ for _, x in items] == ["LogRecord", "ParseError", "LogRecord", "ParseError"]
    assert all(
        x.reason == f"line longer than {MAX_LINE} characters" for _, x in items if isinstance(x, ParseError)
    )
    assert (reader.lines, reader.parsed, reader.unparsed) == (4, 2, 2)
    assert peak < 1024 * 1024  # never the whole line in memory
