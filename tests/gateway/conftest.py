from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.upstream_server import RunningUpstream, upstream_server


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningUpstream]:
    with upstream_server() as up:
        yield up


@pytest.fixture(scope="module")
def upstream2() -> Iterator[RunningUpstream]:
    with upstream_server() as up:
        yield up
