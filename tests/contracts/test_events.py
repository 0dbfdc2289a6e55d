"""The access-event schema: ECS wire names, UTC, normalised IPs, strict validation."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gatewatch.events import AccessEvent, is_failure, normalise_ip, outcome_for

WIRE = {
    "@timestamp": "2015-05-17T10:05:03+02:00",
    "gatewatch.schema_version": "1",
    "http.request.id": "r-1",
    "http.request.method": "GET",
    "url.path": "/blog/",
    "http.response.status_code": 200,
    "source.ip": "::ffff:83.149.9.216",
    "event.duration": 1_500_000,
    "event.outcome": "success",
    "gateway.instance": "gw-1",
    "gateway.route": "blog",
}


def test_wire_names_round_trip_and_timestamp_becomes_utc() -> None:
    event = AccessEvent.model_validate_json(json.dumps(WIRE))
    assert event.timestamp.isoformat() == "2015-05-17T08:05:03+00:00"
    assert event.source_ip == "83.149.9.216"
    out = json.loads(event.to_json_bytes())
    assert out["@timestamp"].startswith("2015-05-17T08:05:03")
    assert out["http.request.method"] == "GET"
    assert "gateway.backend" not in out  # None fields are left out of the line
    assert AccessEvent.model_validate_json(event.to_json_bytes()) == event


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("@timestamp", "2015-05-17T10:05:03"),  # no offset: ambiguous, rejected
        ("http.response.status_code", 700),
        ("source.ip", "300.1.1.1"),
        ("event.duration", -1),
        ("gatewatch.schema_version", "2"),
        ("http.request.method", "GE T"),
        ("event.outcome", "maybe"),
    ],
)
def test_invalid_values_are_rejected_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as exc:
        AccessEvent.model_validate_json(json.dumps({**WIRE, field: value}))
    assert field in str(exc.value)


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"gateway\.colour"):
        AccessEvent.model_validate_json(json.dumps({**WIRE, "gateway.colour": "red"}))


def test_failure_definition() -> None:
    assert is_failure(500) and is_failure(503) and not is_failure(404) and not is_failure(499)
    assert is_failure(502, "upstream_refused")
    assert not is_failure(499, "client_disconnect")
    assert outcome_for(200) == "success" and outcome_for(504, "upstream_timeout") == "failure"


def test_normalise_ip() -> None:
    assert normalise_ip(" ::ffff:10.0.0.1") == "10.0.0.1"
    assert normalise_ip("2001:DB8::1") == "2001:db8::1"
    with pytest.raises(ValueError):
        normalise_ip("example.com")
