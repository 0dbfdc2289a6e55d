"""Ships access events to the collector as NDJSON batches, spooling them while it is away.

Order of sending: spooled files (oldest first), then batches kept in memory after a failure,
then new events. A batch is compressed once and kept as-is until the collector accepts it.
A 400 answer means the collector read the batch and rejected some lines: that batch is logged
and counted, never retried (resending it would fail the same way forever). A 413 answer means
the batch was larger than the collector's body limit: it is split in halves and each half is
sent again (down to single events; an event too large on its own is logged and counted lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from sidecar_gateway.config import CollectorSink
from sidecar_gateway.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)

MAX_MEMORY_BACKLOG_BYTES = 16 * 1024 * 1024
RETRY_MIN, RETRY_MAX = 0.25, 10.0
SEND_TIMEOUT = 10.0


@dataclass(frozen=True)
class Batch:
    payload: bytes  # NDJSON, gzip-compressed when ``gzip``
    count: int
    gzip: bool


@dataclass
class ShipperStats:
    shipped: int = 0  # events the collector accepted
    failures: int = 0  # batches the collector did not accept
    rejected_lines: int = 0  # lines a 400 answer rejected
    dropped: int = 0  # events given up on (queue full, backlog and spool full)


class Outcome:
    ACCEPTED, RETRY, REJECTED = "accepted", "retry", "rejected"
    # Split after a 413 and only partly sent before the collector went away: the batch itself is
    # done with, the parts not sent yet are at the front of the in-memory backlog.
    PARTIAL = "partial"
    TOO_LARGE = "too_large"  # 413: only between _post_once and _post


class Shipper:
    def __init__(
        self,
        sink: CollectorSink,
        client: UpstreamClient,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
        self.sink = sink
        self.url = str(sink.url)
        self.client = client
        self.stats = ShipperStats()
        self._on_drop = on_drop or (lambda sink, n: None)
        self._queue: deque[bytes] = deque()
        self._backlog: deque[Batch] = deque()
        self._backlog_bytes = 0
        self._spool = Spool(sink.spool_dir, sink.spool_max_bytes) if sink.spool_dir is not None else None
        self._wake = asyncio.Event()
        self._stopping = False
        self._retry_delay = 0.0
        self._task: asyncio.Task[None] | None = None

    # ---- producer side (event loop, cheap) ------------------------------------------------
    def offer(self, lines: list[bytes]) -> int:
        """Queue event lines; return how many were dropped because the queue was full."""
        room = self.sink.queue_size - len(self._queue)
        if room >= len(lines):
            self._queue.extend(lines)
            dropped = 0
        else:
            self._queue.extend(lines[: max(room, 0)])
            dropped = len(lines) - max(room, 0)
            self._drop("collector", dropped)
        if len(self._queue) >= self.sink.batch_size:
            self._wake.set()
        return dropped

    @property
    def depth(self) -> int:
        """Events not yet accepted: queued, kept in memory, and spooled."""
        spooled = self._spool.events if self._spool is not None else 0
        return len(self._queue) + sum(b.count for b in self._backlog) + spooled

    def _drop(self, sink: str, n: int) -> None:
        if n > 0:
            self.stats.dropped += n
            self._on_drop(sink, n)

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="event-shipper")

    async def stop(self) -> None:
        """Ship everything still queued; what cannot be shipped now is spooled (or counted lost)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._flush_all(final=True)

    async def flush(self) -> None:
        """One sending round now (what the background task does every flush_interval)."""
        await self._flush_all(final=False)

    async def _run(self) -> None:
        while not self._stopping:
            wait = self._retry_delay or self.sink.flush_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self._flush_all(final=False)
            except Exception:  # never let the shipper die; the next round tries again
                log.exception("event shipper round failed")

    # ---- sending --------------------------------------------------------------------------
    def _make_batch(self, lines: list[bytes]) -> Batch:
        body = b"\n".join(lines) + b"\n"
        if self.sink.gzip:
            body = gzip.compress(body, compresslevel=1)
        return Batch(body, len(lines), self.sink.gzip)

    def _take_lines(self) -> list[bytes]:
        n = min(self.sink.batch_size, len(self._queue))
        q = self._queue
        return [q.popleft() for _ in range(n)]

    async def _flush_all(self, final: bool) -> None:
        """Send in order while the collector accepts; on failure keep the rest for later."""
        healthy = True
        # Spooled batches first: they are the oldest.
        while healthy and self._spool is not None and self._spool.files:
            path, batch = self._spool.oldest()
            if batch is None:
                self._spool.remove(path)
                continue
            outcome = await self._post(batch)
            if outcome != Outcome.RETRY:
                self._spool.remove(path)
            healthy = outcome not in (Outcome.RETRY, Outcome.PARTIAL)
        while healthy and self._backlog:
            # Off the backlog while it is sent: a split batch puts its unsent parts at the front.
            batch = self._backlog.popleft()
            self._backlog_bytes -= len(batch.payload)
            outcome = await self._post(batch)
            if outcome == Outcome.RETRY:
                self._keep_first([batch])
            healthy = outcome not in (Outcome.RETRY, Outcome.PARTIAL)
        while healthy and self._queue and (final or len(self._queue) >= 1):
            batch = self._make_batch(self._take_lines())
            outcome = await self._post(batch)
            if outcome == Outcome.RETRY:
                self._keep(batch)
            healthy = outcome not in (Outcome.RETRY, Outcome.PARTIAL)
        if not healthy:
            # Collector away: move queued events into kept batches so the queue keeps room.
            while self._queue and (final or len(self._queue) >= self.sink.batch_size):
                self._keep(self._make_batch(self._take_lines()))
            if final:
                self._spool_backlog()
            self._retry_delay = min(RETRY_MAX, max(RETRY_MIN, self._retry_delay * 2))
        else:
            self._retry_delay = 0.0

    def _keep(self, batch: Batch) -> None:
        self._backlog.append(batch)
        self._backlog_bytes += len(batch.payload)
        while self._backlog_bytes > MAX_MEMORY_BACKLOG_BYTES and len(self._backlog) > 1:
            oldest = self._backlog.popleft()
            self._backlog_bytes -= len(oldest.payload)
            self._to_spool(oldest)

    def _keep_first(self, batches: list[Batch]) -> None:
        """Put batches back at the front of the backlog, in order (they are the oldest)."""
        for batch in reversed(batches):
            self._backlog.appendleft(batch)
            self._backlog_bytes += len(batch.payload)

    def _spool_backlog(self) -> None:
        while self._backlog:
            batch = self._backlog.popleft()
            self._backlog_bytes -= len(batch.payload)
            self._to_spool(batch)

    def _to_spool(self, batch: Batch) -> None:
        if self._spool is None:
            log.error("collector unreachable and no spool_dir: %d events lost", batch.count)
            self._drop("collector", batch.count)
        elif not self._spool.write(batch):
            log.error("spool %s is full: %d events lost", self._spool.root, batch.count)
            self._drop("spool", batch.count)

    async def _post(self, batch: Batch) -> str:
        """Send one batch; after a 413 its halves (and their halves...) in order."""
        outcome = await self._post_once(batch)
        if outcome != Outcome.TOO_LARGE:
            return outcome
        work = deque(self._halves(batch))  # the parts still to send, in event order
        while work:
            part = work.popleft()
            outcome = await self._post_once(part)
            if outcome == Outcome.TOO_LARGE:
                work.extendleft(reversed(self._halves(part)))
            elif outcome == Outcome.RETRY:
                # Keep the unsent parts (not the whole batch: some of it was accepted, and
                # the whole would only be refused again).
                work.appendleft(part)
                self._keep_first(list(work))
                return Outcome.PARTIAL
        return Outcome.ACCEPTED

    async def _post_once(self, batch: Batch) -> str:
        headers = [(b"content-type", b"application/x-ndjson")]
        if batch.gzip:
            headers.append((b"content-encoding", b"gzip"))
        try:
            resp = await self.client.fetch(
                "POST", self.url, headers=headers, body=batch.payload, timeout=SEND_TIMEOUT, retry_stale=True
            )
        except (UpstreamError, OSError) as exc:
            self.stats.failures += 1
            log.warning("shipping %d events to %s failed: %s", batch.count, self.url, exc)
            return Outcome.RETRY
        accepted = _accepted(resp.body)
        if resp.status == 200:
            self.stats.shipped += accepted if accepted is not None else batch.count
            return Outcome.ACCEPTED
        self.stats.failures += 1
        if resp.status == 413:
            return Outcome.TOO_LARGE
        if resp.status == 400 or (400 <= resp.status < 500 and resp.status not in (408, 429)):
            # Read and refused: resending the same bytes cannot succeed.
            self.stats.shipped += accepted or 0
            rejected = batch.count - (accepted or 0)
            self.stats.rejected_lines += rejected
            log.error(
                "collector rejected %d of %d events (HTTP %d): %s",
                rejected, batch.count, resp.status, resp.body[:500].decode("utf-8", "replace"),
            )  # fmt: skip
            return Outcome.REJECTED
        log.warning("collector answered HTTP %d for %d events; will retry", resp.status, batch.count)
        return Outcome.RETRY

    def _halves(self, batch: Batch) -> list[Batch]:
        """A batch the collector found too large (413) as two halves; a single event is lost."""
        lines = _lines_of(batch)
        if len(lines) <= 1:
            log.error(
                "collector refused a single event of %d bytes as larger than its body limit "
                "(HTTP 413): %d event lost",
                len(lines[0]) if lines else 0, batch.count,
            )  # fmt: skip
            self._drop("collector", batch.count)
            return []
        log.warning(
            "collector refused a batch of %d events (%d bytes) as too large (HTTP 413); "
            "sending it as two halves",
            len(lines), len(batch.payload),
        )  # fmt: skip
        mid = len(lines) // 2
        return [self._make_batch(lines[:mid]), self._make_batch(lines[mid:])]


