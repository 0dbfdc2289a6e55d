"""The gateway's YAML config, as typed models. Loaded with gatewatch.configfile.load_config."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gatewatch.configfile import ConfigPath, FieldValueError, HostPort, resolve_config_path
from sidecar_gateway.routing import prefix_form


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    """One upstream server of a route."""

    address: HostPort  # host:port, plain HTTP/1.1
    weight: int = Field(default=1, ge=1, le=1000)


class Timeouts(_Strict):
    connect: float = Field(default=2.0, gt=0, le=300, description="seconds to open an upstream connection")
    response: float = Field(
        default=30.0, gt=0, le=3600, description="seconds until upstream response headers"
    )
    idle: float = Field(
        default=60.0, gt=0, le=3600, description="seconds between body chunks before giving up"
    )


class HealthCheck(_Strict):
    """Active health check: GET ``path`` on each target every ``interval`` seconds."""

    path: str = Field(default="/healthz", pattern=r"^/")
    interval: float = Field(default=5.0, gt=0, le=3600)
    timeout: float = Field(default=1.0, gt=0, le=60)
    healthy_threshold: int = Field(default=1, ge=1, le=100)
    unhealthy_threshold: int = Field(default=2, ge=1, le=100)


class CircuitBreaker(_Strict):
    """Consecutive-failure breaker per target (Envoy's consecutive_5xx outlier detection)."""

    failure_threshold: int = Field(default=5, ge=1, le=10000)
    open_seconds: float = Field(default=30.0, gt=0, le=3600)
    half_open_max_requests: int = Field(default=1, ge=1, le=1000)


class Route(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")
    path_prefix: str = Field(pattern=r"^/")
    upstreams: list[Target] = Field(min_length=1)
    timeouts: Timeouts = Timeouts()
    strip_prefix: bool = False
    health_check: HealthCheck | None = None
    circuit_breaker: CircuitBreaker = CircuitBreaker()

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v == "unmatched":
            raise ValueError("'unmatched' is reserved for requests that match no route")
        return v


class CollectorSink(_Strict):
    """Where and how access events are shipped."""

    url: HttpUrl  # e.g. http://127.0.0.1:9300/v1/events
    batch_size: int = Field(default=500, ge=1, le=100_000)
    flush_interval: float = Field(default=0.5, gt=0, le=60, description="seconds between flushes")
    queue_size: int = Field(default=50_000, ge=1, le=10_000_000, description="bounded queue; full -> drop")
    gzip: bool = True
    # where unshipped batches wait while the collector is down (relative: to the config file)
    spool_dir: ConfigPath | None = None
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)


class AccessLog(_Strict):
    """ECS JSON access log: one line per request. ``path: "-"`` writes to stdout; a relative path
    is relative to the config file."""

    enabled: bool = True
    path: str = "-"

    @field_validator("path")
    @classmethod
    def _relative_to_the_file(cls, v: str, info: ValidationInfo) -> str:
        return v if v == "-" else str(resolve_config_path(Path(v), info))


class Telemetry(_Strict):
    access_log: AccessLog = AccessLog()
    collector: CollectorSink | None = None
    memory_limit_bytes: int | None = Field(default=None, ge=1)


class GatewayConfig(_Strict):
    listen: HostPort = "127.0.0.1:8080"
    admin_listen: HostPort = "127.0.0.1:9901"
    instance: str | None = None  # defaults to the listen address
    # X-Forwarded-For is believed only from these peers (rightmost untrusted address wins).
    trusted_proxies: list[str] = ["127.0.0.0/8", "::1/128"]
    routes: list[Route] = Field(min_length=1)
    telemetry: Telemetry = Telemetry()
    # On SIGTERM/SIGINT: stop accepting, then wait this long for in-flight requests.
    drain_seconds: float = Field(default=30.0, ge=0, le=3600)
    # The request line plus header lines of one request. A longer head is answered 431 by the
    # gateway itself (never forwarded) and the connection is closed, so one client cannot make the
    # gateway buffer an unbounded head (a 200 MB header once grew its RSS by 400 MB).
    max_request_head_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="longest request head (request line + headers) accepted; longer -> 431",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for item in v:
            ipaddress.ip_network(item, strict=False)  # raises ValueError with a clear message
        return v

    @model_validator(mode="after")
    def _unique_routes(self) -> GatewayConfig:
        names: dict[str, int] = {}
        prefixes: dict[str, int] = {}
        for i, r in enumerate(self.routes):
            if r.name in names:
                raise FieldValueError(
                    ("routes", i, "name"), f"route name {r.name!r} is already used by routes.{names[r.name]}"
                )
            names[r.name] = i
            # Matching is on path-segment boundaries of the normalised path, so "/a", "/a/",
            # "/a/." and "/b/../a" are the same prefix.
            key = prefix_form(r.path_prefix).rstrip("/") or "/"
            if key in prefixes:
                raise FieldValueError(
                    ("routes", i, "path_prefix"),
                    f"path prefix {r.path_prefix!r} is already routed by routes.{prefixes[key]}; "
                    "this route could never match",
                )
            prefixes[key] = i
        if self.listen == self.admin_listen:
            raise FieldValueError(("admin_listen",), "must differ from listen")
        return self

    @property
    def instance_name(self) -> str:
        return self.instance or self.listen
