"""The built-in synthetic traffic mix, for ``gatewatch up`` without ``--replay`` (pure, seeded).

A handful of API endpoints under the prefixes ``gatewatch up`` routes (``/api/users``,
``/api/orders``, ``/auth/``, ``/static/``, ``/``), each with its own status mix (mostly 2xx, some
404/401/429, a few 5xx), response sizes and upstream delays drawn from skewed (log-normal)
distributions, clients with a few heavy hitters, Poisson arrivals at ``rps``. A small share is
hostile on purpose, so the security checks have something to find: one client guessing
passwords on ``/auth/login`` and one probing for sensitive files.

The same seed always gives the same requests in the same order at the same times.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from traffic.spec import REPLAY_BODY, RequestSpec


@dataclass(frozen=True)
class Endpoint:
    """One kind of request and how its upstream behaves."""

    name: str
    method: str
    paths: tuple[str, ...]  # templates; "{id}" becomes a number, "{page}" a small number
    weight: float
    statuses: tuple[tuple[int, float], ...]  # (status, weight)
    size_median: int  # response bytes
    size_sigma: float  # log-normal spread
    delay_median_ms: float
    delay_sigma: float


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "get user", "GET", ("/api/users/{id}",), 22,
        ((200, 90), (404, 6), (401, 2), (429, 1.5), (500, 0.5)), 1_200, 0.4, 12, 0.6,
    ),
    Endpoint(
        "list users", "GET", ("/api/users?page={page}&per_page=50",), 8,
        ((200, 95), (401, 2), (429, 2), (500, 0.7), (503, 0.3)), 24_000, 0.5, 45, 0.7,
    ),
    Endpoint(
        "get order", "GET", ("/api/orders/{id}",), 15,
        ((200, 91), (404, 5), (401, 2), (429, 1.5), (500, 0.5)), 2_500, 0.5, 20, 0.6,
    ),
    Endpoint(
        "create order", "POST", ("/api/orders",), 8,
        ((201, 86), (400, 5), (401, 3), (429, 3.5), (500, 1.5), (503, 1)), 800, 0.3, 70, 0.8,
    ),
    Endpoint(
        "login", "POST", ("/auth/login",), 6,
        ((200, 78), (401, 18), (429, 3), (500, 1)), 600, 0.2, 90, 0.4,
    ),
    Endpoint(
        "refresh", "POST", ("/auth/refresh",), 4,
        ((200, 93), (401, 6), (500, 1)), 500, 0.2, 8, 0.5,
    ),
    Endpoint(
        "static", "GET",
        ("/static/app.js", "/static/app.css", "/static/logo.png", "/static/font.woff2", "/static/i/{id}.jpg"),
        30, ((200, 78), (304, 20), (404, 2)), 40_000, 1.4, 1.5, 0.5,
    ),
    Endpoint(
        "home", "GET", ("/", "/about", "/pricing"), 7,
        ((200, 97), (404, 2), (500, 1)), 18_000, 0.3, 10, 0.5,
    ),
)  # fmt: skip

USER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
)
BRUTE_FORCER = "203.0.113.66"
SCANNER = "198.51.100.99"
SCANNER_AGENT = "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:Port Check)"
SENSITIVE_PATHS: tuple[str, ...] = (
    "/.env", "/.git/config", "/wp-login.php", "/phpinfo.php", "/config.php.bak", "/.aws/credentials",
    "/admin/", "/server-status", "/backup.sql", "/.DS_Store", "/api/users/../../etc/passwd",
)  # fmt: skip
MAX_DELAY_MS = 3_000.0
HOSTILE_SHARE = 0.02  # of all requests: half password guessing, half probing


def _client_pool(rng: random.Random, n: int) -> tuple[str, ...]:
    """Documentation-range addresses (RFC 5737 / RFC 3849), some IPv6."""
    pool = []
    for i in range(n):
        if i % 10 == 9:
            pool.append(f"2001:db8:{rng.randrange(1, 0xFFFF):x}::{rng.randrange(1, 0xFFFF):x}")
        else:
            pool.append(f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}")
    return tuple(dict.fromkeys(pool))


def expected_count(*, rps: float, duration: float | None, count: int | None) -> int | None:
    """How many requests a run will send: exact for ``count``, the mean for ``duration``."""
    if count is not None:
        return count
    if duration is not None:
        return round(rps * duration)
    return None


@dataclass(frozen=True)
class SyntheticMix:
    """A seeded stream of :class:`RequestSpec`.

    With ``count``, exactly that many requests; otherwise arrivals until ``duration`` seconds of
    traffic clock (about ``rps * duration``); both None: endless.
    """

    seed: int = 1
    rps: float = 200.0
    duration: float | None = 30.0
    count: int | None = None
    clients: int = 300

    def __post_init__(self) -> None:
        if self.rps <= 0:
            raise ValueError("rps must be positive")
        if self.count is not None and self.count < 0:
            raise ValueError("count must not be negative")
        if self.duration is not None and self.duration < 0:
            raise ValueError("duration must not be negative")

    def specs(self) -> Iterator[RequestSpec]:
        rng = random.Random(self.seed)
        clients = _client_pool(rng, self.clients)
        # Zipf-like client popularity: a few heavy hitters, a long tail.
        client_weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(clients))]
        agents = [rng.choice(USER_AGENTS) for _ in clients]
        endpoint_weights = [e.weight for e in ENDPOINTS]
        at = 0.0
        sent = 0
        while self.count is None or sent < self.count:
            if self.count is None and self.duration is not None and at >= self.duration:
                return
            if rng.random() < HOSTILE_SHARE:
                yield self._hostile(rng, at)
            else:
                i = rng.choices(range(len(clients)), client_weights)[0]
                endpoint = rng.choices(ENDPOINTS, endpoint_weights)[0]
                yield self._normal(rng, endpoint, clients[i], agents[i], at)
            sent += 1
            at += rng.expovariate(self.rps)  # Poisson arrivals

    @staticmethod
    def _normal(rng: random.Random, e: Endpoint, client: str, agent: str, at: float) -> RequestSpec:
        path = rng.choice(e.paths)
        path = path.replace("{id}", str(rng.randrange(1, 5000))).replace("{page}", str(rng.randrange(1, 20)))
        status = rng.choices([s for s, _ in e.statuses], [w for _, w in e.statuses])[0]
        size = int(e.size_median * math.exp(e.size_sigma * rng.gauss(0.0, 1.0)))
        if status >= 400:
            size = rng.randrange(60, 400)  # error pages are small
        delay = min(MAX_DELAY_MS, e.delay_median_ms * math.exp(e.delay_sigma * rng.gauss(0.0, 1.0)))
        if status in (429, 401):
            delay = min(delay, 2.0)  # rejected early, before any work
        return RequestSpec(
            method=e.method,
            target=path,
            status=status,
            body_bytes=size,
            delay_ms=round(delay, 3),
            client_ip=client,
            user_agent=agent,
            body=REPLAY_BODY if e.method in ("POST", "PUT", "PATCH") else b"",
            at=at,
        )

    @staticmethod
    def _hostile(rng: random.Random, at: float) -> RequestSpec:
        if rng.random() < 0.5:
            return RequestSpec(
                method="POST",
                target="/auth/login",
                status=401 if rng.random() < 0.97 else 200,
                body_bytes=120,
                delay_ms=round(80 * math.exp(0.3 * rng.gauss(0.0, 1.0)), 3),
                client_ip=BRUTE_FORCER,
                user_agent="python-requests/2.31.0",
                body=REPLAY_BODY,
                at=at,
            )
        return RequestSpec(
            method="GET",
            target=rng.choice(SENSITIVE_PATHS),
            status=404,
            body_bytes=162,
            delay_ms=1.0,
            client_ip=SCANNER,
            user_agent=SCANNER_AGENT,
            at=at,
        )
