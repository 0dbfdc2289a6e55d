"""Small PromQL building blocks shared by the dashboard and alert-rule generators.

Selectors are built from catalog specs (never from string literals), and durations are written
the way Prometheus writes them, so a rule built with a 5-minute window reads ``[5m]`` and the
same rule built with a 4-second window for a live test reads ``[4s]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from gatewatch.catalog import MetricSpec, MetricType

_UNITS: tuple[tuple[str, int], ...] = (
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
)
_DURATION_PART = re.compile(r"([0-9]+)(ms|[smhdwy])")


def format_duration(value: timedelta) -> str:
    """``timedelta(minutes=5)`` -> ``"5m"``, ``timedelta(seconds=90)`` -> ``"1m30s"``."""
    ms = round(value.total_seconds() * 1000)
    if ms <= 0:
        raise ValueError(f"a Prometheus duration must be positive, got {value}")
    parts: list[str] = []
    for unit, size in _UNITS:
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_duration(text: str) -> timedelta:
    """The inverse of :func:`format_duration` (Prometheus duration syntax)."""
    pos, ms = 0, 0
    sizes = dict(_UNITS)
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        ms += int(m.group(1)) * sizes[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return timedelta(milliseconds=ms)


@dataclass(frozen=True)
class Match:
    """One label matcher: ``label op "value"``."""

    label: str
    value: str
    op: str = "="

    def render(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


def eq(label: str, value: str) -> Match:
    return Match(label, value, "=")


def regex(label: str, value: str) -> Match:
    return Match(label, value, "=~")


def selector(series: str, *matchers: Match) -> str:
    """``series{a="1", b=~"2"}``; just ``series`` without matchers."""
    if not matchers:
        return series
    return series + "{" + ", ".join(m.render() for m in matchers) + "}"


def bucket(spec: MetricSpec) -> str:
    """The ``_bucket`` series of a histogram spec (fails loudly for any other type)."""
    if spec.type is not MetricType.HISTOGRAM:
        raise ValueError(f"{spec.name} is a {spec.type.value}, not a histogram")
    return f"{spec.name}_bucket"


def by(*labels: str) -> str:
    return "by (" + ", ".join(labels) + ")"