def _lines_of(batch: Batch) -> list[bytes]:
    body = gzip.decompress(batch.payload) if batch.gzip else batch.payload
    return [line for line in body.split(b"\n") if line]


def _accepted(body: bytes) -> int | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = data.get("accepted") if isinstance(data, dict) else None
    return value if isinstance(value, int) and value >= 0 else None


class Spool:
    """Batches on disk while the collector is away: one file per batch, oldest sent first.

    File names carry a sequence number and the event count (``<seq>-<count>.ndjson[.gz]``), so
    a restarted gateway resends what an earlier run could not ship.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)
        # Written into only while the collector is away, often at shutdown: a directory we
        # cannot write into must fail the start (OSError), not lose those events later.
        probe = root / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
        self.files: list[Path] = sorted(
            (p for p in root.iterdir() if p.suffix in (".ndjson", ".gz") and not p.name.startswith(".")),
            key=lambda p: p.name,
        )
        self.bytes = sum(p.stat().st_size for p in self.files)
        self.events = sum(_count_of(p) for p in self.files)
        last = max((_seq_of(p) for p in self.files), default=0)
        self._seq = last + 1

    def write(self, batch: Batch) -> bool:
        if self.bytes + len(batch.payload) > self.max_bytes:
            return False
        name = f"{self._seq:020d}-{batch.count}.ndjson" + (".gz" if batch.gzip else "")
        self._seq += 1
        path = self.root / name
        tmp = self.root / f".{name}.tmp"
        tmp.write_bytes(batch.payload)
        os.replace(tmp, path)  # a crash never leaves half a batch under a real name
        self.files.append(path)
        self.bytes += len(batch.payload)
        self.events += batch.count
        return True

    def oldest(self) -> tuple[Path, Batch | None]:
        path = self.files[0]
        try:
            payload = path.read_bytes()
        except OSError:
            return path, None
        return path, Batch(payload, _count_of(path), path.name.endswith(".gz"))

    def remove(self, path: Path) -> None:
        self.files.remove(path)
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            size = 0
        self.bytes = max(0, self.bytes - size)
        self.events = max(0, self.events - _count_of(path))


def _seq_of(path: Path) -> int:
    head = path.name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _count_of(path: Path) -> int:
    parts = path.name.split("-", 1)
    if len(parts) != 2:
        return 0
    count = parts[1].split(".", 1)[0]
    return int(count) if count.isdigit() else 0
