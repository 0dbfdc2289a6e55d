"""Start real processes and servers on loopback, wait for them, and always stop them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI") == "true"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def require_binary(name: str) -> str:
    """Path of a system binary; a clear skip locally, a failure in CI (never a silent skip)."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (Debian package; ./dev test installs it when run as root)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def require_shared_data(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        msg = f"{path} is missing: the tests read ../shared/data beside the checkout"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers any HTTP status; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return
        except (OSError, urllib.error.URLError) as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def gatewatch_cmd(*args: str) -> list[str]:
    """The installed CLI, run with the test's interpreter."""
    return [sys.executable, "-m", "gatewatch.cli", *args]


@contextmanager
def running(
    cmd: Sequence[str],
    *,
    ready_url: str | None = None,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` until the block ends; SIGTERM then SIGKILL. Output goes to ``log``."""
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        list(cmd), stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd
    )
    try:
        if ready_url is not None:
            try:
                wait_http(ready_url, timeout, proc)
            except (TimeoutError, RuntimeError) as exc:
                detail = log.read_text(errors="replace")[-4000:] if log is not None else ""
                raise RuntimeError(f"{' '.join(cmd)}: {exc}\n{detail}") from None
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log is not None and out is not subprocess.DEVNULL:
            out.close()  # type: ignore[union-attr]
