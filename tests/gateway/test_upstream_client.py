"""The upstream client against real sockets: keep-alive, framing edge cases, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from sidecar_gateway.upstream import (
    ConnectFailed,
    ConnectionClosed,
    ProtocolError,
    ResponseTruncated,
    UpstreamClient,
    UpstreamTimeout,
)
from sidecar_gateway.upstream.connection import READ_HIGH_WATER
from tests.gateway.rawserver import keepalive_responder, raw_server, read_head
from tests.support.procs import free_port


async def test_keepalive_connection_is_reused() -> None:
    async with raw_server(keepalive_responder(b"hello")) as srv:
        client = UpstreamClient()
        for _ in range(5):
            resp = await client.fetch("GET", srv.url + "/x")
            assert (resp.status, resp.body) == (200, b"hello")
        assert srv.connections == 1
        assert client.pool("127.0.0.1", srv.port).opened == 1
        client.close()


async def test_head_response_has_no_body_and_connection_stays_usable() -> None:
    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await read_head(reader):
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget")

    async with raw_server(handler) as srv:
        client = UpstreamClient()
        resp = await client.fetch("HEAD", srv.url)
        assert (resp.status, resp.header(b"content-length"), resp.body) == (200, b"100", b"")
        resp = await client.fetch("GET", srv.url)
        assert resp.body == b"get"
        assert srv.connections == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(status: int) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_head(reader):
            writer.write(b'HTTP/1.1 %d X\r\nETag: "1"\r\n\r\n' % status)

    async with raw_server(handler) as srv:
        client = UpstreamClient()
        for _ in range(2):
            resp = await client.fetch("GET", srv.url)
            assert (resp.status, resp.body) == (status, b"")
        assert srv.connections == 1


async def test_chunked_response_and_interim_100_is_skipped() -> None:
    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_head(reader):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            writer.write(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"5\r\nhello\r\n")
            await writer.drain()
            writer.write(b"6\r\n world\r\n0\r\n\r\n")

    async with raw_server(handler) as srv:
        client = UpstreamClient()
        resp = await client.fetch("GET", srv.url)
        assert (resp.status, resp.body) == (201, b"hello world")
        resp = await client.fetch("GET", srv.url)
        assert resp.body == b"hello world"
        assert srv.connections == 1


async def test_connection_close_is_not_pooled() -> None:
    async with raw_server(keepalive_responder(b"x", extra=b"Connection: close\r\n")) as srv:
        client = UpstreamClient()
        await client.fetch("GET", srv.url)
        assert client.pool("127.0.0.1", srv.port).idle_count == 0
        await client.fetch("GET", srv.url)
        assert srv.connections == 2


async def test_body_delimited_by_close() -> None:
    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async with raw_server(handler) as srv:
        resp = await UpstreamClient().fetch("GET", srv.url)
        assert resp.body == b"until the end"


# The body on the wire below: chunk framing, which llhttp undoes only for a final chunked.
_FRAMED = b"3\r\nabc\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("codings", "body", "forwarded"),
    [
        (b"chunked", b"abc", None),
        (b"Chunked ", b"abc", None),
        (b"gzip", _FRAMED, b"gzip"),  # not chunked last: delimited by the close
        (b"gzip, chunked", b"abc", b"gzip"),
        (b"gzip\r\nTransfer-Encoding: chunked", b"abc", b"gzip"),  # one list, in two fields
        (b"x-a;q=1 , ,\tgzip,chunked", b"abc", b"x-a;q=1, gzip"),
        # "chunked" other than last: its framing would stay in bytes nobody can tell apart.
        (b"chunked\r\nTransfer-Encoding: gzip", None, None),
        (b"chunked, chunked", None, None),  # applied twice; llhttp undoes one
        (b"chunked\t", None, None),  # llhttp takes a trailing tab as not chunked
    ],
)
async def test_a_body_is_framed_by_its_final_coding_and_keeps_the_others(
    codings: bytes, body: bytes | None, forwarded: bytes | None
) -> None:
    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: %b\r\n\r\n%b" % (codings, _FRAMED))
        await writer.drain()  # then closed by raw_server, which ends a close-delimited body

    async with raw_server(handler) as srv:
        client = UpstreamClient()
        if body is None:
            with pytest.raises(ProtocolError):
                await client.fetch("GET", srv.url, timeout=5)
            return
        resp = await client.fetch("GET", srv.url, timeout=5)
        assert resp.body == body
        assert [v for n, v in resp.headers if n == b"transfer-encoding"] == ([forwarded] if forwarded else [])


async def _first_answers_then_dies(
    index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Connection 0 answers one request, then closes when the next one arrives (an idle timeout
    racing with reuse); later connections behave."""
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
    await writer.drain()
    if index == 0:
        await read_head(reader)
        return  # close without answering
    while await read_head(reader):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater")


