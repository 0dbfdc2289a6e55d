"""Access events for the collector tests, and the exact figures computed without the collector."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gatewatch.events import AccessEvent

BASE_TIME = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
ROUTES = ("users", "orders", "static")
BACKENDS = ("10.0.0.1:8080", "10.0.0.2:8080")


def event(**overrides: Any) -> AccessEvent:
    """A valid event; keyword overrides use field names (not wire names)."""
    fields: dict[str, Any] = {
        "timestamp": BASE_TIME,
        "request_id": "r-1",
        "method": "GET",
        "path": "/api/users/1",
        "status": 200,
        "source_ip": "192.0.2.10",
        "duration_ns": 12_000_000,
        "outcome": "success",
        "instance": "gw-1",
        "route": "users",
        "backend": BACKENDS[0],
        "circuit_state": "closed",
    }
    fields.update(overrides)
    return AccessEvent.model_validate(fields)


def wire(e: AccessEvent) -> dict[str, Any]:
    import json

    out: dict[str, Any] = json.loads(e.to_json_bytes())
    return out


def random_events(n: int, seed: int) -> list[AccessEvent]:
    """A realistic mix: three routes, two backends, some events with no backend, 4xx and 5xx,
    gateway errors, a long-tailed latency with a few exact zeros."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        route = rng.choice(ROUTES)
        error = None
        backend: str | None = rng.choice(BACKENDS)
        status = rng.choices([200, 201, 304, 404, 429, 500, 503], [60, 5, 5, 10, 5, 10, 5])[0]
        if rng.random() < 0.03:
            status, error, backend = 503, "circuit_open", None
        elif rng.random() < 0.02:
            status, error = 499, "client_disconnect"
        duration = 0 if rng.random() < 0.005 else int(rng.lognormvariate(math.log(20e6), 1.0))
        out.append(
            event(
                timestamp=BASE_TIME + timedelta(milliseconds=37 * i),
                request_id=f"r-{seed}-{i}",
                route=route,
                backend=backend,
                status=status,
                error=error,
                duration_ns=duration,
                source_ip=f"198.51.100.{rng.randint(1, 40)}",
                circuit_state=rng.choice(["closed", "open", "half_open"]) if backend else None,
                outcome="failure" if status >= 500 else "success",
            )
        )
    return out


def ndjson(events: list[AccessEvent]) -> bytes:
    return b"".join(e.to_json_bytes() + b"\n" for e in events)


def exact_quantile(values: list[float], q: float) -> float:
    """0-based rank floor(q * (n - 1)) of the sorted values: the rank the sketch documents."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@dataclass(frozen=True)
class Exact:
    requests: int
    errors: int
    status_codes: dict[str, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float


def exact_figures(events: list[AccessEvent]) -> Exact:
    """Computed here from the raw fields, independently of the collector's code: a failure is a
    5xx, or a gateway error other than the client going away."""
    ms = [e.duration_ns / 1e6 for e in events]
    errors = sum(1 for e in events if e.status >= 500 or e.error not in (None, "client_disconnect"))
    codes = Counter(str(e.status) for e in events)
    return Exact(
        requests=len(events),
        errors=errors,
        status_codes=dict(codes),
        p50_ms=exact_quantile(ms, 0.5),
        p95_ms=exact_quantile(ms, 0.95),
        p99_ms=exact_quantile(ms, 0.99),
    )


def relative_error(got: float | None, exact: float) -> float:
    assert got is not None
    if exact == 0:
        return 0.0 if got == 0 else math.inf
    return abs(got - exact) / exact
