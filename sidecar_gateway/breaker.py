"""Consecutive-failure circuit breaker per upstream target. Pure: time is passed in.

closed --(failure_threshold consecutive failures)--> open
open --(open_seconds elapsed)--> half_open
half_open: up to half_open_max_requests probes at once; a probe success -> closed,
a probe failure -> open again (for another open_seconds).
"""

from __future__ import annotations

from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    __slots__ = ("_failures", "_opened_at", "_probes", "_state", "max_probes", "open_seconds", "threshold")

    def __init__(self, failure_threshold: int, open_seconds: float, half_open_max_requests: int = 1) -> None:
        self.threshold = failure_threshold
        self.open_seconds = open_seconds
        self.max_probes = half_open_max_requests
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0

    def state(self, now: float) -> State:
        if self._state == "open" and now - self._opened_at >= self.open_seconds:
            self._state = "half_open"
            self._probes = 0
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def can_try(self, now: float) -> bool:
        """Whether a request could be sent now, without reserving a probe slot."""
        state = self.state(now)
        return state == "closed" or (state == "half_open" and self._probes < self.max_probes)

    def acquire(self, now: float) -> bool:
        """Reserve the right to send one request; in half_open this takes a probe slot."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "half_open" and self._probes < self.max_probes:
            self._probes += 1
            return True
        return False

    def on_success(self, now: float) -> None:
        self._failures = 0
        if self.state(now) != "closed":
            self._state = "closed"
            self._probes = 0

    def on_failure(self, now: float) -> None:
        state = self.state(now)
        if state == "half_open":
            self._open(now)
            return
        if state == "open":
            return  # a request that started before the breaker opened; the timer keeps running
        self._failures += 1
        if self._failures >= self.threshold:
            self._open(now)

    def release(self, now: float) -> None:
        """A request that ended with neither verdict (e.g. the client went away)."""
        if self.state(now) == "half_open" and self._probes > 0:
            self._probes -= 1

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._probes = 0
        self._failures = 0
