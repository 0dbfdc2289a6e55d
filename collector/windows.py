"""Sliding-window request statistics per route and per (route, backend). Pure: no I/O, no globals.

Each ingested batch is first folded into one small :class:`Aggregate` per (route, backend)
(counts, status codes, a latency sketch), then merged into

* a ring of 10 s slots (30 slots: the 1m and 5m windows),
* a ring of 60 s slots (60 slots: the 1h window; coarser so a query merges 60 slots, not 360),
* a lifetime aggregate (the ``total`` window, since the collector started).

A query merges the slots of its window (sketches merge exactly). A window of ``n`` slots covers
the current, partly filled slot and the ``n - 1`` before it, so "1m" holds between 50 and 60 s
of traffic; request rates divide by the time actually covered, never by a nominal 60 s.

Time is the moment the collector *received* a batch, from an injectable clock, not the event's
``@timestamp``. Events replayed from an old log, or delayed in a gateway's spool, therefore count
as traffic "now". That is the only choice that keeps the windows cheap and bounded (a late event
never reopens an evicted slot) and it matches what an on-call engineer watches: what the
collector has just learned. The stored events keep their own timestamps for the security checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from collector.sketch import QuantileSketch
from gatewatch.events import AccessEvent, CircuitState, is_failure

WindowName = Literal["1m", "5m", "1h", "total"]
WINDOW_NAMES: tuple[WindowName, ...] = get_args(WindowName)

Clock = Callable[[], float]  # epoch seconds
# (route, backend); backend None for events that reached no backend (no route, circuit open).
BackendKey = tuple[str, str | None]

FINE_SLOT_SECONDS = 10
FINE_SLOTS = 30
COARSE_SLOT_SECONDS = 60
COARSE_SLOTS = 60
NS_PER_SECOND = 1e9
# Rates divide by at least this many seconds, so a window that began a moment ago does not
# report an absurd rate from its first batch.
MIN_RATE_SPAN_SECONDS = 1.0


@dataclass(slots=True)
class Aggregate:
    """Figures for one key over some time: counts, status codes and a latency sketch (seconds)."""

    latency: QuantileSketch
    requests: int = 0
    errors: int = 0
    status_codes: dict[int, int] = field(default_factory=dict)

    @classmethod
    def empty(cls, relative_accuracy: float) -> Aggregate:
        return cls(QuantileSketch(relative_accuracy))

    def merge(self, other: Aggregate) -> None:
        self.requests += other.requests
        self.errors += other.errors
        codes = self.status_codes
        for code, n in other.status_codes.items():
            codes[code] = codes.get(code, 0) + n
        self.latency.merge(other.latency)


@dataclass(frozen=True, slots=True)
class BatchFigures:
    """One batch folded: an aggregate per (route, backend) and the last circuit state seen."""

    aggregates: dict[BackendKey, Aggregate]
    circuit_states: dict[tuple[str, str], CircuitState]


def fold_batch(events: Iterable[AccessEvent], relative_accuracy: float) -> BatchFigures:
    """One pass over a batch. The hot loop of ingest, so it avoids per-event method calls."""
    durations: dict[BackendKey, list[int]] = {}
    codes: dict[BackendKey, dict[int, int]] = {}
    errors: dict[BackendKey, int] = {}
    circuit: dict[tuple[str, str], CircuitState] = {}
    for e in events:
        key = (e.route, e.backend)
        d = durations.get(key)
        if d is None:
            d = durations[key] = []
            codes[key] = {}
            errors[key] = 0
        d.append(e.duration_ns)
        status = e.status
        c = codes[key]
        c[status] = c.get(status, 0) + 1
        # The cheap test skips the common success; the shared definition decides the rest.
        if (status >= 500 or e.error is not None) and is_failure(status, e.error):
            errors[key] += 1
        if e.circuit_state is not None and e.backend is not None:
            circuit[(e.route, e.backend)] = e.circuit_state  # later events in the batch win
    aggregates: dict[BackendKey, Aggregate] = {}
    for key, d in durations.items():
        sketch = QuantileSketch(relative_accuracy)
        sketch.add_many([ns / NS_PER_SECOND for ns in d])
        aggregates[key] = Aggregate(sketch, len(d), errors[key], codes[key])
    return BatchFigures(aggregates, circuit)


def merge_into(
    target: dict[BackendKey, Aggregate], source: Mapping[BackendKey, Aggregate], accuracy: float
) -> None:
    for key, agg in source.items():
        mine = target.get(key)
        if mine is None:
            mine = target[key] = Aggregate.empty(accuracy)
        mine.merge(agg)


class SlotRing:
    """The last ``slots`` time slots of ``slot_seconds`` each; older slots are dropped."""

    def __init__(self, slot_seconds: int, slots: int, relative_accuracy: float) -> None:
        self.slot_seconds = slot_seconds
        self.slots = slots
        self._accuracy = relative_accuracy
        self._by_index: dict[int, dict[BackendKey, Aggregate]] = {}

    def index(self, now: float) -> int:
        return int(now // self.slot_seconds)

    def add(self, now: float, aggregates: Mapping[BackendKey, Aggregate]) -> None:
        idx = self.index(now)
        slot = self._by_index.get(idx)
        if slot is None:
            slot = self._by_index[idx] = {}
            self._evict(idx)
        merge_into(slot, aggregates, self._accuracy)

    def _evict(self, current: int) -> None:
        oldest_kept = current - self.slots + 1
        for idx in [i for i in self._by_index if i < oldest_kept]:
            del self._by_index[idx]

    def collect(self, now: float, slots: int) -> tuple[dict[BackendKey, Aggregate], float]:
        """Merged figures of the current slot and the ``slots - 1`` before it, and the start time
        of the oldest of them."""
        if not 0 < slots <= self.slots:
            raise ValueError(f"a window of {slots} slots does not fit a ring of {self.slots}")
        current = self.index(now)
        oldest = current - slots + 1
        merged: dict[BackendKey, Aggregate] = {}
        for idx, slot in self._by_index.items():
            if oldest <= idx <= current:
                merge_into(merged, slot, self._accuracy)
        return merged, float(oldest * self.slot_seconds)

    def slot_indexes(self) -> list[int]:
        return sorted(self._by_index)


@dataclass(frozen=True, slots=True)
class RouteSnapshot:
    total: Aggregate  # every event of the route, including those that reached no backend
    backends: dict[str, Aggregate]


@dataclass(frozen=True, slots=True)
class WindowSnapshot:
    """Figures of one window at one moment. Every route and backend seen since the collector
    started is present (with zero counts when it had no traffic in the window)."""

    window: WindowName
    at: float  # epoch seconds
    span_seconds: float  # time the window's figures cover; the denominator of rates
    routes: dict[str, RouteSnapshot]
    circuit_states: dict[tuple[str, str], CircuitState]

    def rate(self, requests: int) -> float:
        return requests / max(self.span_seconds, MIN_RATE_SPAN_SECONDS)


# window name -> (ring, number of slots); "total" is the lifetime aggregate.
_RING_WINDOWS: dict[WindowName, tuple[Literal["fine", "coarse"], int]] = {
    "1m": ("fine", 60 // FINE_SLOT_SECONDS),
    "5m": ("fine", 300 // FINE_SLOT_SECONDS),
    "1h": ("coarse", 3600 // COARSE_SLOT_SECONDS),
}


class SlidingWindows:
    """All windows for all routes. Not thread-safe: the collector uses it from its event loop."""

    def __init__(self, relative_accuracy: float = 0.005, clock: Clock = time.time) -> None:
        self.relative_accuracy = relative_accuracy
        self._clock = clock
        self.started_at = clock()
        self._last_now = self.started_at
        self._fine = SlotRing(FINE_SLOT_SECONDS, FINE_SLOTS, relative_accuracy)
        self._coarse = SlotRing(COARSE_SLOT_SECONDS, COARSE_SLOTS, relative_accuracy)
        self._total: dict[BackendKey, Aggregate] = {}
        self._circuit: dict[tuple[str, str], CircuitState] = {}

    def _now(self) -> float:
        # A wall clock stepped backwards must not reopen old slots: time only moves forward here.
        self._last_now = max(self._last_now, self._clock())
        return self._last_now

    def add(self, events: Iterable[AccessEvent]) -> int:
        """Count a received batch at the current time. Returns the number of events."""
        figures = fold_batch(events, self.relative_accuracy)
        self.add_figures(figures)
        return sum(a.requests for a in figures.aggregates.values())

    def add_figures(self, figures: BatchFigures) -> None:
        now = self._now()
        self._fine.add(now, figures.aggregates)
        self._coarse.add(now, figures.aggregates)
        merge_into(self._total, figures.aggregates, self.relative_accuracy)
        self._circuit.update(figures.circuit_states)

    def circuit_states(self) -> dict[tuple[str, str], CircuitState]:
        """Last circuit state reported per (route, backend), in the order batches arrived."""
        return dict(self._circuit)

    def snapshot(self, window: WindowName) -> WindowSnapshot:
        now = self._now()
        if window == "total":
            merged: dict[BackendKey, Aggregate] = {}
            merge_into(merged, self._total, self.relative_accuracy)
            start = self.started_at
        else:
            ring_name, slots = _RING_WINDOWS[window]
            ring = self._fine if ring_name == "fine" else self._coarse
            merged, oldest = ring.collect(now, slots)
            start = max(oldest, self.started_at)
        routes: dict[str, RouteSnapshot] = {}
        for route, backend in sorted(self._total, key=lambda k: (k[0], k[1] or "")):
            snap = routes.get(route)
            if snap is None:
                snap = routes[route] = RouteSnapshot(Aggregate.empty(self.relative_accuracy), {})
            agg = merged.get((route, backend)) or Aggregate.empty(self.relative_accuracy)
            snap.total.merge(agg)
            if backend is not None:
                snap.backends[backend] = agg
        return WindowSnapshot(window, now, now - start, routes, dict(self._circuit))
