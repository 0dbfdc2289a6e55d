"""The real gateway (uvicorn + uvloop, in a thread) in front of a real aiohttp upstream."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewatch.events import AccessEvent
from sidecar_gateway.config import GatewayConfig
from tests.gateway.gateway_thread import gateway_thread, make_config
from tests.gateway.helpers import garbage_server, host_port, read_until_closed, request, sample, scrape
from tests.gateway.upstream_server import RunningUpstream, pattern_bytes
from tests.support.procs import free_port

pytestmark = pytest.mark.integration


def one_route(address: str, **route: Any) -> list[dict[str, Any]]:
    return [{"name": "api", "path_prefix": "/", "upstreams": [{"address": address}], **route}]


def echo_headers(reply_json: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in reply_json["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def test_large_bodies_stream_both_ways(upstream: RunningUpstream) -> None:
    with gateway_thread(make_config(one_route(upstream.address))) as gw:
        conn = http.client.HTTPConnection(*host_port(gw.url), timeout=30)
        upload = pattern_bytes(6 * 1024 * 1024 + 7)
        r = request(gw.url, "POST", "/upload", body=upload, conn=conn)
        assert r.status == 200
        assert r.json() == {"length": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}

        def pieces() -> Iterator[bytes]:
            for i in range(0, len(upload), 300_001):
                yield upload[i : i + 300_001]

        r = request(gw.url, "PUT", "/upload", body=pieces(), conn=conn, chunked=True)
        assert r.json() == {"length": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}

        n = 5 * 1024 * 1024 + 3
        r = request(gw.url, "GET", f"/bytes?n={n}", conn=conn)
        assert r.headers["content-length"] == str(n)
        assert r.body == pattern_bytes(n)
        r = request(gw.url, "GET", f"/bytes?n={n}&chunked=1", conn=conn)
        assert r.headers.get("transfer-encoding") == "chunked"
        assert r.body == pattern_bytes(n)
        r = request(gw.url, "HEAD", "/bytes?n=1000", conn=conn)
        assert (r.status, r.headers["content-length"], r.body) == (200, "1000", b"")
        r = request(gw.url, "GET", "/status/204", conn=conn)
        assert (r.status, r.body) == (204, b"")
        # Everything above went over one client connection and one upstream connection.
        assert gw.gateway.routes[0].backends[0].pool.opened == 1


def test_headers_are_forwarded_rewritten_and_stripped(upstream: RunningUpstream) -> None:
    with gateway_thread(make_config(one_route(upstream.address))) as gw:
        r = request(
            gw.url,
            "GET",
            "/echo/some/path?q=1&q=2",
            headers={
                "X-Custom": "kept",
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "dropped",
                "Keep-Alive": "timeout=5",
                "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                "X-Forwarded-For": "198.51.100.7",
                "X-Request-ID": "req-123",
            },
        )
        assert r.status == 200
        got = r.json()
        assert got["method"] == "GET"
        assert got["path"] == "/echo/some/path"
        assert got["query"] == "q=1&q=2"
        h = echo_headers(got)
        assert h["x-custom"] == ["kept"]
        for hop in ("x-secret", "keep-alive", "proxy-authorization", "connection", "te", "transfer-encoding"):
            assert hop not in h, hop
        assert h["x-forwarded-for"] == ["198.51.100.7, 127.0.0.1"]
        assert h["x-forwarded-proto"] == ["http"]
        assert h["x-request-id"] == ["req-123"]
        # Response side: the upstream's hop-by-hop headers do not reach the client.
        assert r.headers["x-upstream"] == "yes"
        assert "keep-alive" not in r.headers and "proxy-authenticate" not in r.headers
        assert r.headers["x-request-id"] == "req-123"

        r = request(gw.url, "GET", "/echo-rid", headers={"X-Request-ID": "req-9"})
        assert r.headers["x-request-id"] == "req-9"  # echoed by the upstream; not doubled
        assert r.raw_headers.count(("x-request-id", "req-9")) == 1

        r = request(gw.url, "GET", "/echo", headers={"X-Request-ID": "bad id <script>"})
        rid = echo_headers(r.json())["x-request-id"][0]
        assert re.fullmatch(r"[0-9a-f]{32}", rid) and r.headers["x-request-id"] == rid


def test_strip_prefix_and_longest_prefix_routing(
    upstream: RunningUpstream, upstream2: RunningUpstream
) -> None:
    routes = [
        {"name": "root", "path_prefix": "/", "upstreams": [{"address": upstream.address}]},
        {
            "name": "svc",
            "path_prefix": "/svc",
            "strip_prefix": True,
            "upstreams": [{"address": upstream2.address}],
        },
    ]
    with gateway_thread(make_config(routes)) as gw:
        before = upstream2.stats.requests
        r = request(gw.url, "GET", "/svc/echo?x=1")
        assert r.json()["path"] == "/echo" and r.json()["query"] == "x=1"
        assert upstream2.stats.requests == before + 1
        assert (
            request(gw.url, "GET", "/svcx/echo").status == 404
        )  # not a segment match; root has no such path


def test_refused_upstream_is_502_json() -> None:
    with gateway_thread(make_config(one_route(f"127.0.0.1:{free_port()}"))) as gw:
        r = request(gw.url, "GET", "/x", headers={"X-Request-ID": "r1"})
        assert r.status == 502
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"error": "upstream_refused", "request_id": "r1"}
        m = scrape(gw.admin_url)
        assert sample(m, "backend_up", route="api", backend=gw.gateway.routes[0].backends[0].label) == 0


def test_slow_upstream_is_504_json(upstream: RunningUpstream) -> None:
    cfg = make_config(one_route(upstream.address, timeouts={"response": 0.2}))
    with gateway_thread(cfg) as gw:
        r = request(gw.url, "GET", "/slow?ms=3000")
        assert r.status == 504
        assert r.json()["error"] == "upstream_timeout"
        assert request(gw.url, "GET", "/slow?ms=0").status == 200


def test_unparsable_upstream_is_502_json() -> None:
    with garbage_server() as port, gateway_thread(make_config(one_route(f"127.0.0.1:{port}"))) as gw:
        r = request(gw.url, "GET", "/")
        assert r.status == 502
        assert r.json()["error"] == "upstream_protocol"


def test_unknown_path_is_404_json_on_unmatched(upstream: RunningUpstream) -> None:
    routes = [{"name": "api", "path_prefix": "/api", "upstreams": [{"address": upstream.address}]}]
    with gateway_thread(make_config(routes)) as gw:
        r = request(gw.url, "GET", "/nope", headers={"X-Request-ID": "abc"})
        assert r.status == 404
        assert r.json() == {"error": "no_route", "request_id": "abc"}
        m = scrape(gw.admin_url)
        assert sample(m, "http_requests_total", route="unmatched", method="GET", code="404") == 1


def test_upstream_keepalive_connections_are_reused(upstream: RunningUpstream) -> None:
    with gateway_thread(make_config(one_route(upstream.address))) as gw:
        before = upstream.stats.connections
        for _ in range(3):  # three client connections, sequential requests on each
            conn = http.client.HTTPConnection(*host_port(gw.url), timeout=10)
            for _ in range(10):
                assert request(gw.url, "GET", "/echo", conn=conn).status == 200
            conn.close()
        assert upstream.stats.connections - before == 1
        assert gw.gateway.routes[0].backends[0].pool.opened == 1


def test_upstream_connection_close_is_honoured(upstream: RunningUpstream) -> None:
    with gateway_thread(make_config(one_route(upstream.address))) as gw:
        for _ in range(3):
            assert request(gw.url, "GET", "/close").body == b"bye"
        assert gw.gateway.routes[0].backends[0].pool.opened == 3


def test_metrics_count_exactly(upstream: RunningUpstream) -> None:
    routes = [
        {"name": "api", "path_prefix": "/api", "upstreams": [{"address": upstream.address}]},
        {"name": "st", "path_prefix": "/status", "upstreams": [{"address": upstream.address}]},
    ]
    with gateway_thread(make_config(routes)) as gw:
        conn = http.client.HTTPConnection(*host_port(gw.url), timeout=10)
        for _ in range(7):
            assert request(gw.url, "GET", "/api/echo", conn=conn).status == 200
        for _ in range(2):
            assert request(gw.url, "POST", "/api/echo", body=b"x", conn=conn).status == 200
        for _ in range(3):
            assert request(gw.url, "GET", "/status/503", conn=conn).status == 503
        assert request(gw.url, "GET", "/status/404", conn=conn).status == 404
        assert request(gw.url, "PURGE", "/api/echo", conn=conn).status == 200
        for _ in range(2):
            assert request(gw.url, "GET", "/elsewhere", conn=conn).status == 404
        m = scrape(gw.admin_url)
        b = upstream.address
        assert sample(m, "http_requests_total", route="api", method="GET", code="200") == 7
        assert sample(m, "http_requests_total", route="api", method="POST", code="200") == 2
        assert sample(m, "http_requests_total", route="api", method="OTHER", code="200") == 1
        assert sample(m, "http_requests_total", route="st", method="GET", code="503") == 3
        assert sample(m, "http_requests_total", route="st", method="GET", code="404") == 1
        assert sample(m, "http_requests_total", route="unmatched", method="GET", code="404") == 2
        assert sample(m, "http_requests_errors_total", route="st", reason="upstream_5xx") == 3
        assert sample(m, "http_requests_errors_total", route="unmatched", reason="no_route") == 2
        assert sample(m, "http_request_duration_seconds_count", route="api", method="GET") == 7
        assert sample(m, "http_request_duration_seconds_bucket", route="api", method="GET", le="+Inf") == 7
        assert sample(m, "backend_response_time_seconds_count", route="api", backend=b) == 10
        assert sample(m, "backend_response_time_seconds_count", route="st", backend=b) == 4
        assert sample(m, "backend_up", route="api", backend=b) == 1
        assert sample(m, "circuit_breaker_state", route="api", backend=b) == 0
        assert sample(m, "active_connections") == 0
        assert (sample(m, "gateway_memory_limit_bytes") or 0) > 0
        assert sample(m, "gateway_process_network_bytes_total", direction="receive") is not None
        assert sample(m, "gateway_process_disk_bytes_total", direction="write") is not None
        assert (sample(m, "process_resident_memory_bytes") or 0) > 0
        assert sample(m, "gateway_telemetry_events_dropped_total", sink="records") == 0


def test_breaker_opens_then_admits_a_probe(upstream: RunningUpstream) -> None:
    cfg = make_config(
        one_route(upstream.address, circuit_breaker={"failure_threshold": 2, "open_seconds": 0.3})
    )
    with gateway_thread(cfg) as gw:
        assert request(gw.url, "GET", "/status/500").status == 500
        assert request(gw.url, "GET", "/status/500").status == 500
        r = request(gw.url, "GET", "/echo")
        assert (r.status, r.json()["error"]) == (503, "circuit_open")
        m = scrape(gw.admin_url)
        assert sample(m, "circuit_breaker_state", route="api", backend=upstream.address) == 1
        assert sample(m, "backend_up", route="api", backend=upstream.address) == 0
        assert sample(m, "http_requests_errors_total", route="api", reason="circuit_open") == 1
        time.sleep(0.35)  # let open_seconds pass (state, not timing, is asserted)
        assert request(gw.url, "GET", "/echo").status == 200  # the half-open probe succeeds
        m = scrape(gw.admin_url)
        assert sample(m, "circuit_breaker_state", route="api", backend=upstream.address) == 0


def test_weighted_round_robin_across_targets(upstream: RunningUpstream, upstream2: RunningUpstream) -> None:
    route = {
        "name": "api",
        "path_prefix": "/",
        "upstreams": [
            {"address": upstream.address, "weight": 3},
            {"address": upstream2.address, "weight": 1},
        ],
    }
    with gateway_thread(make_config([route])) as gw:
        a, b = upstream.stats.requests, upstream2.stats.requests
        for _ in range(8):
            assert request(gw.url, "GET", "/echo").status == 200
        assert (upstream.stats.requests - a, upstream2.stats.requests - b) == (6, 2)


def test_active_health_checks_drive_backend_up_and_routing(
    upstream: RunningUpstream, upstream2: RunningUpstream
) -> None:
    route = {
        "name": "api",
        "path_prefix": "/",
        "upstreams": [{"address": upstream.address}, {"address": upstream2.address}],
        "health_check": {"path": "/healthz", "interval": 0.05, "timeout": 1, "unhealthy_threshold": 1},
    }
    upstream2.stats.health_status = 500
    try:
        with gateway_thread(make_config([route])) as gw:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if sample(scrape(gw.admin_url), "backend_up", route="api", backend=upstream2.address) == 0:
                    break
                time.sleep(0.05)
            m = scrape(gw.admin_url)
            assert sample(m, "backend_up", route="api", backend=upstream2.address) == 0
            assert sample(m, "backend_up", route="api", backend=upstream.address) == 1
            a, b = upstream.stats.requests, upstream2.stats.requests
            for _ in range(6):
                assert request(gw.url, "GET", "/echo").status == 200
            assert (upstream.stats.requests - a, upstream2.stats.requests - b) == (6, 0)
    finally:
        upstream2.stats.health_status = 200


def test_access_log_lines_validate_as_access_events(upstream: RunningUpstream, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    cfg = make_config(
        one_route(upstream.address),
        telemetry={"access_log": {"enabled": True, "path": str(log)}},
        instance="gw-test",
    )
    with gateway_thread(cfg) as gw:
        request(gw.url, "GET", "/echo?a=b", headers={"X-Forwarded-For": "203.0.113.9", "User-Agent": "t/1"})
        request(gw.url, "POST", "/upload", body=b"12345")
        request(gw.url, "GET", "/status/502")
    # Stopping the gateway flushed the log.
    events = [AccessEvent.model_validate_json(line) for line in log.read_bytes().splitlines()]
    assert len(events) == 3
    first, second, third = events
    assert (first.method, first.path, first.query, first.status) == ("GET", "/echo", "a=b", 200)
    assert first.source_ip == "203.0.113.9"  # the peer (127.0.0.1) is a trusted proxy
    assert first.user_agent == "t/1" and first.instance == "gw-test" and first.route == "api"
    assert first.backend == upstream.address and first.circuit_state == "closed"
    assert first.upstream_duration_ns is not None and first.duration_ns >= first.upstream_duration_ns
    assert second.request_bytes == 5 and second.outcome == "success"
    assert (third.status, third.outcome, third.error) == (502, "failure", None)


def test_upstream_stalling_mid_body_hits_the_idle_timeout(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"
    with garbage_server(partial, hold=3) as port:
        cfg = make_config(
            one_route(f"127.0.0.1:{port}", timeouts={"idle": 0.3}),
            telemetry={"access_log": {"enabled": True, "path": str(log)}},
        )
        with gateway_thread(cfg) as gw:
            conn = http.client.HTTPConnection(*host_port(gw.url), timeout=10)
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 200  # the head was already on its way
            with pytest.raises(http.client.IncompleteRead):
                resp.read()
            m = scrape(gw.admin_url)
            assert sample(m, "http_requests_errors_total", route="api", reason="upstream_timeout") == 1
    (event,) = [AccessEvent.model_validate_json(x) for x in log.read_bytes().splitlines()]
    assert (event.status, event.error, event.outcome, event.response_bytes) == (
        200,
        "upstream_timeout",
        "failure",
        10,
    )


def logged_config(upstream: RunningUpstream, log: Path) -> GatewayConfig:
    """One route to ``upstream``, with the ECS access log written to ``log``."""
    return make_config(
        one_route(upstream.address), telemetry={"access_log": {"enabled": True, "path": str(log)}}
    )


def wait_until_idle(gw: Any, timeout: float = 20.0) -> None:
    """Until the gateway has no request in flight (its last records are then written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and gw.call(lambda: gw.gateway.app.in_flight) > 0:
        time.sleep(0.02)


def test_client_going_away_mid_download_is_recorded_and_upstream_connection_dropped(
    upstream: RunningUpstream, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    with gateway_thread(logged_config(upstream, log)) as gw:
        sock = socket.create_connection(host_port(gw.url))
        sock.sendall(b"GET /bytes?n=200000000&chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.close()
        wait_until_idle(gw)
        assert gw.call(lambda: gw.gateway.app.in_flight) == 0
        assert gw.gateway.routes[0].backends[0].pool.idle_count == 0  # a half-read response is not reusable
    (event,) = [AccessEvent.model_validate_json(x) for x in log.read_bytes().splitlines()]
    assert event.error == "client_disconnect" and event.outcome == "success"
    assert 0 < event.response_bytes < 200_000_000


def test_client_gone_before_the_response_head_is_recorded_as_a_disconnect_not_a_success(
    upstream: RunningUpstream, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    with gateway_thread(logged_config(upstream, log)) as gw:
        sock = socket.create_connection(host_port(gw.url))
        sock.sendall(b"GET /slow?ms=600 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        sock.close()  # gone while the upstream still thinks
        wait_until_idle(gw)
        metrics = scrape(gw.admin_url)
    (event,) = [AccessEvent.model_validate_json(x) for x in log.read_bytes().splitlines()]
    assert (event.status, event.error, event.response_bytes) == (499, "client_disconnect", 0)
    assert sample(metrics, "http_requests_total", route="api", method="GET", code="499") == 1
    assert sample(metrics, "http_requests_total", route="api", method="GET", code="200") is None


def test_control_characters_in_upstream_headers_give_502() -> None:
    with (
        garbage_server(b"HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\nok") as port,
        gateway_thread(make_config(one_route(f"127.0.0.1:{port}"))) as gw,
    ):
        r = request(gw.url, "GET", "/")
        assert (r.status, r.json()["error"]) == (502, "upstream_protocol")


def test_forwarded_headers_from_an_untrusted_peer_are_not_believed(
    upstream: RunningUpstream, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    cfg = make_config(
        one_route(upstream.address),
        trusted_proxies=["10.0.0.0/8"],  # the test client (127.0.0.1) is not a trusted proxy
        telemetry={"access_log": {"enabled": True, "path": str(log)}},
    )
    with gateway_thread(cfg) as gw:
        r = request(
            gw.url, "GET", "/echo", headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
        )
        h = echo_headers(r.json())
        assert h["x-forwarded-for"] == ["6.6.6.6, 127.0.0.1"]  # passed on, with the real peer appended
        assert h["x-forwarded-proto"] == ["http"]  # not taken from an untrusted peer
    (event,) = [AccessEvent.model_validate_json(x) for x in log.read_bytes().splitlines()]
    assert event.source_ip == "127.0.0.1"


def _raw_exchange(url: str, data: bytes) -> bytes:
    """Send raw bytes on a fresh connection and read until the gateway closes it."""
    with socket.create_connection(host_port(url), timeout=15) as s:
        s.sendall(data)
        return read_until_closed(s)


def test_request_trailers_are_not_forwarded_as_headers(upstream: RunningUpstream) -> None:
    with gateway_thread(make_config(one_route(upstream.address))) as gw:
        answer = _raw_exchange(
            gw.url,
            b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\nX-Request-ID: forged\r\n"
            b"Authorization: Bearer x\r\n\r\n",
        )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"forged" not in head
    got = json.loads(body)
    assert got["length"] == 5
    h = echo_headers(got)
    assert "authorization" not in h
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-request-id"] != ["forged"]


def test_a_fragment_is_not_forwarded(upstream: RunningUpstream) -> None:
    with gateway_thread(make_config(one_route(upstream.address))) as gw:
        answer = _raw_exchange(gw.url, b"GET /echo#frag HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["path"] == "/echo"
        answer = _raw_exchange(gw.url, b"GET /echo?a=1#frag HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        got = json.loads(answer.partition(b"\r\n\r\n")[2])
        assert (got["path"], got["query"]) == ("/echo", "a=1")


def test_routing_and_forwarding_use_one_normalised_path(
    upstream: RunningUpstream, upstream2: RunningUpstream, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    routes = [
        {
            "name": "raw",
            "path_prefix": "/raw",
            "strip_prefix": True,
            "upstreams": [{"address": upstream2.address}],
        },
        {"name": "demo", "path_prefix": "/demo", "upstreams": [{"address": upstream.address}]},
        {"name": "root", "path_prefix": "/", "upstreams": [{"address": upstream.address}]},
    ]
    cfg = make_config(routes, telemetry={"access_log": {"enabled": True, "path": str(log)}})
    with gateway_thread(cfg) as gw:
        conn = http.client.HTTPConnection(*host_port(gw.url), timeout=10)
        # An escaped unreserved character: the /raw route, and its prefix is stripped.
        r = request(gw.url, "GET", "/r%61w/echo", conn=conn)
        assert (r.status, r.json()["path"]) == (200, "/echo")
        # Encoded dot segments are dot segments: /demo/../raw is /raw.
        r = request(gw.url, "GET", "/demo/%2e%2E/raw/echo/x", conn=conn)
        assert (r.status, r.json()["path"]) == (200, "/echo/x")
        # An encoded slash is no segment boundary: neither /raw nor /demo, and forwarded as is.
        r = request(gw.url, "GET", "/echo/raw%2fsecret", conn=conn)
        assert (r.status, r.json()["path"]) == (200, "/echo/raw%2Fsecret")
        request(gw.url, "GET", "/raw%2fsecret", conn=conn)
        request(gw.url, "GET", "/demo%2f..%2fraw/x", conn=conn)
        # A request the front protocol refuses is routed (for its record) the same way.
        refused = _raw_exchange(gw.url, b"GET /r%61w/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 400 ")
    events = [AccessEvent.model_validate_json(x) for x in log.read_bytes().splitlines()]
    assert [(e.route, e.path) for e in events] == [
        ("raw", "/raw/echo"),  # url.path: the path the client asked for, decoded
        ("raw", "/demo/../raw/echo/x"),
        ("root", "/echo/raw/secret"),
        ("root", "/raw/secret"),
        ("root", "/demo/../raw/x"),
        ("raw", "/raw/x"),
    ]
    assert [e.backend for e in events[:2]] == [upstream2.address] * 2


def test_host_values_are_checked_and_an_absolute_form_authority_goes_upstream(
    upstream: RunningUpstream, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    with gateway_thread(logged_config(upstream, log)) as gw:
        for host in (b"a,b", b"a b", b"a/b", b"[::1"):
            answer = _raw_exchange(gw.url, b"GET /echo HTTP/1.1\r\nHost: %b\r\n\r\n" % host)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body)["error"] == "invalid_host", host
        answer = _raw_exchange(
            gw.url, b"GET http://evil.example/echo HTTP/1.1\r\nHost: good\r\nConnection: close\r\n\r\n"
        )
        got = json.loads(answer.partition(b"\r\n\r\n")[2])
        assert (got["path"], echo_headers(got)["host"]) == ("/echo", ["evil.example"])
    events = [AccessEvent.model_validate_json(x) for x in log.read_bytes().splitlines()]
    assert [(e.status, e.path, e.backend) for e in events] == [(400, "/echo", None)] * 4 + [
        (200, "/echo", upstream.address)
    ]
