"""Where ingested access events are kept: the EventStore protocol and its backends.

The embedded SQLite store (:mod:`collector.store.sqlite`) is the default; Elasticsearch can be
added later as another implementation of the same protocol. Stores are synchronous (SQLite and
the Elasticsearch client both block): the collector calls them from a worker thread through
:class:`collector.store.writer.StoreWriter`, never from its event loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

from collector.config import StoreConfig
from gatewatch.events import AccessEvent


class StoreError(Exception):
    """The store cannot be used: unreadable or unwritable location, unknown schema, closed."""


class EventStore(Protocol):
    def append(self, events: Sequence[AccessEvent], documents: Sequence[bytes]) -> None:
        """Store a batch in one transaction. ``documents[i]`` is the exact JSON text (ECS wire
        names) that ``events[i]`` was validated from."""

    def count(self) -> int:
        """Number of stored events."""

    def count_by_route_status(self) -> dict[tuple[str, int], int]:
        """Stored events per (route, status code)."""

    def iter_events(self, start: datetime, end: datetime) -> Iterator[AccessEvent]:
        """Events with ``start <= @timestamp < end`` in timestamp order (aware datetimes)."""

    def purge_before(self, cutoff: datetime) -> int:
        """Delete events with ``@timestamp < cutoff``; return how many were deleted."""

    def close(self) -> None:
        """Release the store. Appends are complete when ``append`` returns."""


def open_store(config: StoreConfig) -> EventStore:
    from collector.store.sqlite import SQLiteEventStore

    return SQLiteEventStore(config.path)