async def test_stale_pooled_connection_is_retried_once_for_idempotent_requests() -> None:
    async with raw_server(_first_answers_then_dies) as srv:
        client = UpstreamClient()
        assert (await client.fetch("GET", srv.url)).body == b"first"
        resp = await client.fetch("GET", srv.url)
        assert resp.body == b"first"  # answered on a fresh connection
        assert srv.connections == 2


async def test_stale_pooled_connection_is_not_retried_for_post() -> None:
    async with raw_server(_first_answers_then_dies) as srv:
        client = UpstreamClient()
        await client.fetch("POST", srv.url, body=b"1")
        with pytest.raises(ConnectionClosed):
            await client.fetch("POST", srv.url, body=b"2")


async def test_malformed_response_is_a_protocol_error() -> None:
    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"SPDY/9 nonsense\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with raw_server(handler) as srv:
        with pytest.raises(ProtocolError) as exc:
            await UpstreamClient().fetch("GET", srv.url)
        assert exc.value.reason == "upstream_protocol" and exc.value.status == 502


async def test_no_answer_times_out() -> None:
    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(5)

    async with raw_server(handler) as srv:
        with pytest.raises(UpstreamTimeout) as exc:
            await UpstreamClient().fetch("GET", srv.url, timeout=0.2)
        assert exc.value.status == 504


async def test_refused_connection() -> None:
    with pytest.raises(ConnectFailed) as exc:
        await UpstreamClient().fetch("GET", f"http://127.0.0.1:{free_port()}/")
    assert exc.value.reason == "upstream_refused" and exc.value.status == 502


async def test_reading_pauses_when_the_consumer_is_slow() -> None:
    total = 8 * 1024 * 1024
    payload = bytes(range(256)) * (total // 256)

    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        writer.write(payload)
        await writer.drain()
        await asyncio.sleep(1)

    async with raw_server(handler) as srv:
        client = UpstreamClient()
        pool = client.pool("127.0.0.1", srv.port)
        conn, _ = await pool.acquire(1)
        conn.begin(False)
        conn.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await conn.read_head(1)
        await asyncio.sleep(0.3)  # consumer busy; the server keeps sending
        # Bounded buffering: the high-water mark plus at most one socket read.
        assert conn._buffered <= READ_HIGH_WATER + 1024 * 1024
        received = bytearray()
        while chunk := await conn.read_body(2):
            received += chunk
        assert bytes(received) == payload
        pool.release(conn)
        assert pool.idle_count == 1


async def test_trailer_fields_are_not_response_headers() -> None:
    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_head(reader):
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: v\r\n\r\n"
            )

    async with raw_server(handler) as srv:
        client = UpstreamClient()
        for _ in range(2):
            resp = await client.fetch("GET", srv.url)
            assert (resp.status, resp.body, resp.header(b"x-t")) == (200, b"ok", None)
        assert srv.connections == 1  # the trailer section ended the message cleanly


def _answers_once(reply: bytes) -> Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Any]:
    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(1)  # connection kept open: only the bytes decide

    return handler


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 999 X\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 000 X\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
async def test_statuses_the_proxy_cannot_forward_are_protocol_errors(head: bytes) -> None:
    async with raw_server(_answers_once(head)) as srv:
        with pytest.raises(ProtocolError) as exc:
            await UpstreamClient().fetch("GET", srv.url, timeout=5)
        assert exc.value.reason == "upstream_protocol" and exc.value.status == 502


async def test_a_close_in_the_middle_of_the_body_is_a_truncated_response() -> None:
    async def handler(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()  # then closed by raw_server

    async with raw_server(handler) as srv:
        with pytest.raises(ResponseTruncated) as exc:
            await UpstreamClient().fetch("GET", srv.url)
        assert exc.value.reason == "upstream_truncated" and exc.value.status == 502
