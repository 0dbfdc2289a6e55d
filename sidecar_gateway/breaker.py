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
    """Each verdict names when its request was admitted (``admitted``, the ``now`` of its
    :meth:`acquire`): in open and half-open state only requests admitted since that state began
    speak for the upstream. A slow request admitted while the breaker was still closed, ending
    during half-open, is no probe: its success must not close the breaker, its failure must not
    reopen it, and its release must not hand back a slot that a real probe holds."""

    __slots__ = (
        "_failures",
        "_opened_at",
        "_probes",
        "_since",
        "_state",
        "max_probes",
        "open_seconds",
        "threshold",
    )

    def __init__(self, failure_threshold: int, open_seconds: float, half_open_max_requests: int = 1) -> None:
        self.threshold = failure_threshold
        self.open_seconds = open_seconds
        self.max_probes = half_open_max_requests
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._since = 0.0  # when the current state began (as first observed)
        self._probes = 0

    def state(self, now: float) -> State:
        if self._state == "open" and now - self._opened_at >= self.open_seconds:
            self._state = "half_open"
            self._since = now  # nothing is admitted while open, so no probe predates this
            self._probes = 0
        return self._state

    @property
    def since(self) -> float:
        """When the current state began; requests admitted before it are no probes of it."""
        return self._since

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

    def _speaks_now(self, state: State, admitted: float) -> bool:
        return state == "closed" or admitted >= self._since

    def on_success(self, now: float, admitted: float) -> None:
        state = self.state(now)
        if state == "closed":
            self._failures = 0
        elif self._speaks_now(state, admitted):
            self._state = "closed"
            self._since = now
            self._probes = 0
            self._failures = 0

    def on_failure(self, now: float, admitted: float) -> None:
        state = self.state(now)
        if state == "closed":
            self._failures += 1
            if self._failures >= self.threshold:
                self._open(now)
        elif state == "half_open" and self._speaks_now(state, admitted):
            self._open(now)
        # open: a request admitted before the breaker opened; the timer keeps running

    def release(self, now: float, admitted: float) -> None:
        """A request that ended with neither verdict (e.g. the client went away)."""
        state = self.state(now)
        if state == "half_open" and self._probes > 0 and self._speaks_now(state, admitted):
            self._probes -= 1

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._since = now
        self._probes = 0
        self._failures = 0
