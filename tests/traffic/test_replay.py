"""Replaying logs and specs over real HTTP against the real demo upstream (no gateway)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.procs import free_port, require_shared_data
from traffic.combined_log import ParseError
from traffic.replay import count_lines, replay_file, send_all
from traffic.spec import REPLAY_BODY, RequestSpec
from traffic.upstream import DemoUpstream, SeenRequest

Upstream = tuple[DemoUpstream, list[SeenRequest]]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    seen: list[SeenRequest] = []
    async with DemoUpstream("127.0.0.1:0", on_request=seen.append) as server:
        yield server, seen


def line(
    ip: str, method: str, target: str, status: int, size: str, agent: str = "curl/8.0", sec: int = 0
) -> str:
    return (
        f'{ip} - - [10/Oct/2023:11:06:{sec:02d} +0200] "{method} {target} HTTP/1.1" {status} {size} '
        f'"-" "{agent}"'
    )


# (client, method, target, status, logged bytes, user agent, body bytes the upstream must send)
CASES: list[tuple[str, str, str, int, str, str, int]] = [
    ("192.0.2.1", "GET", "/index.html", 200, "5120", "curl/8.0", 5120),
    ("192.0.2.2", "GET", "/missing?x=1", 404, "-", "curl/8.0", 0),
    ("192.0.2.3", "POST", "/wp-login.php", 401, "77", "-", 77),
    ("2001:db8::7", "HEAD", "/big", 200, "70000000", "curl/8.0", 0),
    ("192.0.2.4", "GET", "/%2fetc%2fpasswd", 404, "162", "Nikto", 162),
    ("192.0.2.4", "GET", "/a/../../etc/passwd", 400, "10", "Nikto", 10),
    ("192.0.2.5", "GET", "/foo?a=<script>alert(1)</script>", 403, "9", "x", 9),
    ("192.0.2.5", "GET", r"/c?x[\\\"y\\\"]=1", 404, "3", "x", 3),
    ("192.0.2.6", "GET", "/empty-query?", 200, "1", "y", 1),
    ("192.0.2.6", "GET", "/frag#x", 200, "2", "y", 2),
    ("192.0.2.7", "PUT", "/api/users/7", 204, "0", "z", 0),
    ("192.0.2.7", "DELETE", "/api/users/7", 500, "31", "z", 31),
    ("192.0.2.8", "GET", "/static/a.css", 304, "0", "z", 0),
    ("192.0.2.8", "GET", "/old", 301, "178", "z", 178),
    ("192.0.2.9", "OPTIONS", "/api", 429, "50", "z", 50),
    ("192.0.2.9", "GET", "/download.tar.gz", 206, "5000000", "Wget/1.14", 5_000_000),
]
GOOD = [
    (
        line(ip, method, target, status, size, agent),
        (method, target, status, sent, ip, None if agent == "-" else agent),
    )
    for ip, method, target, status, size, agent, sent in CASES
]

BAD: list[tuple[str, str]] = [
    ("", "empty line"),
    ("\x00\x01garbage\x02", "binary data"),
    (line("192.0.2.1", "GET", "/a b", 200, "1").replace('"GET /a b', '"GET /a b'), "METHOD TARGET PROTOCOL"),
    ('192.0.2.1 - - [10/Oct/2023:11:06:56 +0200] "-" 408 0 "-" "-"', "request field is '-'"),
    (line("192.0.2.1", "GET", "http://evil.example/", 200, "1"), "not a path"),
    (line("192.0.2.1", "GET", "/caf\u00e9", 200, "1"), "cannot go on an HTTP/1.1 request line"),
    (line("192.0.2.1", "GET", "/ws", 101, "0"), "informational status 101"),
    (line("192.0.2.1", "CONNECT", "/x:443", 200, "0"), "CONNECT"),
]


def write_log(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """Interleave good and bad lines; return the file and the bad lines' numbers and reasons."""
    lines: list[str] = []
    bad_at: dict[int, str] = {}
    bad = iter(BAD)
    for i, (good, _) in enumerate(GOOD):
        lines.append(good)
        if i % 2 == 1:
            text, reason = next(bad, ("", ""))
            if reason:
                lines.append(text)
                bad_at[len(lines)] = reason
    for text, reason in bad:
        lines.append(text)
        bad_at[len(lines)] = reason
    path = tmp_path / "access.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, bad_at


