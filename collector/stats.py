"""The figures the collector reports, computed from a window snapshot. Pure: no I/O.

The JSON API (``/api/v1/stats``) answers with :class:`StatsResponse`; ``/metrics`` renders the
same :class:`Figures`, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from collector.windows import Aggregate, WindowName, WindowSnapshot
from gatewatch.events import CircuitState

QUANTILES: tuple[float, float, float] = (0.5, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class Figures:
    """Figures of one route or (route, backend) over one window. Latencies in seconds; None when
    there was no request (never NaN)."""

    requests: int
    errors: int
    error_rate: float  # 0.0 without traffic, so alerts and dashboards never see NaN
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None
    status_codes: dict[int, int]


def figures(agg: Aggregate, snapshot: WindowSnapshot) -> Figures:
    p50, p95, p99 = agg.latency.quantiles(QUANTILES)
    return Figures(
        requests=agg.requests,
        errors=agg.errors,
        error_rate=agg.errors / agg.requests if agg.requests else 0.0,
        rps=snapshot.rate(agg.requests),
        p50=p50,
        p95=p95,
        p99=p99,
        status_codes=dict(sorted(agg.status_codes.items())),
    )


# ---- the JSON API's response models --------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _FigureFields(_Out):
    """The figures every route and backend reports (see :class:`Figures`, in milliseconds)."""

    requests: int
    errors: int
    error_rate: float
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    status_codes: dict[str, int]


class BackendStats(_FigureFields):
    circuit_state: CircuitState | None  # last state a gateway reported; None if never reported


class RouteStats(_FigureFields):
    backends: dict[str, BackendStats]


class StatsResponse(_Out):
    window: WindowName
    generated_at: datetime
    window_seconds: float  # seconds of traffic the window actually covers (rates divide by it)
    routes: dict[str, RouteStats]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _common(f: Figures) -> dict[str, object]:
    return {
        "requests": f.requests,
        "errors": f.errors,
        "error_rate": f.error_rate,
        "rps": f.rps,
        "p50_ms": _ms(f.p50),
        "p95_ms": _ms(f.p95),
        "p99_ms": _ms(f.p99),
        "status_codes": {str(code): n for code, n in f.status_codes.items()},
    }


def build_stats(snapshot: WindowSnapshot) -> StatsResponse:
    routes: dict[str, RouteStats] = {}
    for name, route in snapshot.routes.items():
        backends = {
            backend: BackendStats.model_validate(
                {
                    **_common(figures(agg, snapshot)),
                    "circuit_state": snapshot.circuit_states.get((name, backend)),
                }
            )
            for backend, agg in route.backends.items()
        }
        routes[name] = RouteStats.model_validate(
            {**_common(figures(route.total, snapshot)), "backends": backends}
        )
    return StatsResponse(
        window=snapshot.window,
        generated_at=datetime.fromtimestamp(snapshot.at, UTC),
        window_seconds=snapshot.span_seconds,
        routes=routes,
    )
