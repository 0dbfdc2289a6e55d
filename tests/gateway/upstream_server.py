"""A real upstream for the gateway tests: an aiohttp server in a background thread.

Endpoints:
  /echo           JSON of method, path, query, headers and body length/sha256
  /bytes?n=N      N bytes of a repeating pattern (``chunked=1`` streams without Content-Length)
  /upload         reads the body streaming; JSON of its length and sha256
  /status/CODE    answers with that status
  /slow?ms=N      waits N ms before answering
  /close          answers with Connection: close
  /healthz        200, or the status set through ``health_status``
It counts the TCP connections it accepted, to prove keep-alive reuse.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

PATTERN = bytes(range(256)) * 256  # 64 KiB; body bytes are PATTERN repeated


def pattern_bytes(n: int) -> bytes:
    reps = n // len(PATTERN) + 1
    return (PATTERN * reps)[:n]


@dataclass
class UpstreamStats:
    peers: set[tuple[str, int]] = field(default_factory=set)
    requests: int = 0
    health_status: int = 200

    @property
    def connections(self) -> int:
        return len(self.peers)


def _app(stats: UpstreamStats) -> web.Application:
    async def count(request: web.Request) -> None:
        stats.requests += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            stats.peers.add((peer[0], peer[1]))

    async def echo(request: web.Request) -> web.Response:
        await count(request)
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.raw_path.split("?", 1)[0],
                "query": request.query_string,
                "headers": [[k, v] for k, v in request.raw_headers_decoded()]
                if hasattr(request, "raw_headers_decoded")
                else [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            },
            headers={"X-Upstream": "yes", "Keep-Alive": "timeout=30", "Proxy-Authenticate": "Basic"},
        )

    async def echo_rid(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(text="rid", headers={"X-Request-ID": request.headers.get("X-Request-ID", "")})

    async def bytes_(request: web.Request) -> web.StreamResponse:
        await count(request)
        n = int(request.query.get("n", "0"))
        if request.query.get("chunked") == "1":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            data = pattern_bytes(n)
            for i in range(0, n, 100_000):
                await resp.write(data[i : i + 100_000])
            await resp.write_eof()
            return resp
        return web.Response(body=pattern_bytes(n), content_type="application/octet-stream")

    async def upload(request: web.Request) -> web.Response:
        await count(request)
        h = hashlib.sha256()
        total = 0
        async for chunk in request.content.iter_any():
            h.update(chunk)
            total += len(chunk)
        return web.json_response({"length": total, "sha256": h.hexdigest()})

    async def status(request: web.Request) -> web.Response:
        await count(request)
        code = int(request.match_info["code"])
        return web.Response(status=code, text="" if code in (204, 304) else f"status {code}")

    async def slow(request: web.Request) -> web.Response:
        await count(request)
        await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)
        return web.Response(text="slow")

    async def close(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(text="bye", headers={"Connection": "close"})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=stats.health_status, text="health")

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/api/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/echo-rid", echo_rid)
    app.router.add_get("/bytes", bytes_)
    app.router.add_post("/upload", upload)
    app.router.add_put("/upload", upload)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/close", close)
    app.router.add_get("/healthz", healthz)
    return app


@dataclass
class RunningUpstream:
    port: int
    stats: UpstreamStats

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def app_in_thread(app: web.Application, port: int = 0, keepalive_timeout: float = 75.0) -> Iterator[int]:
    """Serve an aiohttp app on a loopback port (free one by default) until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        runner = web.AppRunner(app, keepalive_timeout=keepalive_timeout, access_log=None)
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield bound
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@contextmanager
def upstream_server(keepalive_timeout: float = 75.0) -> Iterator[RunningUpstream]:
    """The test upstream on a free loopback port until the block ends."""
    stats = UpstreamStats()
    with app_in_thread(_app(stats), keepalive_timeout=keepalive_timeout) as port:
        yield RunningUpstream(port, stats)
