"""The demo upstream over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from tests.support.procs import free_port, gatewatch_cmd, running
from traffic.upstream import DemoUpstream, SeenRequest, UpstreamThread, parse_listen


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[DemoUpstream, list[SeenRequest]]]:
    seen: list[SeenRequest] = []
    async with DemoUpstream("127.0.0.1:0", on_request=seen.append) as server:
        yield server, seen


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


async def raw_exchange(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(-1), wait)
    finally:
        writer.close()


def split_responses(
    raw: bytes, heads: frozenset[int] = frozenset()
) -> list[tuple[int, dict[str, str], bytes]]:
    """Parse concatenated responses framed by Content-Length; ``heads``: indexes answering HEAD."""
    out: list[tuple[int, dict[str, str], bytes]] = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, raw
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        size = 0 if len(out) in heads else int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:size]))
        raw = rest[size:]
    return out


async def test_default_answer_is_a_json_echo(
    upstream: tuple[DemoUpstream, list[SeenRequest]], session: aiohttp.ClientSession
) -> None:
    server, seen = upstream
    body = b"z" * 12_345
    async with session.post(
        f"{server.url}/api/orders?id=7&x=%20", data=body, headers={"x-demo-status": "201"}
    ) as resp:
        assert resp.status == 201
        assert resp.headers["x-demo-received-bytes"] == "12345"
        assert resp.headers["content-type"] == "application/json"
        doc = orjson.loads(await resp.read())
    assert doc["method"] == "POST"
    assert doc["path"] == "/api/orders"
    assert doc["query"] == "id=7&x=%20"
    assert doc["received_bytes"] == 12_345
    assert doc["status"] == 201
    assert [(s.method, s.target, s.status, s.received_bytes) for s in seen] == [
        ("POST", "/api/orders?id=7&x=%20", 201, 12_345)
    ]


@pytest.mark.parametrize("size", [0, 1, 65_536, 65_537, 5_000_000])
async def test_body_is_exactly_the_requested_size(
    upstream: tuple[DemoUpstream, list[SeenRequest]], session: aiohttp.ClientSession, size: int
) -> None:
    server, seen = upstream
    async with session.get(f"{server.url}/blob", headers={"x-demo-bytes": str(size)}) as resp:
        assert resp.status == 200
        assert resp.headers["content-length"] == str(size)
        body = await resp.read()
    assert len(body) == size
    assert seen[-1].body_bytes == size
    assert server.stats.body_bytes_sent == size


@pytest.mark.parametrize("status", [404, 429, 500, 503])
async def test_requested_status_and_size_together(
    upstream: tuple[DemoUpstream, list[SeenRequest]], session: aiohttp.ClientSession, status: int
) -> None:
    server, _ = upstream
    headers = {"x-demo-status": str(status), "x-demo-bytes": "321", "x-demo-delay-ms": "5"}
    async with session.get(f"{server.url}/x", headers=headers) as resp:
        assert resp.status == status
        assert len(await resp.read()) == 321


async def test_bodyless_answers_put_no_bytes_on_the_wire(
    upstream: tuple[DemoUpstream, list[SeenRequest]],
) -> None:
    """HEAD, 204 and 304 are pipelined before a GET: any stray body byte would corrupt the GET."""
    server, seen = upstream
    raw = await raw_exchange(
        server.port,
        b"HEAD /h HTTP/1.1\r\nHost: t\r\nx-demo-bytes: 5000\r\n\r\n"
        b"GET /n HTTP/1.1\r\nHost: t\r\nx-demo-status: 204\r\nx-demo-bytes: 10\r\n\r\n"
        b"GET /m HTTP/1.1\r\nHost: t\r\nx-demo-status: 304\r\n\r\n"
        b"GET /last HTTP/1.1\r\nHost: t\r\nx-demo-bytes: 7\r\nConnection: close\r\n\r\n",
    )
    responses = split_responses(raw, heads=frozenset({0}))
    assert [(status, body) for status, _, body in responses] == [
        (200, b""),
        (204, b""),
        (304, b""),
        (200, b"xxxxxxx"),
    ]
    head_headers = responses[0][1]
    assert head_headers["content-length"] == "5000"  # what a GET would have carried
    assert "content-length" not in responses[1][1]
    assert [s.body_bytes for s in seen] == [0, 0, 0, 7]
    assert raw.endswith(b"xxxxxxx")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-demo-status", "abc"),
        ("x-demo-status", "100"),
        ("x-demo-status", "700"),
        ("x-demo-bytes", "-3"),
        ("x-demo-bytes", "big"),
        ("x-demo-delay-ms", "soon"),
    ],
)
async def test_invalid_demo_header_is_a_400_naming_it(
    upstream: tuple[DemoUpstream, list[SeenRequest]],
    session: aiohttp.ClientSession,
    header: str,
    value: str,
) -> None:
    server, _ = upstream
    async with session.get(f"{server.url}/x", headers={header: value}) as resp:
        assert resp.status == 400
        doc = orjson.loads(await resp.read())
    assert doc["header"] == header
    assert doc["value"] == value
    assert doc["error"]
    assert server.stats.bad_requests == 1
    # The connection and the server keep serving.
    async with session.get(f"{server.url}/x") as resp:
        assert resp.status == 200


async def test_requesting_a_400_is_not_a_bad_request(
    upstream: tuple[DemoUpstream, list[SeenRequest]], session: aiohttp.ClientSession
) -> None:
    server, _ = upstream
    async with session.get(f"{server.url}/x", headers={"x-demo-status": "400"}) as resp:
        assert resp.status == 400
        assert orjson.loads(await resp.read())["status"] == 400
    assert server.stats.bad_requests == 0


async def test_healthz_ignores_demo_headers(
    upstream: tuple[DemoUpstream, list[SeenRequest]], session: aiohttp.ClientSession
) -> None:
    server, _ = upstream
    async with session.get(f"{server.url}/healthz", headers={"x-demo-status": "500"}) as resp:
        assert resp.status == 200
        assert orjson.loads(await resp.read()) == {"status": "ok", "pid": os.getpid()}


async def test_malformed_request_gets_400_json_and_close(
    upstream: tuple[DemoUpstream, list[SeenRequest]],
) -> None:
    server, _ = upstream
    responses = split_responses(await raw_exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n"))
    assert len(responses) == 1
    status, headers, body = responses[0]
    assert status == 400
    assert headers["connection"] == "close"
    assert orjson.loads(body)["error"].startswith("malformed HTTP request")


async def test_connect_is_refused(upstream: tuple[DemoUpstream, list[SeenRequest]]) -> None:
    server, _ = upstream
    raw = await raw_exchange(server.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert split_responses(raw)[0][0] == 405


async def test_pipelined_answers_keep_request_order_and_stop_at_close(
    upstream: tuple[DemoUpstream, list[SeenRequest]],
) -> None:
    server, seen = upstream
    raw = await raw_exchange(
        server.port,
        b"GET /1 HTTP/1.1\r\nHost: t\r\nx-demo-delay-ms: 80\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: t\r\nx-demo-bytes: 100000\r\n\r\n"
        b"POST /3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
        b"GET /never HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    responses = split_responses(raw)
    assert [orjson.loads(b)["path"] for s, _, b in responses if s == 200 and b.startswith(b"{")] == [
        "/1",
        "/3",
    ]
    assert [len(b) for _, _, b in responses][1] == 100_000
    assert [s.target for s in seen] == ["/1", "/2", "/3"]
    assert seen[2].received_bytes == 5


async def test_forwarded_headers_are_recorded(
    upstream: tuple[DemoUpstream, list[SeenRequest]], session: aiohttp.ClientSession
) -> None:
    server, seen = upstream
    headers = {"User-Agent": "curl/7.68.0", "X-Forwarded-For": "203.0.113.9"}
    async with session.get(f"{server.url}/who", headers=headers) as resp:
        await resp.read()
    assert (seen[0].user_agent, seen[0].forwarded_for) == ("curl/7.68.0", "203.0.113.9")


async def test_stop_finishes_answers_in_flight(session: aiohttp.ClientSession) -> None:
    server = DemoUpstream("127.0.0.1:0")
    await server.start()

    async def slow() -> tuple[int, int]:
        headers = {"x-demo-delay-ms": "300", "x-demo-bytes": "2000000"}
        async with session.get(f"{server.url}/slow", headers=headers) as resp:
            return resp.status, len(await resp.read())

    task = asyncio.create_task(slow())
    while server.stats.connections == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # let the request reach the server's delay
    await server.stop()
    assert await task == (200, 2_000_000)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.get(f"{server.url}/after") as resp:
            await resp.read()


def test_thread_runner_serves_synchronous_callers() -> None:
    seen: list[SeenRequest] = []
    with UpstreamThread(on_request=seen.append) as up:
        req = urllib.request.Request(f"{up.url}/sync", headers={"x-demo-bytes": "3"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.read() == b"xxx"
    assert [s.target for s in seen] == ["/sync"]


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:8081") == ("::1", 8081)
    for bad in ("8080", ":80", "host:", "host:70000", "host:x"):
        with pytest.raises(ValueError, match="host:port"):
            parse_listen(bad)


def test_cli_serves_and_rejects_a_bad_listen_address() -> None:
    port = free_port()
    with running(
        gatewatch_cmd("demo-upstream", "--listen", f"127.0.0.1:{port}"),
        ready_url=f"http://127.0.0.1:{port}/healthz",
    ):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/cli", headers={"x-demo-bytes": "11"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert len(resp.read()) == 11
    bad = subprocess.run(
        gatewatch_cmd("demo-upstream", "--listen", "nowhere"), capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2
    assert "expected host:port" in bad.stderr


async def test_an_oversized_request_head_gets_431_and_costs_no_memory(
    upstream: tuple[DemoUpstream, list[SeenRequest]],
) -> None:
    server, seen = upstream
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    try:
        for _ in range(64):  # 64 MiB offered; the server must stop reading long before
            writer.write(b"a" * (1 << 20))
            await writer.drain()
    except ConnectionError:
        pass
    answer = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b'"error":"request head larger than 131072 bytes"' in answer
    # A large but reasonable head (32 KiB of headers) is still fine.
    big = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 1000) for i in range(32))
    ok = await raw_exchange(
        server.port, b"GET /ok HTTP/1.1\r\nHost: x\r\n" + big + b"Connection: close\r\n\r\n"
    )
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
    assert [(s.target, s.status) for s in seen] == [("/", 431), ("/ok", 200)]
