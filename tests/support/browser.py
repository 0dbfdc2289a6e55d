"""Headless Chromium (Debian package) for screenshot and DOM tests of what people look at."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.procs import require_binary

# Flags for a closed network: without the background-networking ones Chromium keeps trying to
# reach Google's hosts and logs refused connections; --no-sandbox because tests run as root.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def _run(args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    chromium = require_binary("chromium")
    return subprocess.run(
        [chromium, *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def dump_dom(url: str, profile: Path, budget_ms: int = 4000, timeout: float = 60.0) -> str:
    """The DOM after the page's scripts ran for ``budget_ms`` of virtual time."""
    proc = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", url], profile, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def screenshot(
    url: str, out: Path, profile: Path, size: tuple[int, int] = (1280, 720), budget_ms: int = 4000
) -> Path:
    """A PNG of the page as a person would see it, after its scripts ran."""
    proc = _run(
        [
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={out}",
            url,
        ],
        profile,
        60.0,
    )
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"chromium --screenshot failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return out


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
