"""Access-event lines built off the hot path must validate against the shared schema."""

import time

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewatch.events import ERROR_REASONS, WIRE_NAMES, AccessEvent
from sidecar_gateway.forwarding import TrustedProxies
from sidecar_gateway.records import EventEncoder, RequestRecord, event_line, method_label

TRUSTED = TrustedProxies(["127.0.0.0/8"])


def _record(**over: object) -> RequestRecord:
    base = RequestRecord(
        wall_start=1_700_000_000.25,
        duration=0.0123,
        route="api",
        method="GET",
        status=200,
        error=None,
        backend="127.0.0.1:9000",
        upstream_duration=0.01,
        request_bytes=10,
        response_bytes=20,
        peer="127.0.0.1",
        forwarded_for=[b"198.51.100.7"],
        user_agent=b"curl/8",
        path="/api/x",
        query=b"a=1",
        request_id=b"abc",
        circuit_state="closed",
        retries=1,
    )
    return base._replace(**over)


def test_line_validates_and_carries_every_field() -> None:
    ev = AccessEvent.model_validate_json(event_line(_record(), "gw-1", TRUSTED))
    assert ev.timestamp.isoformat() == "2023-11-14T22:13:20.250000+00:00"
    assert ev.duration_ns == 12_300_000
    assert ev.upstream_duration_ns == 10_000_000
    assert ev.source_ip == "198.51.100.7"  # peer is trusted, so XFF is believed
    assert (ev.route, ev.backend, ev.circuit_state, ev.retries) == ("api", "127.0.0.1:9000", "closed", 1)
    assert (ev.method, ev.path, ev.query, ev.status, ev.outcome) == ("GET", "/api/x", "a=1", 200, "success")
    assert (ev.request_bytes, ev.response_bytes, ev.user_agent, ev.request_id) == (10, 20, "curl/8", "abc")
    assert ev.instance == "gw-1" and ev.error is None and ev.trace_id is None


def test_line_uses_only_wire_names() -> None:
    keys = set(orjson.loads(event_line(_record(error="upstream_timeout", status=504), "i", TRUSTED)))
    assert keys <= set(WIRE_NAMES.values())


def test_failure_outcome_and_error() -> None:
    ev = AccessEvent.model_validate_json(
        event_line(_record(status=502, error="upstream_refused"), "i", TRUSTED)
    )
    assert ev.outcome == "failure" and ev.error == "upstream_refused"
    ev = AccessEvent.model_validate_json(
        event_line(_record(status=499, error="client_disconnect"), "i", TRUSTED)
    )
    assert ev.outcome == "success"


text = st.text(max_size=300)


@settings(max_examples=150, deadline=None)
@given(
    st.builds(
        _record,
        wall_start=st.floats(0, 4_000_000_000),
        duration=st.floats(-1, 1000),
        route=st.sampled_from(["api", "unmatched", "a.b-c_d"]),
        method=st.sampled_from(["GET", "POST", "PURGE", "M-SEARCH"]),
        status=st.integers(100, 599),
        error=st.none() | st.sampled_from(ERROR_REASONS),
        backend=st.none() | st.just("10.0.0.1:80"),
        upstream_duration=st.none() | st.floats(-1, 100),
        request_bytes=st.integers(0, 10**12),
        response_bytes=st.integers(0, 10**12),
        peer=st.none() | st.sampled_from(["127.0.0.1", "::1", "::ffff:10.0.0.1", "203.0.113.5"]),
        forwarded_for=st.lists(st.binary(max_size=40), max_size=3),
        user_agent=st.none() | st.binary(max_size=3000),
        path=st.text(min_size=0, max_size=9000),
        query=st.binary(max_size=9000),
        request_id=st.sampled_from([b"abc", b"0" * 32, b"x-y_z.1"]),
        circuit_state=st.none() | st.sampled_from(["closed", "open", "half_open"]),
        retries=st.integers(0, 3),
    )
)
def test_any_record_gives_a_valid_event(rec: RequestRecord) -> None:
    AccessEvent.model_validate_json(event_line(rec, "127.0.0.1:8080", TRUSTED))


def test_method_label_is_bounded() -> None:
    assert method_label("GET") == "GET"
    assert method_label("PURGE") == "OTHER"


def test_now_round_trips() -> None:
    now = time.time()
    ev = AccessEvent.model_validate_json(event_line(_record(wall_start=now), "i", TRUSTED))
    assert abs(ev.timestamp.timestamp() - now) < 1e-5


@settings(max_examples=150, deadline=None)
@given(
    st.builds(
        _record,
        wall_start=st.floats(0, 4_000_000_000),
        duration=st.floats(-1, 1000),
        status=st.integers(100, 599),
        error=st.none() | st.sampled_from(ERROR_REASONS),
        upstream_duration=st.none() | st.floats(-1, 100),
        peer=st.none() | st.sampled_from(["127.0.0.1", "::1"]),
        forwarded_for=st.lists(st.binary(max_size=20), max_size=1),
        user_agent=st.none() | st.binary(max_size=50),
        path=st.text(max_size=50),
        query=st.binary(max_size=50),
        request_id=st.sampled_from([b"abc", b"0" * 32, b'q"uote', b"ctl\x01"]),
    )
)
def test_cached_template_lines_equal_the_plain_encoding(rec: RequestRecord) -> None:
    enc = EventEncoder("gw", TRUSTED)
    expected = orjson.loads(enc._encode_dict(rec))
    assert orjson.loads(enc.encode(rec)) == expected
    assert orjson.loads(enc.encode(rec)) == expected  # again, from the cache
    other = rec._replace(wall_start=rec.wall_start + 1.5, request_bytes=7, retries=2)
    assert orjson.loads(enc.encode(other)) == orjson.loads(enc._encode_dict(other))
