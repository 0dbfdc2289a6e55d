"""The admin server: /metrics matches the catalog exactly; /healthz; procstats parsing."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gatewatch.catalog import CATALOG, Emitter, MetricType
from sidecar_gateway import procstats
from tests.gateway.gateway_thread import gateway_thread, make_config
from tests.gateway.helpers import request
from tests.gateway.upstream_server import RunningUpstream

pytestmark = pytest.mark.integration


def test_every_exposed_series_is_in_the_catalog_and_every_gateway_metric_is_exposed(
    upstream: RunningUpstream,
) -> None:
    routes = [{"name": "api", "path_prefix": "/", "upstreams": [{"address": upstream.address}]}]
    with gateway_thread(make_config(routes)) as gw:
        request(gw.url, "GET", "/status/500")
        request(gw.url, "GET", "/echo")
        text = urllib.request.urlopen(gw.admin_url + "/metrics").read().decode()
    seen: set[str] = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            spec = CATALOG.spec_for_series(s.name)
            if spec is None:
                # prometheus_client's process collector exposes a few more process_* gauges.
                assert s.name.startswith("process_"), s.name
                continue
            assert spec.emitter in (Emitter.GATEWAY, Emitter.PROCESS), s.name
            assert set(s.labels) == set(spec.series_labels(s.name)), s.name
            seen.add(spec.name)
            if spec.type is MetricType.HISTOGRAM and s.name.endswith("_bucket"):
                bounds = {float(b) for b in spec.buckets} | {float("inf")}
                assert float(s.labels["le"]) in bounds
    expected = {m.name for m in CATALOG.emitted_by(Emitter.GATEWAY)} | {
        m.name for m in CATALOG.emitted_by(Emitter.PROCESS)
    }
    assert expected <= seen, expected - seen


def test_healthz_and_unknown_admin_paths(upstream: RunningUpstream) -> None:
    routes = [{"name": "api", "path_prefix": "/", "upstreams": [{"address": upstream.address}]}]
    with gateway_thread(make_config(routes)) as gw:
        assert json.loads(urllib.request.urlopen(gw.admin_url + "/healthz").read()) == {
            "status": "ok",
            "pid": os.getpid(),  # the gateway runs in this process's thread
        }
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(gw.admin_url + "/nope")
        assert exc.value.code == 404


def test_cgroup_limit_parsing() -> None:
    assert procstats.parse_cgroup_limit("max\n") is None
    assert procstats.parse_cgroup_limit("536870912\n") == 536870912
    assert procstats.parse_cgroup_limit("9223372036854771712") is None  # cgroup v1 "unlimited"
    assert procstats.memory_limit_bytes(12345) == 12345
    assert procstats.memory_limit_bytes(None) > 0


def test_net_dev_and_io_parsing() -> None:
    net = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n"
        "    lo: 1000      10    0    0    0     0          0         0     2000      20    0 0 0 0 0 0\n"
        "  eth0: 300       3    0    0    0     0          0         0     400       4    0 0 0 0 0 0\n"
    )
    assert procstats.parse_net_dev(net) == (1300, 2400)
    io = "rchar: 5\nwchar: 6\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n"
    assert procstats.parse_proc_io(io) == (4096, 8192)
