"""The access-event schema: one record per request, shared by the gateway and the collector.

Field names on the wire are ECS names (``@timestamp``, ``http.request.method``, ...) written as
flat dotted keys, so the same JSON object is a valid ECS log line for Filebeat/Fluentd and a
valid Elasticsearch document. Gateway-specific fields live under ``gateway.``. The schema is
versioned by ``gatewatch.schema_version``; the collector rejects versions it does not know.

The gateway builds events with :meth:`AccessEvent.model_construct` (no validation on the hot
path; a test proves what it builds validates) and the collector validates every line it
receives with :meth:`AccessEvent.model_validate_json`.
"""

from __future__ import annotations

import functools
import ipaddress
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal["1"] = "1"
ECS_VERSION = "8.11.0"

CircuitState = Literal["closed", "open", "half_open"]
Outcome = Literal["success", "failure", "unknown"]
AuthResult = Literal["none", "success", "failure"]
RateLimitDecision = Literal["none", "allowed", "limited"]

# Gateway error reasons: a bounded set, also used as the ``reason`` label of
# http_requests_errors_total.
GatewayError = Literal[
    "upstream_5xx",  # the upstream answered with a 5xx status
    "upstream_refused",  # connection refused or reset before a response
    "upstream_timeout",  # no response within the route's timeout
    "upstream_protocol",  # the upstream's response could not be parsed or forwarded (e.g. status 999)
    "upstream_truncated",  # the upstream closed or reset the connection in the middle of the body
    "circuit_open",  # no target could be tried because every breaker was open
    "no_route",  # the path matched no configured route
    "client_disconnect",  # the client went away before the response completed
    "drain_timeout",  # still in flight when the shutdown drain (drain_seconds) ran out
    "internal_error",  # the gateway itself failed (a bug: its log has the traceback)
    "not_implemented",  # the gateway refused what it does not implement (501: a transfer coding)
]
ERROR_REASONS: tuple[str, ...] = GatewayError.__args__  # type: ignore[attr-defined]


def _parse_ip(value: str) -> str:
    addr = ipaddress.ip_address(value.strip())
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


# ipaddress parsing is about half of the cost of validating an event; client IPs repeat a lot,
# so the collector's ingest keeps a bounded cache. Only short strings are cached (a valid address
# padded with whitespace could be long), and failures are never cached (lru_cache skips raises).
_parse_ip_cached = functools.lru_cache(maxsize=16384)(_parse_ip)


def normalise_ip(value: str) -> str:
    """Canonical text for an IP: IPv4-mapped IPv6 (``::ffff:1.2.3.4``) becomes plain IPv4."""
    return _parse_ip_cached(value) if len(value) <= 64 else _parse_ip(value)


# ``value.astimezone(UTC)`` as a C-level callable rather than a Python function: pydantic calls
# it ~1 us/event cheaper (the collector validates every line it gets).
_TO_UTC: Callable[[datetime], datetime] = operator.methodcaller("astimezone", UTC)

# Bounds checked before the conversion, comparing instants (offsets applied): a timestamp whose
# UTC value falls outside datetime's range (``0001-01-01T00:00:00+14:00``) made ``astimezone``
# raise OverflowError, which pydantic does not turn into a validation error (a 500 for the whole
# batch, which a shipper retries forever). No gateway event predates the Unix epoch.
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(9999, 12, 31, tzinfo=UTC)

IPText = Annotated[str, AfterValidator(normalise_ip)]
UTCDatetime = Annotated[
    AwareDatetime, Field(ge=EARLIEST_TIMESTAMP, lt=LATEST_TIMESTAMP), AfterValidator(_TO_UTC)
]
HTTPMethod = Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$")]
# ECS numbers are signed 64-bit ("long"), as in Elasticsearch and SQLite. Unbounded, a 400-digit
# duration validated and then broke the collector's float conversion (a 500 the sender retries
# forever).
INT64_MAX = 2**63 - 1


def is_failure(status: int, error: str | None = None) -> bool:
    """The one definition of a failed request: a 5xx answer or a gateway-side error."""
    return status >= 500 or (error is not None and error != "client_disconnect")


def outcome_for(status: int, error: str | None = None) -> Outcome:
    return "failure" if is_failure(status, error) else "success"


class AccessEvent(BaseModel):
    """One request as seen by the gateway. Wire names are the aliases (ECS, dotted)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True, str_max_length=16384)

    timestamp: UTCDatetime = Field(alias="@timestamp")
    schema_version: Literal["1"] = Field(SCHEMA_VERSION, alias="gatewatch.schema_version")
    ecs_version: str = Field(ECS_VERSION, alias="ecs.version")
    request_id: str = Field(alias="http.request.id", min_length=1, max_length=200)
    method: HTTPMethod = Field(alias="http.request.method")
    path: str = Field(alias="url.path", min_length=1, max_length=8192)
    query: str | None = Field(None, alias="url.query", max_length=8192)
    status: int = Field(alias="http.response.status_code", ge=100, le=599)
    request_bytes: int = Field(0, alias="http.request.body.bytes", ge=0, le=INT64_MAX)
    response_bytes: int = Field(0, alias="http.response.body.bytes", ge=0, le=INT64_MAX)
    source_ip: IPText = Field(alias="source.ip")
    user_agent: str | None = Field(None, alias="user_agent.original", max_length=2048)
    duration_ns: int = Field(alias="event.duration", ge=0, le=INT64_MAX)
    outcome: Outcome = Field(alias="event.outcome")
    trace_id: str | None = Field(None, alias="trace.id", pattern=r"^[0-9a-f]{32}$")
    instance: str = Field(alias="gateway.instance", min_length=1, max_length=255)
    route: str = Field(alias="gateway.route", min_length=1, max_length=128)
    backend: str | None = Field(None, alias="gateway.backend", max_length=255)
    upstream_duration_ns: int | None = Field(None, alias="gateway.upstream.duration", ge=0, le=INT64_MAX)
    circuit_state: CircuitState | None = Field(None, alias="gateway.circuit_state")
    retries: int = Field(0, alias="gateway.retries", ge=0, le=INT64_MAX)
    error: GatewayError | None = Field(None, alias="gateway.error")
    auth_result: AuthResult = Field("none", alias="gateway.auth.result")
    auth_subject: str | None = Field(None, alias="gateway.auth.subject", max_length=256)
    api_key_id: str | None = Field(None, alias="gateway.api_key.id", max_length=128)
    rate_limit: RateLimitDecision = Field("none", alias="gateway.rate_limit.decision")

    @property
    def failed(self) -> bool:
        return is_failure(self.status, self.error)

    def to_json_bytes(self) -> bytes:
        """One NDJSON line (without the newline), wire names, ``None`` fields left out."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


# Wire name of every field, for code that reads stored events by column (e.g. the store).
WIRE_NAMES: dict[str, str] = {name: (info.alias or name) for name, info in AccessEvent.model_fields.items()}
