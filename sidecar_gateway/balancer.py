"""Smooth weighted round-robin (the nginx algorithm). Pure: no I/O, no globals.

Every pick adds each eligible target's weight to its running score, chooses the highest score
and subtracts the total eligible weight from it. Over any window of ``sum(weights)`` picks each
target is chosen exactly ``weight`` times, and heavy targets are interleaved rather than chosen
in bursts. Ineligible targets (open breaker, failed health check) are left out of that pick
without disturbing the others' scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class SmoothWRR:
    __slots__ = ("_current", "_weights")

    def __init__(self, weights: Sequence[int]) -> None:
        if not weights:
            raise ValueError("at least one target is needed")
        if any(w < 1 for w in weights):
            raise ValueError("weights must be >= 1")
        self._weights = tuple(weights)
        self._current = [0] * len(weights)

    def __len__(self) -> int:
        return len(self._weights)

    def pick(self, eligible: Callable[[int], bool] | None = None) -> int | None:
        """Index of the next target, or None when no target is eligible."""
        best = -1
        total = 0
        current = self._current
        for i, w in enumerate(self._weights):
            if eligible is not None and not eligible(i):
                continue
            current[i] += w
            total += w
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return None
        current[best] -= total
        return best
