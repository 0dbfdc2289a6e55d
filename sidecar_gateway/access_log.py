"""The ECS JSON access log, written by a thread so a slow disk or a full stdout pipe never
stalls the event loop. The loop hands over one joined blob per telemetry flush; when the
bounded hand-over queue is full the blob's lines are counted as dropped instead.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from typing import BinaryIO

log = logging.getLogger(__name__)

_STOP = b""


class AccessLogWriter:
    def __init__(self, path: str, max_pending_blobs: int = 256) -> None:
        self.path = path
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=max_pending_blobs)
        self._stream: BinaryIO
        if path == "-":
            self._stream = sys.stdout.buffer
            self._owns = False
        else:
            self._stream = open(path, "ab")  # noqa: SIM115 - closed by the writer thread
            self._owns = True
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def submit(self, blob: bytes) -> bool:
        """Queue newline-terminated lines for writing; False when the queue is full."""
        if not blob:
            return True
        try:
            self._queue.put_nowait(blob)
        except queue.Full:
            return False
        return True

    def _run(self) -> None:
        while True:
            blob = self._queue.get()
            if blob is _STOP or not blob:
                break
            # Coalesce whatever else is waiting into the same write.
            parts = [blob]
            stop = False
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not more:
                    stop = True
                    break
                parts.append(more)
            try:
                self._stream.write(b"".join(parts))
                self._stream.flush()
            except (OSError, ValueError) as exc:
                log.error("access log write to %s failed: %s", self.path, exc)
            if stop:
                break
        if self._owns:
            self._stream.close()

    def close(self, timeout: float = 5.0) -> None:
        """Write everything queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
