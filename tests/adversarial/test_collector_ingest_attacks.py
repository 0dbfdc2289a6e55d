"""Hostile ingest bodies against the REAL collector process: each gets a precise 4xx JSON answer
(or is accepted when it is valid after all), and afterwards the service still answers /healthz and
still counts a good batch exactly."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.ingest import (
    MAX_LINES_PER_BATCH,
    MAX_REJECTED_PER_BATCH,
    MAX_REPORTED_REJECTIONS,
    BodyError,
    parse_ndjson,
)
from tests.collector.helpers import event, wire
from tests.support.procs import free_port, gatewatch_cmd, running

pytestmark = pytest.mark.integration

MAX_BODY = 64 * 1024
GOOD = event().to_json_bytes()
W = wire(event())


def line(**changes: Any) -> bytes:
    return json.dumps({**W, **changes}).encode()


class Collector:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self, method: str, path: str, body: bytes | Iterator[bytes] | None = None, **headers: str
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            chunked = body is not None and not isinstance(body, bytes)
            conn.request(method, path, body=body, headers=headers, encode_chunked=chunked)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def post(self, body: bytes | Iterator[bytes], **headers: str) -> tuple[int, Any]:
        headers.setdefault("content-type", "application/x-ndjson")
        return self.request("POST", "/v1/events", body, **headers)

    def health(self) -> dict[str, Any]:
        status, body = self.request("GET", "/healthz")
        assert status == 200
        return dict(body)


def start(tmp_path: Path, extra: str = "") -> Any:
    port = free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nstore:\n  path: {tmp_path / 'events.sqlite3'}\n"
        f"max_body_bytes: {MAX_BODY}\n{extra}"
    )
    return port, running(
        gatewatch_cmd("collector", "--config", str(config)),
        ready_url=f"http://127.0.0.1:{port}/healthz",
        log=tmp_path / "collector.log",
    )


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    port, proc = start(tmp_path_factory.mktemp("collector"))
    with proc:
        yield Collector(port)


def far_future() -> str:
    return (datetime.now(UTC) + timedelta(days=400)).isoformat()


# (name, body, headers, expected status, expected JSON subset: "accepted" and the first rejection)
ATTACKS: list[tuple[str, bytes, dict[str, str], int, dict[str, Any]]] = [
    ("malformed_json", b"{not json\n", {}, 400, {"accepted": 0, "error": "invalid JSON"}),
    ("array_line", b"[1, 2]\n", {}, 400, {"accepted": 0, "error": "Input should be an object"}),
    ("string_line", b'"x"\n', {}, 400, {"accepted": 0, "error": "Input should be an object"}),
    ("null_line", b"null\n", {}, 400, {"accepted": 0, "error": "Input should be an object"}),
    ("wrong_type", line(**{"http.response.status_code": "abc"}), {}, 400,
     {"accepted": 0, "error": "http.response.status_code: Input should be a valid integer"}),
    ("nan", GOOD.replace(b'"event.duration":12000000', b'"event.duration":NaN'), {}, 400,
     {"accepted": 0, "error": "event.duration: Input should be a finite number"}),
    ("infinity", GOOD.replace(b'"event.duration":12000000', b'"event.duration":-Infinity'), {}, 400,
     {"accepted": 0, "error": "event.duration: Input should be a finite number"}),
    ("duration_beyond_int64", GOOD.replace(b'"event.duration":12000000', b'"event.duration":' + b"9" * 400),
     {}, 400, {"accepted": 0, "error": "event.duration: Input should be less than or equal to 92233720"}),
    ("bytes_beyond_int64", line(**{"http.response.body.bytes": 2**63}), {}, 400,
     {"accepted": 0, "error": "http.response.body.bytes: Input should be less than or equal to"}),
    ("deep_nesting", b"[" * 30_000 + b"]" * 30_000, {}, 400, {"accepted": 0, "error": "recursion limit"}),
    ("invalid_utf8", GOOD.replace(b'"GET"', b'"G\xff"'), {}, 400,
     {"accepted": 0, "error": "invalid unicode"}),
    ("unknown_schema_version", line(**{"gatewatch.schema_version": "2"}), {}, 400,
     {"accepted": 0, "error": "gatewatch.schema_version: Input should be '1'"}),
    ("far_future_timestamp", line(**{"@timestamp": "9999-12-30T23:59:59Z"}), {}, 400,
     {"accepted": 0, "error": "@timestamp: 9999-12-30T23:59:59Z is more than"}),
    # Valid ISO 8601 whose UTC instant is outside datetime's range (was OverflowError -> 500).
    ("timestamp_before_year_1_in_utc", line(**{"@timestamp": "0001-01-01T00:00:00+14:00"}), {}, 400,
     {"accepted": 0, "error": "@timestamp: Input should be greater than or equal to 1970-01-01"}),
    ("timestamp_after_year_9999_in_utc", line(**{"@timestamp": "9999-12-31T23:59:59-01:00"}), {}, 400,
     {"accepted": 0, "error": "@timestamp: Input should be less than 9999-12-31"}),
    ("future_timestamp", line(**{"@timestamp": "__FUTURE__"}), {}, 400,
     {"accepted": 0, "error": "@timestamp: "}),
    ("bom", b"\xef\xbb\xbf" + GOOD + b"\n" + GOOD, {}, 200, {"accepted": 2}),
    ("crlf", GOOD + b"\r\n" + GOOD + b"\r\n", {}, 200, {"accepted": 2}),
    ("empty_body", b"", {}, 200, {"accepted": 0}),
    ("mixed", GOOD + b"\n{}\n\n" + GOOD + b"\nnope\n", {}, 400, {"accepted": 2, "lines": [2, 5]}),
    ("huge_line", b'{"a":"' + b"x" * MAX_BODY + b'"}', {}, 413, {"error": "larger than the limit"}),
    ("gzip_bomb", gzip.compress(b"\n" * (MAX_BODY * 200)), {"content-encoding": "gzip"}, 413,
     {"error": "decompressed body is larger than"}),
    ("gzip_bomb_by_magic", gzip.compress(b" " * (MAX_BODY * 200)), {}, 413,
     {"error": "decompressed body is larger than"}),
    ("truncated_gzip", gzip.compress(GOOD * 20)[:-12], {"content-encoding": "gzip"}, 400,
     {"error": "not valid gzip"}),
    ("claims_gzip", GOOD, {"content-encoding": "gzip"}, 400, {"error": "not valid gzip"}),
    ("wrong_content_type", GOOD, {"content-type": "text/html"}, 415, {"error": "unsupported Content-Type"}),
    ("wrong_encoding", GOOD, {"content-encoding": "br"}, 415, {"error": "unsupported Content-Encoding"}),
]  # fmt: skip


def check_answer(status: int, body: Any, expected_status: int, expected: dict[str, Any]) -> None:
    assert status == expected_status, body
    if "accepted" in expected:
        assert body["accepted"] == expected["accepted"], body
    if "error" in expected:
        text = body["rejected"][0]["error"] if "rejected" in body else body["error"]
        assert expected["error"] in text, body
    if "lines" in expected:
        assert [r["line"] for r in body["rejected"]] == expected["lines"], body


@pytest.mark.parametrize(
    ("name", "body", "headers", "status", "expected"), ATTACKS, ids=[a[0] for a in ATTACKS]
)
def test_attack_gets_a_precise_answer_and_the_service_keeps_counting(
    collector: Collector,
    name: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    expected: dict[str, Any],
) -> None:
    body = body.replace(b"__FUTURE__", far_future().encode())
    before = collector.health()
    check_answer(*collector.post(body, **headers), status, expected)
    after = collector.health()
    assert after["status"] == "ok"
    # A good batch after the attack is counted exactly.
    assert collector.post(GOOD + b"\n" + GOOD + b"\n") == (200, {"accepted": 2})
    accepted = expected.get("accepted", 0)
    assert collector.health()["events_ingested"] == before["events_ingested"] + accepted + 2


def test_chunked_bodies_without_content_length(collector: Collector) -> None:
    assert collector.post(iter([GOOD + b"\n"] * 50)) == (200, {"accepted": 50})
    status, body = collector.post(iter([b"x" * 8192] * (MAX_BODY // 8192 + 2)))
    assert status == 413 and "larger than the limit" in body["error"]
    assert collector.health()["status"] == "ok"


def test_bad_window_values_get_a_4xx_json_answer(collector: Collector) -> None:
    for window in ("bad", "1M", "", "5m%00", "-1"):
        status, body = collector.request("GET", f"/api/v1/stats?window={window}")
        assert status == 422, (window, body)
        assert "window" in json.dumps(body)
    assert collector.request("GET", "/api/v1/stats?window=1h")[0] == 200


def test_concurrent_ingest_while_querying(collector: Collector) -> None:
    before = collector.health()["events_ingested"]
    batch = b"".join(line(**{"gateway.route": f"conc{i % 3}"}) + b"\n" for i in range(100))
    errors: list[object] = []

    def ingest() -> None:
        for _ in range(10):
            answer = collector.post(batch)
            if answer != (200, {"accepted": 100}):
                errors.append(answer)

    def query() -> None:
        for i in range(20):
            path = ("/api/v1/stats?window=1m", "/metrics", "/api/v1/stats?window=total")[i % 3]
            conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=30)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status != 200:
                errors.append((path, resp.status))

    threads = [threading.Thread(target=ingest) for _ in range(4)] + [
        threading.Thread(target=query) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert collector.health()["events_ingested"] == before + 4 * 10 * 100
    _, stats = collector.request("GET", "/api/v1/stats?window=total")
    assert sum(stats["routes"][f"conc{i}"]["requests"] for i in range(3)) == 4000


def test_route_and_backend_cardinality_is_capped_and_refusals_counted(tmp_path: Path) -> None:
    port, proc = start(tmp_path, "limits:\n  max_routes: 10\n  max_backends_per_route: 3\n")
    with proc:
        c = Collector(port)
        # 25 distinct routes, two lines each: the first 10 routes are kept, the other 15 refused.
        body = b"".join(line(**{"gateway.route": f"r{i // 2}"}) + b"\n" for i in range(50))
        status, answer = c.post(body)
        assert status == 400
        assert answer["accepted"] == 20 and answer["rejected_total"] == 30
        first = answer["rejected"][0]
        assert first["line"] == 21
        assert first["error"].startswith(
            "gateway.route: 'r10' refused: the collector keeps at most 10 routes"
        )
        # A known route is still accepted; a new one is still refused.
        assert c.post(line(**{"gateway.route": "r3"}))[0] == 200
        assert c.post(line(**{"gateway.route": "fresh"}))[1]["rejected_total"] == 1
        # Backends per route: 3 kept, more refused; events without a backend do not count.
        body = b"".join(line(**{"gateway.route": "r0", "gateway.backend": f"b{i}"}) + b"\n" for i in range(5))
        body += line(**{"gateway.route": "r0", "gateway.backend": None, "gateway.circuit_state": None})
        status, answer = c.post(body)
        # r0 already has the helpers' default backend, so two new ones fit and three are refused.
        assert (status, answer["accepted"], answer["rejected_total"]) == (400, 3, 3)
        assert "gateway.backend: 'b2' refused" in answer["rejected"][0]["error"]
        health = c.health()
        assert health["events_refused"] == 30 + 1 + 3
        _, stats = c.request("GET", "/api/v1/stats?window=total")
        assert len(stats["routes"]) == 10
        assert set(stats["routes"]["r0"]["backends"]) == {W["gateway.backend"], "b0", "b1"}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        assert 'gatewatch_collector_events_refused_total{reason="max_routes"} 31.0' in metrics
        assert 'gatewatch_collector_events_refused_total{reason="max_backends_per_route"} 3.0' in metrics


def test_a_body_of_tiny_bad_lines_stops_being_validated_after_the_cap(collector: Collector) -> None:
    # 3 bytes per line that each cost ~40 us to reject: 32 MiB of them was ~7 minutes of CPU.
    n = MAX_BODY // 3
    status, body = collector.post(gzip.compress(b"{}\n" * n), **{"content-encoding": "gzip"})
    assert status == 400
    assert (body["accepted"], body["rejected_total"]) == (0, n)
    assert len(body["rejected"]) == MAX_REPORTED_REJECTIONS + 1
    assert body["rejected"][-1] == {
        "line": MAX_REJECTED_PER_BATCH + 1,
        "error": f"not validated: this batch already had {MAX_REJECTED_PER_BATCH} invalid lines; "
        f"this line and the {n - MAX_REJECTED_PER_BATCH - 1} non-blank lines after it are refused unread",
    }
    assert collector.health()["status"] == "ok"


def test_line_count_is_bounded_before_any_line_is_looked_at() -> None:
    parsed = parse_ndjson(b"\n" * MAX_LINES_PER_BATCH)
    assert parsed.rejected_total == 0
    with pytest.raises(BodyError) as exc:
        parse_ndjson(b"\n" * MAX_LINES_PER_BATCH + b"{}")
    assert exc.value.status == 413
    assert exc.value.message == (
        f"body has {MAX_LINES_PER_BATCH + 1} lines; at most {MAX_LINES_PER_BATCH} per request "
        "(send smaller batches)"
    )
