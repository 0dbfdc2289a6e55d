"""The gateway's shipper against the REAL collector process (the gateway tests use a stand-in).

Every request through the gateway must end up counted by the collector exactly once: while the
collector is up, while it is down (the gateway spools and retries) and when the gateway is told
to stop right after a burst (its queue is flushed on SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.adversarial.stack import (
    Ports,
    collector_process,
    gateway_process,
    ingested,
    send_requests,
    stored_paths,
    upstream_process,
    wait_until,
    write_collector_config,
    write_gateway_config,
)

pytestmark = pytest.mark.integration


def test_every_request_arrives_once_across_a_collector_restart(tmp_path: Path) -> None:
    ports = Ports.pick()
    col_conf = write_collector_config(tmp_path, ports)
    gw_conf = write_gateway_config(tmp_path, ports)
    n, m = 120, 80
    with upstream_process(tmp_path, ports), gateway_process(tmp_path, ports, gw_conf):
        with collector_process(tmp_path, ports, col_conf, run=1) as collector:
            assert send_requests(ports.gateway, n, "first") == [200] * n
            assert wait_until("first batch", lambda: ingested(ports), n) == n
            collector.send_signal(signal.SIGTERM)
            assert collector.wait(30) in (0, -signal.SIGTERM)
        # Collector away: the gateway still answers, and keeps the events.
        assert send_requests(ports.gateway, m, "second") == [200] * m
        with collector_process(tmp_path, ports, col_conf, run=2):
            # A fresh process counts from zero: exactly the m events it missed, nothing resent twice.
            assert wait_until("spooled batch", lambda: ingested(ports), m, timeout=45) == m
    paths = stored_paths(tmp_path)
    assert len(paths) == n + m
    assert Counter(p.split("/")[1] for p in paths) == {"first": n, "second": m}
    assert len(set(paths)) == n + m  # no duplicates


def test_sigterm_right_after_a_burst_ships_every_event(tmp_path: Path) -> None:
    ports = Ports.pick()
    col_conf = write_collector_config(tmp_path, ports)
    # Long flush interval and big batches: nothing leaves before the shutdown flush.
    gw_conf = write_gateway_config(tmp_path, ports, flush_interval=30, batch_size=10_000)
    clients, each = 4, 60
    with upstream_process(tmp_path, ports), collector_process(tmp_path, ports, col_conf):
        with gateway_process(tmp_path, ports, gw_conf) as gateway:
            results: list[list[int]] = []
            threads = [
                threading.Thread(
                    target=lambda i=i: results.append(send_requests(ports.gateway, each, f"c{i}"))
                )
                for i in range(clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            gateway.send_signal(signal.SIGTERM)
            assert gateway.wait(30) == 0
        assert sorted(len(r) for r in results) == [each] * clients
        assert all(status == 200 for r in results for status in r)
        assert ingested(ports) == clients * each
    assert len(set(stored_paths(tmp_path))) == clients * each


def test_a_batch_larger_than_the_collectors_body_limit_is_not_lost(tmp_path: Path) -> None:
    ports = Ports.pick()
    # 4 KiB bodies at most: a gateway batch of 100 events (~40 KiB of NDJSON) is too large.
    col_conf = write_collector_config(tmp_path, ports, "max_body_bytes: 4096\n")
    gw_conf = write_gateway_config(tmp_path, ports, flush_interval=30, batch_size=100)
    n = 100
    with upstream_process(tmp_path, ports), collector_process(tmp_path, ports, col_conf):
        with gateway_process(tmp_path, ports, gw_conf) as gateway:
            assert send_requests(ports.gateway, n, "big") == [200] * n
            gateway.send_signal(signal.SIGTERM)
            assert gateway.wait(30) == 0
        # The gateway has exited, so every batch was answered: the count is final.
        assert ingested(ports) == n
