"""A terminal progress bar for traffic runs (stderr, no dependency).

On a terminal the bar redraws in place with ``\\r``; elsewhere (CI logs, files) it prints a plain
line every few seconds instead, so logs stay readable. :func:`format_progress` is the pure part.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def format_progress(done: int, total: int | None, errors: int, elapsed: float, width: int = 24) -> str:
    """``[#####.....]  45%  4,500/10,000  3,210/s  ETA 2s  transport errors 0`` (no bar without a total)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    parts: list[str] = []
    if total is not None and total > 0:
        frac = min(1.0, done / total)
        filled = int(frac * width)
        parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {frac * 100:3.0f}%")
        parts.append(f"{done:,}/{total:,}")
        if done >= total:
            parts.append(f"in {_duration(elapsed)}")
        elif rate > 0:
            parts.append(f"ETA {_duration((total - done) / rate)}")
        else:
            parts.append("ETA --")
    else:
        parts.append(f"{done:,} done in {_duration(elapsed)}")
    parts.append(f"{rate:,.0f}/s")
    parts.append(f"transport errors {errors:,}")
    return "  ".join(parts)


class TerminalProgress:
    """A progress callback ``(done, total, errors)`` that draws on ``stream`` (stderr)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        label: str = "traffic",
        interval: float = 0.1,
        line_interval: float = 5.0,
        tty: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if self.tty else line_interval
        self._start = time.monotonic()
        self._last_draw = float("-inf")
        self._last: tuple[int, int | None, int] = (0, None, 0)
        self._drawn: tuple[int, int | None, int] | None = None
        self._width = 0

    def __call__(self, done: int, total: int | None, errors: int) -> None:
        self._last = (done, total, errors)
        now = time.monotonic()
        if now - self._last_draw < self.interval:
            return
        self._last_draw = now
        self._draw(now)

    def _draw(self, now: float, final: bool = False) -> None:
        if final and not self.tty and self._last == self._drawn:
            return  # the plain line for this state is already out
        self._drawn = self._last
        done, total, errors = self._last
        text = f"{self.label} {format_progress(done, total, errors, now - self._start)}"
        if self.tty:
            pad = " " * max(0, self._width - len(text))
            self._width = len(text)
            self.stream.write(f"\r{text}{pad}{chr(10) if final else ''}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        self._draw(time.monotonic(), final=True)
