"""A collector stand-in that enforces the ingest contract the shipper must meet.

POST NDJSON (``Content-Type: application/x-ndjson``, optionally ``Content-Encoding: gzip``);
every line must validate as an AccessEvent. Answers 200 {"accepted": n}, or 400
{"accepted": n, "rejected": [{"line": k, "error": "..."}]} when some lines are bad (the good
ones are kept, as the real collector does). ``fail_with`` makes it answer that status instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from pydantic import ValidationError

from gatewatch.events import AccessEvent


@dataclass
class Received:
    events: list[AccessEvent] = field(default_factory=list)
    posts: int = 0
    gzipped: int = 0
    bad_requests: int = 0
    fail_with: int | None = None


def collector_app(received: Received) -> web.Application:
    async def ingest(request: web.Request) -> web.Response:
        if received.fail_with is not None:
            return web.json_response({"error": "unavailable"}, status=received.fail_with)
        if request.content_type != "application/x-ndjson":
            received.bad_requests += 1
            return web.json_response({"error": "content type must be application/x-ndjson"}, status=415)
        # aiohttp inflates a Content-Encoding: gzip body itself (and fails on one that is not).
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            received.gzipped += 1
        received.posts += 1
        accepted = 0
        rejected = []
        for i, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                received.events.append(AccessEvent.model_validate_json(line))
                accepted += 1
            except ValidationError as exc:
                rejected.append({"line": i, "error": str(exc.errors()[0]["msg"])})
        if rejected:
            return web.json_response({"accepted": accepted, "rejected": rejected}, status=400)
        return web.json_response({"accepted": accepted})

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_post("/v1/events", ingest)
    return app
