"""Collector ingest rate: events/s into the windows (sketches) and the SQLite store.

A benchmark, not a test. DESIGN.md's target: >= 50,000 events/s on one core. Two measurements:

1. ``pipeline``: the ingest work without HTTP, on this one thread: NDJSON validation
   (``parse_ndjson``), folding into sketches (``fold_batch`` + windows), SQLite insert. Prints
   the cost of each stage per event, so a regression points at its stage.
2. ``http``: the real collector process (``gatewatch collector``) pinned to one CPU, fed gzip
   NDJSON batches over keep-alive HTTP by client threads pinned to the other CPU(s). The rate is
   events stored (``/healthz`` store_written) over the wall time from the first request.

    .venv/bin/python bench/collector_ingest.py [--events 200000] [--batch 1000] [--mode both] [--repeat 3]

On a shared machine single runs vary by +-30%; ``--repeat`` runs the pipeline several times and
prints the median, which is what to compare before/after a change.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collector.ingest import parse_ndjson  # noqa: E402
from collector.server import tune_gc  # noqa: E402
from collector.store.sqlite import SQLiteEventStore  # noqa: E402
from collector.windows import SlidingWindows, fold_batch  # noqa: E402
from gatewatch.events import AccessEvent  # noqa: E402
from tests.support.procs import free_port, gatewatch_cmd, running  # noqa: E402

ROUTES = ("users", "orders", "auth", "static", "site")
BACKENDS = ("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080")
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0", "curl/8.5.0", "python-requests/2.31")


def make_lines(n: int, seed: int = 1) -> list[bytes]:
    """Realistic events as the gateway writes them (~600 bytes each, 2,000 distinct clients)."""
    rng = random.Random(seed)
    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        status = rng.choices([200, 304, 404, 500, 503], [80, 5, 8, 5, 2])[0]
        e = AccessEvent.model_construct(
            timestamp=t0 + timedelta(microseconds=700 * i),
            request_id=f"{rng.getrandbits(64):016x}",
            method=rng.choice(("GET", "GET", "POST")),
            path=f"/api/{rng.choice(ROUTES)}/{rng.randint(1, 5000)}",
            query=None,
            status=status,
            request_bytes=0,
            response_bytes=rng.randint(100, 50_000),
            source_ip=f"10.{rng.randint(0, 7)}.{rng.randint(0, 15)}.{rng.randint(1, 16)}",
            user_agent=rng.choice(AGENTS),
            duration_ns=int(rng.lognormvariate(16.5, 1.0)),
            outcome="failure" if status >= 500 else "success",
            trace_id=f"{rng.getrandbits(128):032x}",
            instance="gateway-1",
            route=rng.choice(ROUTES),
            backend=rng.choice(BACKENDS),
            upstream_duration_ns=int(rng.lognormvariate(16.3, 1.0)),
            circuit_state="closed",
            retries=0,
            error=None,
            auth_result="none",
            auth_subject=None,
            api_key_id=None,
            rate_limit="none",
        )
        out.append(e.to_json_bytes())
    return out


def bench_pipeline(lines: list[bytes], batch: int) -> float:
    tune_gc()  # as the collector process does
    bodies = [b"\n".join(lines[i : i + batch]) + b"\n" for i in range(0, len(lines), batch)]
    n = len(lines)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteEventStore(Path(tmp) / "events.sqlite3")
        windows = SlidingWindows(0.005)
        spent = {"validate": 0.0, "sketch": 0.0, "store": 0.0}
        t0 = time.perf_counter()
        for body in bodies:
            # thread_time: CPU spent by this thread, so other load on a shared machine does not
            # inflate the per-stage costs (SQLite runs on this thread here).
            a = time.thread_time()
            parsed = parse_ndjson(body)
            b = time.thread_time()
            windows.add_figures(fold_batch(parsed.events, 0.005))
            c = time.thread_time()
            store.append(parsed.events, parsed.lines)
            d = time.thread_time()
            spent["validate"] += b - a
            spent["sketch"] += c - b
            spent["store"] += d - c
        wall = time.perf_counter() - t0
        assert store.count() == n
        store.close()
    rate = n / wall
    print(f"pipeline (one thread, no HTTP): {n} events in {wall:.2f}s wall = {rate:,.0f} events/s")
    per_event = sum(spent.values()) / n
    print(f"  cpu {per_event * 1e6:.2f} us/event = {1 / per_event:,.0f} events/s per fully used core")
    for stage, secs in spent.items():
        print(f"  {stage:<9} {secs / n * 1e6:6.2f} us/event")
    return rate


def bench_http(lines: list[bytes], batch: int, clients: int, pin: bool) -> float:
    n = len(lines)
    bodies = [gzip.compress(b"\n".join(lines[i : i + batch]) + b"\n", 1) for i in range(0, n, batch)]
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpus = {cpus[0]}, set(cpus[1:]) or {cpus[0]}
    if not pin:
        server_cpu = client_cpus = set(cpus)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "collector.yaml"
        config.write_text(f"listen: 127.0.0.1:{port}\nstore:\n  path: {tmp}/events.sqlite3\n")
        log = Path(tmp) / "collector.log"
        with running(
            gatewatch_cmd("collector", "--config", str(config)),
            ready_url=f"http://127.0.0.1:{port}/healthz",
            log=log,
        ) as proc:
            os.sched_setaffinity(proc.pid, server_cpu)
            for tid in os.listdir(f"/proc/{proc.pid}/task"):  # threads started before pinning
                os.sched_setaffinity(int(tid), server_cpu)
            os.sched_setaffinity(0, client_cpus)
            queue = list(range(len(bodies)))
            lock = threading.Lock()
            failures: list[str] = []

            def client() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                headers = {"content-type": "application/x-ndjson", "content-encoding": "gzip"}
                while True:
                    with lock:
                        if not queue:
                            break
                        i = queue.pop()
                    conn.request("POST", "/v1/events", bodies[i], headers)
                    resp = conn.getresponse()
                    payload = resp.read()
                    if resp.status != 200:
                        failures.append(payload.decode(errors="replace"))
                conn.close()

            t0 = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            accepted_at = time.perf_counter() - t0
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while True:
                conn.request("GET", "/healthz")
                health = json.loads(conn.getresponse().read())
                if health["store_written"] >= n or failures:
                    break
                time.sleep(0.01)
            stored_at = time.perf_counter() - t0
            conn.close()
            os.sched_setaffinity(0, set(cpus))
        if failures:
            raise SystemExit(f"ingest failed: {failures[0][:500]}")
    print(
        f"http (collector {f'pinned to cpu {cpus[0]}' if pin else 'on all cpus'}, {clients} clients, "
        f"gzip batches of {batch}): "
        f"accepted {n / accepted_at:,.0f} events/s, stored {n / stored_at:,.0f} events/s"
    )
    return n / stored_at


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--mode", choices=("pipeline", "http", "both"), default="both")
    p.add_argument("--repeat", type=int, default=1, help="pipeline runs; the median is printed")
    p.add_argument("--no-pin", action="store_true", help="let the collector use every CPU (not one core)")
    args = p.parse_args()
    lines = make_lines(args.events)
    print(f"{len(lines)} events, {sum(map(len, lines)) / len(lines):.0f} bytes each on average")
    if args.mode in ("pipeline", "both"):
        rates = sorted(bench_pipeline(lines, args.batch) for _ in range(max(1, args.repeat)))
        if len(rates) > 1:
            print(f"pipeline median of {len(rates)} runs: {statistics.median(rates):,.0f} events/s")
    if args.mode in ("http", "both"):
        rate = bench_http(lines, args.batch, args.clients, pin=not args.no_pin)
        if not args.no_pin:
            verdict = "met" if rate >= 50_000 else "NOT met"
            print(f"target >= 50,000 events/s on one core: {verdict} ({rate:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
