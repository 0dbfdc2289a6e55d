"""Process resource figures for the gateway's /metrics: memory limit, network and disk bytes.

Parsing is pure (text in, numbers out) and tested on sample text; the readers are thin.
"""

from __future__ import annotations

import os
from pathlib import Path

_UNLIMITED = 1 << 60  # cgroup v1 writes a huge number for "no limit"


def parse_cgroup_limit(text: str) -> int | None:
    value = text.strip()
    if not value or value == "max":
        return None
    try:
        n = int(value)
    except ValueError:
        return None
    return n if 0 < n < _UNLIMITED else None


def parse_net_dev(text: str) -> tuple[int, int]:
    """Total (received, transmitted) bytes over every interface in /proc/net/dev format."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        if ":" not in line:
            continue
        fields = line.split(":", 1)[1].split()
        if len(fields) >= 9:
            rx += int(fields[0])
            tx += int(fields[8])
    return rx, tx


def parse_proc_io(text: str) -> tuple[int, int]:
    """(read_bytes, write_bytes) from /proc/<pid>/io: bytes that hit the storage layer."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            values[key.strip()] = int(value)
    return values.get("read_bytes", 0), values.get("write_bytes", 0)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def memory_limit_bytes(configured: int | None) -> int:
    """Configured limit, else the cgroup's (v2 then v1), else physical memory."""
    if configured is not None:
        return configured
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        text = _read(path)
        if text is not None:
            limit = parse_cgroup_limit(text)
            if limit is not None:
                return limit
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def network_bytes() -> tuple[int, int]:
    text = _read("/proc/self/net/dev")
    return parse_net_dev(text) if text is not None else (0, 0)


def disk_bytes() -> tuple[int, int]:
    text = _read("/proc/self/io")
    return parse_proc_io(text) if text is not None else (0, 0)
