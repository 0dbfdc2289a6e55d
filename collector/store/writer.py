"""The bridge from the event loop to a (blocking) event store: a background writer task.

Ingest hands each validated batch to :meth:`StoreWriter.submit` and answers its client; the
writer task takes everything pending (up to ``max_batch`` events), and stores it in one
transaction on a worker thread, so SQLite never blocks the loop and batches that arrive while a
write is running are coalesced into the next one. While ``max_pending`` events wait, ``submit``
waits too: a collector that cannot keep up slows its senders (whose queues and spools absorb
it) instead of dropping events or growing without bound.

A failed write is retried (with backoff) and nothing is dropped while the service runs.
:meth:`close` stores everything still pending before it closes the store; that is what SIGTERM
leads to. Events acknowledged but not yet written are lost only if the process is killed hard.

Retention runs here too, between writes, so deletes and inserts never contend for the write lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from collector.store import EventStore
from gatewatch.events import AccessEvent

log = logging.getLogger("gatewatch.collector.store")

RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
CLOSE_ATTEMPTS = 5  # at shutdown a store that keeps failing is given up on (loudly)


class StoreWriter:
    def __init__(
        self,
        store: EventStore,
        *,
        retention: timedelta | None = None,
        max_pending: int = 200_000,
        max_batch: int = 20_000,
        purge_interval: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.retention = retention
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.purge_interval = purge_interval
        self._clock = clock
        self._events: list[AccessEvent] = []
        self._docs: list[bytes] = []
        self._submitted = 0
        self._done = 0  # written or given up on: what flush() waits for
        self.written = 0
        self.lost = 0
        self.write_failures = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._next_purge = 0.0

    @property
    def pending(self) -> int:
        return len(self._events)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gatewatch-store-writer")

    async def submit(self, events: Sequence[AccessEvent], documents: Sequence[bytes]) -> None:
        """Queue a batch for the store; waits while the queue is full."""
        if self._closing:
            raise RuntimeError("the store writer is closed")
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._events) < self.max_pending or self._closing)
            self._events.extend(events)
            self._docs.extend(documents)
            self._submitted += len(events)
            self._changed.notify_all()

    async def flush(self) -> None:
        """Wait until every event submitted so far is in the store."""
        target = self._submitted
        async with self._changed:
            await self._changed.wait_for(lambda: self._done >= target or self._task is None)

    async def close(self) -> None:
        """Store everything pending, stop the task and close the store."""
        self._closing = True
        async with self._changed:
            self._changed.notify_all()
        if self._task is not None:
            await self._task
            self._task = None
        await asyncio.to_thread(self.store.close)

    async def _take(self) -> tuple[list[AccessEvent], list[bytes]] | None:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._events) or self._closing)
            if not self._events:
                return None  # closing and drained
            n = self.max_batch
            events, docs = self._events[:n], self._docs[:n]
            del self._events[:n], self._docs[:n]
            return events, docs

    async def _run(self) -> None:
        await self._purge_if_due()
        while (batch := await self._take()) is not None:
            await self._write(*batch)
            await self._purge_if_due()
        async with self._changed:
            self._changed.notify_all()

    async def _write(self, events: list[AccessEvent], docs: list[bytes]) -> None:
        attempt = 0
        stored = False
        while not stored:
            try:
                await asyncio.to_thread(self.store.append, events, docs)
                stored = True
            except Exception as exc:  # a full disk or a locked file must not kill the service
                self.write_failures += 1
                attempt += 1
                if self._closing and attempt >= CLOSE_ATTEMPTS:
                    log.error("shutting down: %d events could not be stored: %s", len(events), exc)
                    break
                delay = RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)]
                log.warning("storing %d events failed (%s); retrying in %.1fs", len(events), exc, delay)
                await asyncio.sleep(delay)
        async with self._changed:
            if stored:
                self.written += len(events)
            else:
                self.lost += len(events)
            self._done += len(events)
            self._changed.notify_all()

    async def _purge_if_due(self) -> None:
        if self.retention is None:
            return
        now = self._clock()
        if now < self._next_purge:
            return
        self._next_purge = now + self.purge_interval
        cutoff = datetime.fromtimestamp(now, UTC) - self.retention
        try:
            deleted = await asyncio.to_thread(self.store.purge_before, cutoff)
        except Exception as exc:
            log.warning("retention purge failed: %s", exc)
            return
        if deleted:
            log.info("retention: deleted %d events older than %s", deleted, cutoff.isoformat())
