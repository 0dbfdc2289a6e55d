"""Active health checks: GET each target's health path on the route's interval.

Verdicts (with thresholds) live in the pure HealthState; this module only does the I/O.
A check passes on any 2xx or 3xx answer within the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sidecar_gateway.runtime import Backend, RouteRuntime
from sidecar_gateway.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)


async def check_once(client: UpstreamClient, backend: Backend, path: str, timeout: float) -> bool:
    url = f"http://{backend.host if ':' not in backend.host else f'[{backend.host}]'}:{backend.port}{path}"
    try:
        resp = await client.fetch(
            "GET", url, headers=[(b"user-agent", b"gatewatch-health-check")], timeout=timeout
        )
    except (UpstreamError, OSError):
        return False
    return 200 <= resp.status < 400


class HealthChecker:
    def __init__(self, routes: list[RouteRuntime], client: UpstreamClient) -> None:
        self.routes = routes
        self.client = client
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for route in self.routes:
            if route.config.health_check is None:
                continue
            for backend in route.backends:
                self._tasks.append(loop.create_task(self._loop(route, backend), name=f"health-{route.name}"))

    async def _loop(self, route: RouteRuntime, backend: Backend) -> None:
        hc = route.config.health_check
        assert hc is not None and backend.health is not None
        while True:
            passed = await check_once(self.client, backend, hc.path, hc.timeout)
            was = backend.health.healthy
            now = backend.health.record(passed)
            if was != now:
                log.warning(
                    "route %s target %s is now %s", route.name, backend.label, "healthy" if now else "DOWN"
                )
            await asyncio.sleep(hc.interval)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
