"""The SQLite event store and the background writer that feeds it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.store import StoreError
from collector.store.sqlite import SQLiteEventStore, epoch_ms
from collector.store.writer import StoreWriter
from gatewatch.events import AccessEvent
from tests.collector.helpers import BASE_TIME, event, random_events


def docs(events: Sequence[AccessEvent]) -> list[bytes]:
    return [e.to_json_bytes() for e in events]


def test_counts_and_time_range_iteration(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "sub" / "events.sqlite3")
    events = random_events(500, seed=3)  # 37 ms apart, from BASE_TIME
    store.append(events[:200], docs(events[:200]))
    store.append(events[200:], docs(events[200:]))
    assert store.count() == 500
    assert store.count_by_route_status() == Counter((e.route, e.status) for e in events)

    start, end = BASE_TIME + timedelta(seconds=1), BASE_TIME + timedelta(seconds=2)
    got = list(store.iter_events(start, end))
    assert got == [e for e in events if start <= e.timestamp < end]
    assert len(got) == 27  # 1000 ms / 37 ms, both ends checked by the comparison above
    store.close()

    # The file is self-contained after close and can be reopened.
    again = SQLiteEventStore(tmp_path / "sub" / "events.sqlite3")
    assert again.count() == 500
    again.close()


def test_rows_hold_utc_millis_normalised_ip_and_the_document(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "e.sqlite3")
    e = event(timestamp="2015-05-17T10:05:03.999999+02:00", source_ip="::ffff:203.0.113.9")
    store.append([e], [b'{"raw": "document text"}'])
    store.close()
    row = (
        sqlite3.connect(tmp_path / "e.sqlite3").execute("SELECT ts_ms, source_ip, doc FROM events").fetchone()
    )
    # 10:05:03.999999+02:00 is 08:05:03.999 UTC (floored to the millisecond, no float rounding)
    assert row[0] == int(datetime(2015, 5, 17, 8, 5, 3, tzinfo=UTC).timestamp()) * 1000 + 999
    assert row[1] == "203.0.113.9"
    assert row[2] == '{"raw": "document text"}'
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)) == 1


def test_purge_deletes_only_older_events(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "e.sqlite3")
    old = [event(timestamp=BASE_TIME - timedelta(days=40), request_id=f"old-{i}") for i in range(30)]
    new = [event(timestamp=BASE_TIME, request_id=f"new-{i}") for i in range(20)]
    store.append(old + new, docs(old + new))
    assert store.purge_before(BASE_TIME - timedelta(days=30)) == 30
    assert store.count() == 20
    store.close()


def test_a_newer_schema_is_refused_and_a_closed_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=9")
    conn.close()
    with pytest.raises(StoreError, match="schema version 9"):
        SQLiteEventStore(path)
    store = SQLiteEventStore(tmp_path / "ok.sqlite3")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.append([event()], docs([event()]))


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open event store"):
        SQLiteEventStore(blocker / "events.sqlite3")


# ---- the writer --------------------------------------------------------------------------------


class FlakyStore:
    """An EventStore that fails its first ``failures`` appends (a full disk that gets freed)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rows: list[bytes] = []
        self.batches = 0
        self.purged_before: list[datetime] = []
        self.closed = False

    def append(self, events: Sequence[AccessEvent], documents: Sequence[bytes]) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        self.batches += 1
        self.rows.extend(documents)

    def count(self) -> int:
        return len(self.rows)

    def count_by_route_status(self) -> dict[tuple[str, int], int]:
        return {}

    def iter_events(self, start: datetime, end: datetime) -> Iterator[AccessEvent]:
        return iter(())

    def purge_before(self, cutoff: datetime) -> int:
        self.purged_before.append(cutoff)
        return 0

    def close(self) -> None:
        self.closed = True


async def test_writer_retries_failed_writes_and_flushes_everything_on_close() -> None:
    store = FlakyStore(failures=2)
    writer = StoreWriter(store, retention=timedelta(days=30), clock=lambda: 86400.0 * 40)
    writer.start()
    batches = [random_events(50, seed=s) for s in range(5)]
    for b in batches:
        await writer.submit(b, docs(b))
    await writer.close()
    assert store.rows == [d for b in batches for d in docs(b)]  # all, in order, once
    assert writer.write_failures == 2 and writer.written == 250 and writer.lost == 0
    assert store.closed
    assert store.purged_before == [datetime(1970, 1, 11, tzinfo=UTC)]  # 40 days - 30 days


async def test_submit_waits_while_the_queue_is_full_and_flush_waits_for_the_store(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "e.sqlite3")
    writer = StoreWriter(store, max_pending=100, max_batch=1000)
    writer.start()
    events = random_events(1000, seed=9)
    await asyncio.gather(
        *(writer.submit(events[i : i + 100], docs(events[i : i + 100])) for i in range(0, 1000, 100))
    )
    await writer.flush()
    assert writer.pending == 0 and writer.written == 1000
    assert store.count() == 1000
    await writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        await writer.submit(events[:1], docs(events[:1]))
