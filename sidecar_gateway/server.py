"""Run the gateway: the proxy and the admin server in one process and one event loop.

``run(config)`` blocks until SIGTERM or SIGINT, then: stop accepting, finish in-flight requests
(up to ``drain_seconds``), ship or spool every queued telemetry event, close the access log,
stop the admin server, return (exit status 0).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import signal
import sys

import uvicorn
from prometheus_client import CollectorRegistry, ProcessCollector

from gatewatch.configfile import UnusableSetting, split_host_port
from sidecar_gateway import procstats
from sidecar_gateway.access_log import AccessLogWriter
from sidecar_gateway.admin import AdminApp
from sidecar_gateway.app import ProxyApp
from sidecar_gateway.config import GatewayConfig
from sidecar_gateway.forwarding import TrustedProxies
from sidecar_gateway.front import front_protocol
from sidecar_gateway.healthcheck import HealthChecker
from sidecar_gateway.metrics import GatewayCollector
from sidecar_gateway.runtime import build_routes
from sidecar_gateway.shipper import Shipper
from sidecar_gateway.telemetry import TelemetryHub
from sidecar_gateway.upstream import UpstreamClient

log = logging.getLogger("sidecar_gateway")

POOL_SWEEP_INTERVAL = 1.0
# Once drain_seconds have passed, the requests still in flight are cancelled: ProxyApp answers
# each (a JSON 503 when its response had not started) and records it; this bounds that step.
CUT_OFF_GRACE = 2.0
# uvicorn's own graceful-shutdown timeout for the proxy port, only a backstop behind ours: when
# it fires, uvicorn cancels what is left itself.
UVICORN_BACKSTOP_SECONDS = 10


def _uvicorn_server(
    app: object, listen: str, drain_seconds: int, http: type[asyncio.Protocol] | None = None
) -> uvicorn.Server:
    host, port = split_host_port(listen)
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        http=http or "httptools",
        ws="none",  # no WebSocket tunnelling (yet): an Upgrade request is proxied as plain HTTP
        lifespan="off",
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is judged by our trusted_proxies, not uvicorn's
        server_header=False,  # the upstream's Server and Date headers pass through
        date_header=False,
        log_config=None,
        timeout_graceful_shutdown=drain_seconds,
        timeout_keep_alive=30,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    return server


def _open_access_log(path: str) -> AccessLogWriter:
    try:
        return AccessLogWriter(path)
    except OSError as exc:
        raise UnusableSetting(
            ("telemetry", "access_log", "path"), f"cannot open {path} for appending: {exc.strerror or exc}"
        ) from None


class StartupError(Exception):
    """The gateway could not start (e.g. a listen address is taken)."""


class Gateway:
    """Everything one gateway process runs; start() then stop(), on the running loop."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.client = UpstreamClient()
        self.routes = build_routes(config, self.client)
        self.trusted = TrustedProxies(config.trusted_proxies)
        tel = config.telemetry
        # The files the config names are opened before anything listens; what the OS refuses is
        # reported against the setting (UnusableSetting), not as a traceback.
        self.access_log = _open_access_log(tel.access_log.path) if tel.access_log.enabled else None
        self.hub = TelemetryHub(config.instance_name, self.trusted, self.access_log)
        self.shipper: Shipper | None = None
        if tel.collector is not None:
            try:
                self.shipper = Shipper(tel.collector, self.client, on_drop=self.hub.count_dropped)
            except OSError as exc:  # only the spool directory touches the filesystem here
                if self.access_log is not None:
                    self.access_log.close()
                raise UnusableSetting(
                    ("telemetry", "collector", "spool_dir"),
                    f"cannot use {tel.collector.spool_dir} as the spool directory: {exc.strerror or exc}",
                ) from None
            self.hub.shipper = self.shipper
        # Every sink's drop counter exists from the start, so alerts see 0 rather than nothing.
        sinks = [
            "records",
            *(["access_log"] if self.access_log else []),
            *(["collector"] if self.shipper else []),
        ]
        if tel.collector is not None and tel.collector.spool_dir is not None:
            sinks.append("spool")
        for sink in sinks:
            self.hub.count_dropped(sink, 0)
        self.app = ProxyApp(self.routes, self.hub, self.trusted)
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(
            GatewayCollector(
                self.hub,
                self.routes,
                lambda: self.app.in_flight,
                procstats.memory_limit_bytes(tel.memory_limit_bytes),
                self.shipper,
            )
        )
        self.draining = False
        self.admin = AdminApp(self.registry, lambda: self.draining)
        self.health = HealthChecker(self.routes, self.client)
        # The proxy port speaks through FrontProtocol (fewer syscalls and timers per request than
        # uvicorn's own protocol); the admin port keeps uvicorn's.
        protocol = front_protocol(config.max_request_head_bytes, self.app.head_refused)
        backstop = math.ceil(config.drain_seconds) + UVICORN_BACKSTOP_SECONDS
        self.proxy_server = _uvicorn_server(self.app, config.listen, backstop, protocol)
        self.admin_server = _uvicorn_server(self.admin, config.admin_listen, 5)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind both servers and start the background tasks. Raises StartupError."""
        for server, listen in (
            (self.admin_server, self.config.admin_listen),
            (self.proxy_server, self.config.listen),
        ):
            try:
                await server.startup()  # uvicorn logs the bind error, then exits with SystemExit
            except SystemExit:
                await self._stop_servers()
                raise StartupError(f"cannot listen on {listen} (see the error above)") from None
        self.hub.start()
        if self.shipper is not None:
            self.shipper.start()
        self.health.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="pool-sweeper")
        log.info("gateway listening on %s (admin %s)", self.config.listen, self.config.admin_listen)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(POOL_SWEEP_INTERVAL)
            self.client.sweep()

    async def stop(self) -> None:
        """Graceful: no new connections, in-flight requests finish, telemetry is flushed."""
        self.draining = True
        log.info("draining: %d requests in flight", self.app.in_flight)
        if self.proxy_server.started:
            await self._drain_proxy()
        await self.health.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.hub.stop()
        if self.admin_server.started:
            await self.admin_server.shutdown()
        self.client.close()
        log.info("gateway stopped")

    async def _drain_proxy(self) -> None:
        """uvicorn's graceful shutdown of the proxy port (stop accepting, close idle connections,
        wait for the busy ones) under our deadline: after drain_seconds the requests still in
        flight are cancelled. ProxyApp answers and records each of them, so their events are
        flushed with the rest below, and the log gets one line rather than uvicorn's cancel
        followed by a CancelledError traceback and a 500 per request."""
        server = self.proxy_server
        shutdown = asyncio.get_running_loop().create_task(server.shutdown(), name="proxy-shutdown")
        done, _ = await asyncio.wait({shutdown}, timeout=self.config.drain_seconds)
        if not done:
            state = server.server_state
            tasks = list(state.tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=CUT_OFF_GRACE)
            # A connection with no request running (a head still arriving) would hold uvicorn's
            # wait until its backstop; its client gets nothing more from us anyway.
            for conn in list(state.connections):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.close()
            log.warning(
                "drain_seconds (%gs) passed with %d request(s) in flight: cut off and recorded as "
                "drain_timeout (answered 503 where the response had not started)",
                self.config.drain_seconds,
                len(tasks),
            )
        await shutdown

    async def _stop_servers(self) -> None:
        for server in (self.proxy_server, self.admin_server):
            if server.started:
                await server.shutdown()
        if self.access_log is not None:
            self.access_log.close()


async def serve(config: GatewayConfig) -> None:
    gateway = Gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
    except StartupError:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        raise
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await gateway.stop()


def _loop_factory() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(config: GatewayConfig) -> None:
    """Serve until SIGTERM/SIGINT; return after a graceful drain (the CLI then exits 0)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    # Per request the proxy allocates a few dozen short-lived containers, which refcounting
    # frees; with the default threshold (700) the cyclic GC still ran every few requests and
    # rescanned everything. Measured in-process: ~65 -> ~50 us of CPU per proxied request.
    gc.collect()
    gc.freeze()  # startup objects (modules, config, routes) are never collected anyway
    gc.set_threshold(50_000, 20, 20)
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        try:
            runner.run(serve(config))
        except StartupError as exc:
            print(f"gatewatch gateway: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
