"""The event shipper against a collector stand-in that enforces the ingest contract."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sidecar_gateway.config import CollectorSink
from sidecar_gateway.forwarding import TrustedProxies
from sidecar_gateway.records import RequestRecord, event_line
from sidecar_gateway.shipper import Shipper
from sidecar_gateway.upstream import UpstreamClient
from tests.gateway.collector_standin import Received, collector_app
from tests.support.procs import free_port

TRUSTED = TrustedProxies(["127.0.0.0/8"])


def lines(n: int, start: int = 0) -> list[bytes]:
    """n valid event lines; request ids are the running numbers, to check order and loss."""
    out = []
    for i in range(start, start + n):
        rec = RequestRecord(
            time.time(), 0.001, "api", "GET", 200, None, "127.0.0.1:1", 0.0005, 0, 2, "127.0.0.1", [],
            None, "/x", b"", str(i).encode(), "closed", 0,
        )  # fmt: skip
        out.append(event_line(rec, "test", TRUSTED))
    return out


def ids(received: Received) -> list[int]:
    return [int(e.request_id) for e in received.events]


@asynccontextmanager
async def serve(app: web.Application, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


def sink(port: int, **over: Any) -> CollectorSink:
    data: dict[str, Any] = {
        "url": f"http://127.0.0.1:{port}/v1/events",
        "batch_size": 500,
        "flush_interval": 60,
    }
    data.update(over)
    return CollectorSink.model_validate(data)


async def test_batches_are_gzip_ndjson_and_counted() -> None:
    port = free_port()
    received = Received()
    async with serve(collector_app(received), port):
        shipper = Shipper(sink(port), UpstreamClient())
        shipper.offer(lines(1200))
        await shipper.flush()
        assert received.posts == 3 and received.gzipped == 3 and received.bad_requests == 0
        assert ids(received) == list(range(1200))
        assert shipper.stats.shipped == 1200 and shipper.depth == 0


async def test_plain_ndjson_when_gzip_is_off() -> None:
    port = free_port()
    received = Received()
    async with serve(collector_app(received), port):
        shipper = Shipper(sink(port, gzip=False), UpstreamClient())
        shipper.offer(lines(10))
        await shipper.flush()
        assert (received.posts, received.gzipped, len(received.events)) == (1, 0, 10)


async def test_outage_spools_and_everything_arrives_once_in_order_when_back(tmp_path: Path) -> None:
    port = free_port()
    spool = tmp_path / "spool"
    shipper = Shipper(sink(port, spool_dir=str(spool), batch_size=100), UpstreamClient())
    dropped: list[tuple[str, int]] = []
    shipper._on_drop = lambda s, n: dropped.append((s, n))
    shipper.offer(lines(250))
    await shipper.flush()  # collector down: refused
    assert shipper.stats.failures >= 1
    assert shipper.depth == 250
    shipper.offer(lines(50, start=250))
    await shipper.stop()  # shutdown while still down: all of it goes to disk
    assert sum(int(p.name.split("-")[1].split(".")[0]) for p in spool.iterdir()) == 300
    assert not dropped

    # A restarted gateway resends what the last run spooled.
    received = Received()
    async with serve(collector_app(received), port):
        again = Shipper(sink(port, spool_dir=str(spool), batch_size=100), UpstreamClient())
        assert again.depth == 300
        again.offer(lines(5, start=300))
        await again.flush()
        assert ids(received) == list(range(305))
        assert again.depth == 0 and list(spool.iterdir()) == []


async def test_collector_5xx_is_retried_and_batches_kept_in_memory() -> None:
    port = free_port()
    received = Received(fail_with=503)
    async with serve(collector_app(received), port):
        shipper = Shipper(sink(port), UpstreamClient())
        shipper.offer(lines(20))
        await shipper.flush()
        assert shipper.depth == 20 and not received.events
        received.fail_with = None
        await shipper.flush()
        assert ids(received) == list(range(20)) and shipper.depth == 0


async def test_rejected_batch_is_logged_counted_and_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    received = Received()
    async with serve(collector_app(received), port):
        shipper = Shipper(sink(port), UpstreamClient())
        shipper.offer([*lines(3), b'{"not": "an event"}'])
        await shipper.flush()
        assert received.posts == 1
        assert (
            shipper.stats.shipped == 3 and shipper.stats.rejected_lines == 1 and shipper.stats.failures == 1
        )
        await shipper.flush()
        await shipper.stop()
        assert received.posts == 1  # never resent
        assert "collector rejected 1 of 4 events" in caplog.text


async def test_full_queue_drops_and_counts() -> None:
    dropped: list[tuple[str, int]] = []
    shipper = Shipper(
        sink(free_port(), queue_size=10), UpstreamClient(), on_drop=lambda s, n: dropped.append((s, n))
    )
    assert shipper.offer(lines(8)) == 0
    assert shipper.offer(lines(5)) == 3
    assert dropped == [("collector", 3)] and shipper.depth == 10


async def test_spool_is_bounded(tmp_path: Path) -> None:
    dropped: list[tuple[str, int]] = []
    shipper = Shipper(
        sink(free_port(), spool_dir=str(tmp_path), spool_max_bytes=3000, gzip=False, batch_size=5),
        UpstreamClient(),
        on_drop=lambda s, n: dropped.append((s, n)),
    )
    shipper.offer(lines(40))
    await shipper.stop()
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert 0 < on_disk <= 3000
    assert dropped and all(s == "spool" for s, _ in dropped)
    spooled = sum(int(p.name.split("-")[1].split(".")[0]) for p in tmp_path.iterdir())
    assert spooled + sum(n for _, n in dropped) == 40
