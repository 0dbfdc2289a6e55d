"""Active health-check verdicts with thresholds. Pure: no I/O.

A target turns unhealthy after ``unhealthy_threshold`` consecutive failed checks and healthy
again after ``healthy_threshold`` consecutive passed checks. Targets start healthy so a
gateway that just started does not refuse traffic before the first check has run.
"""

from __future__ import annotations


class HealthState:
    __slots__ = ("_fails", "_passes", "healthy", "healthy_threshold", "unhealthy_threshold")

    def __init__(self, healthy_threshold: int, unhealthy_threshold: int) -> None:
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.healthy = True
        self._passes = 0
        self._fails = 0

    def record(self, passed: bool) -> bool:
        """Record one check result; return the (possibly changed) verdict."""
        if passed:
            self._fails = 0
            self._passes += 1
            if not self.healthy and self._passes >= self.healthy_threshold:
                self.healthy = True
        else:
            self._passes = 0
            self._fails += 1
            if self.healthy and self._fails >= self.unhealthy_threshold:
                self.healthy = False
        return self.healthy
