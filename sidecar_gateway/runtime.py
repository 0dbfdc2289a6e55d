"""Live state of the configured routes: targets, their pools, breakers and health."""

from __future__ import annotations

from dataclasses import dataclass

from gatewatch.configfile import split_host_port
from sidecar_gateway.balancer import SmoothWRR
from sidecar_gateway.breaker import CircuitBreaker, State
from sidecar_gateway.config import GatewayConfig, Route
from sidecar_gateway.health import HealthState
from sidecar_gateway.routing import prefix_form
from sidecar_gateway.upstream import ConnectionPool, UpstreamClient


class Backend:
    """One target of one route. Breakers are per route and target, as the metrics are."""

    __slots__ = ("breaker", "connect_ok", "health", "host", "label", "pool", "port", "weight")

    def __init__(self, address: str, weight: int, route: Route, client: UpstreamClient) -> None:
        self.host, self.port = split_host_port(address)
        self.label = address
        self.weight = weight
        self.pool: ConnectionPool = client.pool(self.host, self.port)
        cb = route.circuit_breaker
        self.breaker = CircuitBreaker(cb.failure_threshold, cb.open_seconds, cb.half_open_max_requests)
        hc = route.health_check
        self.health = HealthState(hc.healthy_threshold, hc.unhealthy_threshold) if hc is not None else None
        self.connect_ok = True

    def up(self, now: float) -> bool:
        """backend_up: the health check's verdict when checks run, else breaker and connect state."""
        if self.health is not None:
            return self.health.healthy
        return self.connect_ok and self.breaker.state(now) == "closed"

    def state(self, now: float) -> State:
        return self.breaker.state(now)


@dataclass(frozen=True)
class RouteTimeouts:
    connect: float
    response: float
    idle: float


class RouteRuntime:
    def __init__(self, route: Route, client: UpstreamClient) -> None:
        self.config = route
        self.name = route.name
        self.prefix = prefix_form(route.path_prefix)  # as request paths are matched (routing.py)
        self.strip_prefix = route.strip_prefix
        t = route.timeouts
        self.timeouts = RouteTimeouts(t.connect, t.response, t.idle)
        self.backends = [Backend(u.address, u.weight, route, client) for u in route.upstreams]
        self.wrr = SmoothWRR([b.weight for b in self.backends])

    def choose(self, now: float) -> Backend | None:
        """Next target by smooth WRR among those whose breaker admits a request and that pass
        health checks; if health checks fail everywhere, any admitting target (panic mode, as
        Envoy does: a wrong health check must not take the whole route down). None when every
        breaker is open."""
        backends = self.backends
        if len(backends) == 1:
            only = backends[0]
            return only if only.breaker.acquire(now) else None

        def admits(i: int) -> bool:
            b = backends[i]
            return b.breaker.can_try(now) and (b.health is None or b.health.healthy)

        index = self.wrr.pick(admits)
        if index is None:
            index = self.wrr.pick(lambda i: backends[i].breaker.can_try(now))
        if index is None:
            return None
        chosen = backends[index]
        chosen.breaker.acquire(now)
        return chosen


def build_routes(config: GatewayConfig, client: UpstreamClient) -> list[RouteRuntime]:
    return [RouteRuntime(r, client) for r in config.routes]
