"""Run a real Gateway (uvicorn + uvloop, both servers) in a background thread for a test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvloop

from sidecar_gateway.config import GatewayConfig
from sidecar_gateway.server import Gateway
from tests.support.procs import free_port


class RunningGateway:
    def __init__(self, gateway: Gateway, loop: asyncio.AbstractEventLoop) -> None:
        self.gateway = gateway
        self.loop = loop
        self.url = f"http://{gateway.config.listen}"
        self.admin_url = f"http://{gateway.config.admin_listen}"

    def call(self, fn: Any, *args: Any) -> Any:
        """Run a plain function on the gateway's loop (e.g. to read state) and return its result."""

        async def wrapper() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)


def make_config(routes: list[dict[str, Any]], **extra: Any) -> GatewayConfig:
    data: dict[str, Any] = {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "routes": routes,
        "telemetry": {"access_log": {"enabled": False}},
        "drain_seconds": 5,
    }
    data.update(extra)
    return GatewayConfig.model_validate(data)


@contextmanager
def gateway_thread(
    config: GatewayConfig, prepare: Callable[[Gateway], None] | None = None
) -> Iterator[RunningGateway]:
    """The gateway for ``config`` until the block ends (then stopped as on SIGTERM); ``prepare``
    may adjust it between construction and start."""
    loop = uvloop.new_event_loop()
    gateway_box: list[Gateway] = []
    started = threading.Event()
    stop_requested: asyncio.Event | None = None
    errors: list[BaseException] = []

    async def main() -> None:
        nonlocal stop_requested
        stop_requested = asyncio.Event()
        gw = Gateway(config)
        if prepare is not None:
            prepare(gw)
        gateway_box.append(gw)
        try:
            await gw.start()
        except BaseException as exc:  # surfaced to the test thread
            errors.append(exc)
            started.set()
            raise
        started.set()
        await stop_requested.wait()
        await gw.stop()

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    started.wait(15)
    if errors:
        raise errors[0]
    running = RunningGateway(gateway_box[0], loop)
    try:
        yield running
    finally:
        assert stop_requested is not None
        loop.call_soon_threadsafe(stop_requested.set)
        thread.join(20)
        loop.close()
