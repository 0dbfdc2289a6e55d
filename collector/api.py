"""The collector's HTTP API (FastAPI): ingest, stats, metrics, health.

  POST /v1/events          NDJSON access events (gzip allowed) -> 200 {"accepted": n}
                           or 400 {"accepted": n, "rejected": [...], "rejected_total": m}
  GET  /api/v1/stats       ?window=1m|5m|1h|total (default 5m) -> per-route figures
  GET  /metrics            the same figures for Prometheus, plus ingest counters
  GET  /healthz            liveness, with the store queue depth
  GET  /live               a small live view (one static page that polls /api/v1/stats)

Only glue lives here: decoding and validation are in :mod:`collector.ingest`, the windows in
:mod:`collector.windows`, the figures in :mod:`collector.stats`, the store behind
:class:`collector.store.writer.StoreWriter`.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from collector.config import CollectorConfig
from collector.ingest import (
    MAX_REPORTED_REJECTIONS,
    BodyError,
    ParsedBatch,
    check_content_encoding,
    check_content_type,
    decode_body,
    parse_ndjson,
)
from collector.limits import CardinalityLimit, drop_refused
from collector.metrics import IngestCounters, build_registry
from collector.stats import StatsResponse, build_stats
from collector.store import EventStore, open_store
from collector.store.writer import StoreWriter
from collector.windows import BatchFigures, Clock, SlidingWindows, WindowName, fold_batch

# Bodies above this size (a few dozen events, or a gzip body of a few hundred) are decoded and
# validated on a worker thread, so a large batch (~13 us of validation per event) does not stall
# /metrics and /healthz; smaller ones are cheaper inline than the thread hop (~100 us).
INLINE_BODY_BYTES = 16 * 1024


# The live view is one self-contained page (no external assets: it must work offline).
LIVE_PAGE = resources.files("collector").joinpath("live.html").read_text(encoding="utf-8")


class IngestAccepted(BaseModel):
    accepted: int


class RejectedLine(BaseModel):
    line: int
    error: str


class IngestRejected(BaseModel):
    accepted: int
    rejected: list[RejectedLine]
    rejected_total: int


class ErrorBody(BaseModel):
    error: str


class Health(BaseModel):
    status: str
    pid: int  # lets a supervisor (``gatewatch up``) tell its child from a process that took the port
    events_ingested: int
    events_rejected: int
    events_refused: int  # valid events refused by a cardinality limit (limits.* in the config)
    store_pending: int
    store_written: int


@dataclass
class CollectorState:
    config: CollectorConfig
    windows: SlidingWindows
    counters: IngestCounters
    registry: CollectorRegistry
    limit: CardinalityLimit
    writer: StoreWriter | None = None
    store: EventStore | None = field(default=None, repr=False)


def collector_state(app: FastAPI) -> CollectorState:
    state: CollectorState = app.state.collector
    return state


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(ErrorBody(error=message).model_dump(), status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"body of {declared} bytes is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _prepare(
    body: bytes, gzip_header: bool, max_bytes: int, accuracy: float, not_after: datetime
) -> tuple[ParsedBatch, BatchFigures]:
    """Decode, validate and fold a body: everything about a batch that needs no shared state."""
    parsed = parse_ndjson(decode_body(body, gzip_header, max_bytes), not_after=not_after)
    return parsed, fold_batch(parsed.events, accuracy)


def create_app(
    config: CollectorConfig, *, clock: Clock = time.time, store: EventStore | None = None
) -> FastAPI:
    """The collector app. ``clock`` drives the windows (tests inject one); ``store`` replaces the
    configured store (it is closed with the app)."""
    windows = SlidingWindows(config.sketch.relative_accuracy, clock)
    counters = IngestCounters()
    limit = CardinalityLimit(config.limits.max_routes, config.limits.max_backends_per_route)
    state = CollectorState(config, windows, counters, build_registry(windows, counters), limit, store=store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.store is None:
            state.store = await run_in_threadpool(open_store, config.store)
        state.writer = StoreWriter(
            state.store, retention=timedelta(days=config.store.retention_days), clock=clock
        )
        state.writer.start()
        try:
            yield
        finally:
            # Everything acknowledged is written before the store closes (SIGTERM comes here).
            await state.writer.close()

    app = FastAPI(title="gatewatch collector", lifespan=lifespan)
    app.state.collector = state

    @app.post(
        "/v1/events",
        response_model=IngestAccepted,
        responses={400: {"model": IngestRejected}, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}},
    )
    async def ingest(request: Request) -> Response:
        writer = state.writer
        if writer is None:
            return _error(503, "the collector is starting")
        try:
            check_content_type(request.headers.get("content-type"))
            gzip_header = check_content_encoding(request.headers.get("content-encoding"))
            body = await _read_body(request, config.max_body_bytes)
            # The real clock, not the windows' (injectable) one: this guards the store.
            not_after = datetime.fromtimestamp(time.time() + config.limits.max_future_seconds, UTC)
            args = (body, gzip_header, config.max_body_bytes, config.sketch.relative_accuracy, not_after)
            if len(body) > INLINE_BODY_BYTES:
                parsed, figures = await run_in_threadpool(_prepare, *args)
            else:
                parsed, figures = _prepare(*args)
        except BodyError as exc:
            return _error(exc.status, exc.message)
        # On the event loop, between awaits: admitting new names and counting them is atomic.
        refused_events = 0
        refused = limit.check(figures.aggregates)
        if refused:
            parsed, figures, by_reason = drop_refused(parsed, figures, refused, MAX_REPORTED_REJECTIONS)
            counters.refused.update(by_reason)
            refused_events = sum(by_reason.values())
        accepted = len(parsed.events)
        if accepted:
            windows.add_figures(figures)
            await writer.submit(parsed.events, parsed.lines)
        counters.ingested += accepted
        counters.rejected += parsed.rejected_total - refused_events  # schema problems only
        if parsed.rejected_total:
            rejected = IngestRejected(
                accepted=accepted,
                rejected=[RejectedLine(line=r.line, error=r.error) for r in parsed.rejected],
                rejected_total=parsed.rejected_total,
            )
            return JSONResponse(rejected.model_dump(), status_code=400)
        return JSONResponse(IngestAccepted(accepted=accepted).model_dump())

    @app.get("/api/v1/stats", response_model=StatsResponse)
    async def stats(
        window: Annotated[WindowName, Query(description="1m, 5m, 1h or total")] = "5m",
    ) -> StatsResponse:
        return build_stats(windows.snapshot(window))

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        writer = state.writer
        return Health(
            status="ok",
            pid=os.getpid(),
            events_ingested=counters.ingested,
            events_rejected=counters.rejected,
            events_refused=sum(counters.refused.values()),
            store_pending=writer.pending if writer else 0,
            store_written=writer.written if writer else 0,
        )

    @app.get("/live", response_class=HTMLResponse)
    async def live() -> HTMLResponse:
        return HTMLResponse(LIVE_PAGE, headers={"cache-control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/live")

    return app
