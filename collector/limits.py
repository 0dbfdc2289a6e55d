"""Cardinality limits: how many routes, and backends per route, the collector keeps. Pure: no I/O.

Every (route, backend) the collector has seen keeps a sketch in each window slot and in the
lifetime aggregate, and series in every ``/metrics`` scrape, for as long as the process runs. Names
come from the senders, so a misconfigured gateway (a route per raw path) or a hostile client could
otherwise grow memory and scrape time without bound (50,000 routes measured: RSS 60 -> 240 MB and
a 50 s ``/metrics`` that stalls the event loop). New names are admitted in the order they arrive
until a limit is reached; after that, events naming a new one are refused line by line, with a
reason, and counted. Known names are always accepted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from collector.ingest import ParsedBatch, Rejection
from collector.windows import BackendKey, BatchFigures


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # the config limit reached: one of gatewatch.catalog.REFUSAL_REASONS
    message: str  # "field: why", as a rejected line reports it


class CardinalityLimit:
    def __init__(self, max_routes: int, max_backends_per_route: int) -> None:
        self.max_routes = max_routes
        self.max_backends_per_route = max_backends_per_route
        self._backends: dict[str, set[str]] = {}  # admitted route -> its admitted backends

    @property
    def routes(self) -> int:
        return len(self._backends)

    def check(self, keys: Iterable[BackendKey]) -> dict[BackendKey, Refusal]:
        """Admit new keys while there is room, in the order given; return the refused ones.

        A key with no backend (the request reached none) counts toward the route limit only.
        """
        refused: dict[BackendKey, Refusal] = {}
        for route, backend in keys:
            known = self._backends.get(route)
            if known is None:
                if len(self._backends) >= self.max_routes:
                    refused[(route, backend)] = Refusal(
                        "max_routes",
                        f"gateway.route: {route!r} refused: the collector keeps at most "
                        f"{self.max_routes} routes (limits.max_routes in its config)",
                    )
                    continue
                known = self._backends[route] = set()
            if backend is None or backend in known:
                continue
            if len(known) >= self.max_backends_per_route:
                refused[(route, backend)] = Refusal(
                    "max_backends_per_route",
                    f"gateway.backend: {backend!r} refused: route {route!r} already has "
                    f"{self.max_backends_per_route} backends (limits.max_backends_per_route in the "
                    "collector's config)",
                )
                continue
            known.add(backend)
        return refused


def drop_refused(
    parsed: ParsedBatch,
    figures: BatchFigures,
    refused: Mapping[BackendKey, Refusal],
    max_reported: int,
) -> tuple[ParsedBatch, BatchFigures, Counter[str]]:
    """The batch without the refused events (each becomes a rejected line), the figures without
    their keys, and how many events were refused per reason."""
    out = ParsedBatch(rejected_total=parsed.rejected_total)
    by_reason: Counter[str] = Counter()
    new_rejections: list[Rejection] = []
    for event, line, number in zip(parsed.events, parsed.lines, parsed.numbers, strict=True):
        refusal = refused.get((event.route, event.backend))
        if refusal is None:
            out.events.append(event)
            out.lines.append(line)
            out.numbers.append(number)
            continue
        by_reason[refusal.reason] += 1
        out.rejected_total += 1
        if len(new_rejections) < max_reported:
            new_rejections.append(Rejection(number, refusal.message))
    out.rejected = sorted([*parsed.rejected, *new_rejections], key=lambda r: r.line)[:max_reported]
    kept = BatchFigures(
        {key: agg for key, agg in figures.aggregates.items() if key not in refused},
        {key: state for key, state in figures.circuit_states.items() if key not in refused},
    )
    return out, kept, by_reason
