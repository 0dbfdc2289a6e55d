"""The collector app in process (httpx over ASGI, lifespan run): ingest, stats, /metrics, store."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from collector.api import collector_state, create_app
from collector.config import CollectorConfig, StoreConfig
from collector.store.sqlite import SQLiteEventStore
from gatewatch.catalog import CATALOG, CIRCUIT_STATE_VALUES, Emitter
from tests.collector.helpers import (
    BACKENDS,
    ROUTES,
    event,
    exact_figures,
    ndjson,
    random_events,
    relative_error,
    wire,
)

NDJSON = {"content-type": "application/x-ndjson"}
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def running_app(
    tmp_path: Path, clock: Clock | None = None, max_body_bytes: int = 1024 * 1024
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    config = CollectorConfig(
        store=StoreConfig(path=tmp_path / "events.sqlite3"), max_body_bytes=max_body_bytes
    )
    app = create_app(config, clock=clock or Clock())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            yield client, app


async def test_good_batch_plain_gzip_by_header_and_gzip_by_magic(tmp_path: Path) -> None:
    events = random_events(300, seed=1)
    body = ndjson(events)
    async with running_app(tmp_path) as (client, _):
        r = await client.post("/v1/events", content=body[: len(body) // 2 + 1], headers=NDJSON)
        assert r.status_code == 400  # cut mid-line: the last line is broken
        r = await client.post("/v1/events", content=body, headers=NDJSON)
        assert (r.status_code, r.json()) == (200, {"accepted": 300})
        r = await client.post(
            "/v1/events", content=gzip.compress(body), headers={**NDJSON, "content-encoding": "gzip"}
        )
        assert (r.status_code, r.json()) == (200, {"accepted": 300})
        r = await client.post("/v1/events", content=gzip.compress(body))  # no headers at all
        assert (r.status_code, r.json()) == (200, {"accepted": 300})


async def test_mixed_batch_keeps_good_lines_and_names_every_bad_line(tmp_path: Path) -> None:
    good = [event(request_id=f"g-{i}", route="orders") for i in range(4)]
    lines = [
        good[0].to_json_bytes(),
        json.dumps({**wire(good[1]), "http.request.method": "GE T"}).encode(),
        good[1].to_json_bytes(),
        b"",
        b"not json at all",
        good[2].to_json_bytes(),
        json.dumps({**wire(good[3]), "gatewatch.schema_version": "2"}).encode(),
        good[3].to_json_bytes(),
    ]
    async with running_app(tmp_path) as (client, _):
        r = await client.post("/v1/events", content=b"\n".join(lines), headers=NDJSON)
        assert r.status_code == 400
        body = r.json()
        assert body["accepted"] == 4 and body["rejected_total"] == 3
        assert [x["line"] for x in body["rejected"]] == [2, 5, 7]
        assert body["rejected"][0]["error"].startswith("http.request.method: String should match pattern")
        assert body["rejected"][1]["error"].startswith("invalid JSON")
        assert body["rejected"][2]["error"] == "gatewatch.schema_version: Input should be '1'"

        stats = (await client.get("/api/v1/stats", params={"window": "total"})).json()
        assert stats["routes"]["orders"]["requests"] == 4  # the good lines count

        # Every line bad: nothing accepted, the list capped, the total exact.
        r = await client.post("/v1/events", content=b"{}\n" * 150, headers=NDJSON)
        assert r.status_code == 400
        assert (r.json()["accepted"], len(r.json()["rejected"]), r.json()["rejected_total"]) == (0, 100, 150)

        health = (await client.get("/healthz")).json()
        assert (health["events_ingested"], health["events_rejected"]) == (4, 153)


async def test_bad_bodies_get_json_errors_and_the_service_keeps_running(tmp_path: Path) -> None:
    async with running_app(tmp_path, max_body_bytes=4096) as (client, _):
        big = ndjson([event()] * 20)
        assert len(big) > 4096
        r = await client.post("/v1/events", content=big, headers=NDJSON)
        assert r.status_code == 413 and "larger than the limit of 4096 bytes" in r.json()["error"]

        async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for _ in range(20):
                yield event().to_json_bytes() + b"\n"

        r = await client.post("/v1/events", content=streamed(), headers=NDJSON)
        assert r.status_code == 413 and "larger than the limit" in r.json()["error"]

        bomb = gzip.compress(b"\n" * 100_000)
        r = await client.post("/v1/events", content=bomb, headers={**NDJSON, "content-encoding": "gzip"})
        assert r.status_code == 413 and "decompressed body is larger than 4096" in r.json()["error"]

        r = await client.post("/v1/events", content=b"hello", headers={**NDJSON, "content-encoding": "gzip"})
        assert r.status_code == 400 and "not valid gzip" in r.json()["error"]

        r = await client.post("/v1/events", data={"a": "b"})  # a form post
        assert r.status_code == 415 and "application/x-ndjson" in r.json()["error"]

        r = await client.post("/v1/events", content=b"x", headers={**NDJSON, "content-encoding": "br"})
        assert r.status_code == 415

        r = await client.get("/api/v1/stats", params={"window": "2m"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "window"]

        small = ndjson([event()])
        r = await client.post("/v1/events", content=small, headers=NDJSON)
        assert (r.status_code, r.json()) == (200, {"accepted": 1})
        assert (await client.get("/healthz")).json()["status"] == "ok"


async def test_stats_equal_exact_figures_computed_from_the_same_events(tmp_path: Path) -> None:
    events = random_events(6000, seed=42)
    clock = Clock()
    async with running_app(tmp_path, clock) as (client, app):
        for i in range(0, len(events), 1000):  # several batches, some gzip, one over the inline limit
            chunk = ndjson(events[i : i + 1000])
            content = gzip.compress(chunk) if i % 2000 else chunk
            r = await client.post("/v1/events", content=content, headers=NDJSON)
            assert r.json() == {"accepted": 1000}
        clock.now = T0 + 20.0
        default = (await client.get("/api/v1/stats")).json()
        total = (await client.get("/api/v1/stats", params={"window": "total"})).json()
        await collector_state(app).writer.flush()  # type: ignore[union-attr]

    assert default["window"] == "5m" and total["window"] == "total"
    errors_seen: list[float] = []
    for stats in (default, total):
        assert stats["window_seconds"] == 20.0  # the collector started at T0
        assert set(stats["routes"]) == set(ROUTES)
        for route, r in stats["routes"].items():
            mine = [e for e in events if e.route == route]
            exact = exact_figures(mine)
            assert (r["requests"], r["errors"], r["status_codes"]) == (
                exact.requests,
                exact.errors,
                exact.status_codes,
            )
            assert r["error_rate"] == exact.errors / exact.requests
            assert r["rps"] == exact.requests / 20.0
            for q in ("p50_ms", "p95_ms", "p99_ms"):
                err = relative_error(r[q], getattr(exact, q))
                errors_seen.append(err)
                assert err <= 0.01, (route, q, r[q], getattr(exact, q))
            assert set(r["backends"]) == set(BACKENDS)
            for backend, b in r["backends"].items():
                theirs = [e for e in mine if e.backend == backend]
                exact_b = exact_figures(theirs)
                assert (b["requests"], b["errors"], b["status_codes"]) == (
                    exact_b.requests,
                    exact_b.errors,
                    exact_b.status_codes,
                )
                for q in ("p50_ms", "p95_ms", "p99_ms"):
                    assert relative_error(b[q], getattr(exact_b, q)) <= 0.01
                last_state = [e.circuit_state for e in theirs if e.circuit_state][-1]
                assert b["circuit_state"] == last_state
    assert max(errors_seen) <= 0.005  # the configured accuracy, tighter than the 1% target

    # The store got every event, with the same counts per route and status.
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    assert store.count_by_route_status() == Counter((e.route, e.status) for e in events)
    store.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_render_the_same_figures_with_catalog_names(tmp_path: Path) -> None:
    events = random_events(1000, seed=5)
    clock = Clock()
    async with running_app(tmp_path, clock) as (client, _):
        r = await client.post("/v1/events", content=ndjson(events) + b"{}\n", headers=NDJSON)
        assert r.json()["accepted"] == 1000
        clock.now = T0 + 10.0
        stats = (await client.get("/api/v1/stats", params={"window": "1m"})).json()
        text = (await client.get("/metrics")).text

    got = samples(text)
    for name, labels in got:
        if name.startswith("process_"):
            continue  # prometheus_client's process collector (the catalog names the ones we chart)
        spec = CATALOG.spec_for_series(name)
        assert spec is not None and spec.emitter is Emitter.COLLECTOR, name
        assert {k for k, _ in labels} <= CATALOG.allowed_labels(name), name
    assert got[("gatewatch_collector_events_ingested_total", ())] == 1000
    assert got[("gatewatch_collector_events_rejected_total", ())] == 1
    assert set(stats["routes"]) == set(ROUTES)
    for route, r in stats["routes"].items():
        for backend, figures in [("", r), *r["backends"].items()]:
            labels = (("backend", backend), ("route", route), ("window", "1m"))
            assert got[("gatewatch_route_requests", labels)] == figures["requests"]
            assert got[("gatewatch_route_requests_per_second", labels)] == figures["rps"]
            assert got[("gatewatch_route_error_ratio", labels)] == figures["error_rate"]
            for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("0.99", "p99_ms")):
                qlabels = (("backend", backend), ("quantile", q), ("route", route), ("window", "1m"))
                assert got[("gatewatch_route_latency_seconds", qlabels)] * 1000 == figures[key]
            if backend:
                state = CIRCUIT_STATE_VALUES[figures["circuit_state"]]
                assert (
                    got[("gatewatch_backend_circuit_state", (("backend", backend), ("route", route)))]
                    == state
                )
    windows = {dict(labels)["window"] for name, labels in got if name == "gatewatch_route_requests"}
    assert windows == {"1m", "5m", "1h", "total"}


async def test_quiet_window_reports_zeros_not_nan(tmp_path: Path) -> None:
    clock = Clock()
    async with running_app(tmp_path, clock) as (client, _):
        await client.post("/v1/events", content=ndjson([event(route="orders")]), headers=NDJSON)
        clock.now = T0 + 120.0
        stats = (await client.get("/api/v1/stats", params={"window": "1m"})).json()
        text = (await client.get("/metrics")).text
    orders = stats["routes"]["orders"]
    assert (orders["requests"], orders["error_rate"], orders["rps"], orders["p99_ms"]) == (0, 0.0, 0.0, None)
    got = samples(text)
    labels = (("backend", ""), ("route", "orders"), ("window", "1m"))
    assert got[("gatewatch_route_error_ratio", labels)] == 0.0
    assert not any(n == "gatewatch_route_latency_seconds" and dict(lb)["window"] == "1m" for n, lb in got)
    assert "NaN" not in text


def test_many_apps_do_not_share_a_registry(tmp_path: Path) -> None:
    a = create_app(CollectorConfig(store=StoreConfig(path=tmp_path / "a.sqlite3")))
    b = create_app(CollectorConfig(store=StoreConfig(path=tmp_path / "b.sqlite3")))
    assert collector_state(a).registry is not collector_state(b).registry
