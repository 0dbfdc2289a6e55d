"""Longest-prefix route matching. Pure: no I/O, no globals.

A prefix matches on path-segment boundaries: ``/api`` matches ``/api``, ``/api/`` and
``/api/users`` but not ``/apix``, so one route cannot silently swallow a sibling's traffic.
A prefix ending in ``/`` (including ``/`` itself) matches everything below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def prefix_matches(prefix: str, path: str) -> bool:
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] == "/"


@dataclass(frozen=True)
class _Entry(Generic[T]):
    prefix: str
    value: T


class Router(Generic[T]):
    """Maps a request path to the value of the longest matching prefix."""

    def __init__(self, entries: Sequence[tuple[str, T]]) -> None:
        # Longest first, so the first hit is the answer; stable for equal lengths (config order).
        ordered = sorted(entries, key=lambda e: len(e[0]), reverse=True)
        self._entries: tuple[_Entry[T], ...] = tuple(_Entry(p, v) for p, v in ordered)

    def match(self, path: str) -> T | None:
        for entry in self._entries:
            if prefix_matches(entry.prefix, path):
                return entry.value
        return None


def strip_prefix(prefix: str, raw_path: bytes) -> bytes:
    """The upstream path once the route prefix is removed; always starts with ``/``."""
    p = prefix.rstrip("/").encode()
    rest = raw_path[len(p) :] if raw_path.startswith(p) else raw_path
    if not rest.startswith(b"/"):
        rest = b"/" + rest
    return rest
