"""The admin server: GET /metrics (Prometheus text exposition) and GET /healthz."""

from __future__ import annotations

import os
from collections.abc import Callable

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sidecar_gateway.app import Receive, Scope, Send


class AdminApp:
    def __init__(self, registry: CollectorRegistry, draining: Callable[[], bool]) -> None:
        self.registry = registry
        self.draining = draining
        # The pid lets a supervisor (``gatewatch up``) tell its own child from another process
        # that took the port first.
        self._ok = orjson.dumps({"status": "ok", "pid": os.getpid()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _respond(
                send, 405, b'{"error":"method_not_allowed"}', b"application/json", [(b"allow", b"GET")]
            )
        elif path == "/metrics":
            await _respond(send, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST.encode())
        elif path == "/healthz":
            if self.draining():
                await _respond(send, 503, b'{"status":"draining"}', b"application/json")
            else:
                await _respond(send, 200, self._ok, b"application/json")
        else:
            body = orjson.dumps({"error": "not_found", "path": path})
            await _respond(send, 404, body, b"application/json")


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