async def test_replayed_log_reaches_the_upstream_exactly_as_logged(
    tmp_path: Path, upstream: Upstream
) -> None:
    server, seen = upstream
    log, bad_at = write_log(tmp_path)
    progress: list[tuple[int, int | None, int]] = []
    result = await replay_file(log, server.url, concurrency=4, progress=lambda *a: progress.append(a))

    expected = Counter(want for _, want in GOOD)
    got = Counter((s.method, s.target, s.status, s.body_bytes, s.forwarded_for, s.user_agent) for s in seen)
    assert got == expected
    assert result.requests == len(GOOD)
    assert result.responses == Counter(want[2] for _, want in GOOD)
    assert result.transport_errors == 0
    # HEAD, 204 and 304 carry no body; everything else arrives whole.
    assert result.bytes_received == sum(want[3] for _, want in GOOD)
    # POST and PUT carry a small body; the upstream read all of it.
    assert {s.method: s.received_bytes for s in seen if s.method in ("POST", "PUT")} == {
        "POST": len(REPLAY_BODY),
        "PUT": len(REPLAY_BODY),
    }
    assert result.unparsed_lines == len(BAD)
    for sample, (line_no, reason) in zip(result.unparsed_samples, bad_at.items(), strict=True):
        assert sample.line_no == line_no
        assert reason in sample.reason
    total = count_lines(log)
    assert progress[-1] == (total, total, 0)


async def test_time_compressed_replay_still_sends_everything(tmp_path: Path, upstream: Upstream) -> None:
    server, seen = upstream
    # Three seconds of log at 30x.
    log = tmp_path / "timed.log"
    log.write_text("\n".join(line("192.0.2.1", "GET", f"/t{s}", 200, "1", sec=s) for s in range(4)) + "\n")
    result = await replay_file(log, server.url, speed=30.0, concurrency=1)
    assert result.requests == 4
    assert [s.target for s in seen] == ["/t0", "/t1", "/t2", "/t3"]


async def test_transport_errors_are_counted_not_fatal() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    specs: list[RequestSpec | ParseError] = [RequestSpec("GET", f"/x{i}", line_no=i + 1) for i in range(5)]
    specs.append(ParseError("empty line", 6))
    result = await send_all(specs, dead, concurrency=2, keep_samples=3)
    assert result.requests == 5
    assert result.transport_errors == 5
    assert result.responses == Counter()
    assert result.unparsed_lines == 1
    assert len(result.transport_error_samples) == 3
    assert result.transport_error_samples[0].startswith("line ")
    assert "transport errors: 5" in result.describe()


async def test_base_url_path_prefix_and_extra_headers(upstream: Upstream) -> None:
    server, seen = upstream
    spec = RequestSpec(
        "GET", "/users?id=1", status=201, delay_ms=1.5, headers=(("X-Forwarded-For", "198.51.100.1"),)
    )
    result = await send_all([spec], server.url + "/tenant-a/")
    assert result.responses == Counter({201: 1})
    assert (seen[0].target, seen[0].status, seen[0].forwarded_for) == (
        "/tenant-a/users?id=1",
        201,
        "198.51.100.1",
    )
    assert seen[0].user_agent is None  # no aiohttp default User-Agent is added


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="base URL"):
        await send_all([], "ftp://x")
    with pytest.raises(ValueError, match="concurrency"):
        await send_all([], "http://127.0.0.1:1", concurrency=0)
    with pytest.raises(ValueError, match="speed"):
        await send_all([], "http://127.0.0.1:1", speed=0)


async def test_the_2015_apache_log_in_full(upstream: Upstream) -> None:
    """Every parsable line reaches the upstream with its logged method, target and status."""
    server, seen = upstream
    log = require_shared_data("access-logs/apache_logs_2015.log")
    result = await replay_file(log, server.url, concurrency=32)
    assert (result.requests, result.unparsed_lines, result.transport_errors) == (9_999, 1, 0)
    assert result.unparsed_samples[0].line_no == 8899
    assert result.responses == Counter(
        {200: 9125, 304: 445, 404: 213, 301: 164, 206: 45, 500: 3, 403: 2, 416: 2}
    )
    assert len(seen) == 9_999
    assert Counter(s.method for s in seen) == Counter({"GET": 9951, "HEAD": 42, "POST": 5, "OPTIONS": 1})
    assert len({s.forwarded_for for s in seen}) == 1_753
