"""The synthetic mix: deterministic, realistic, and served by the demo upstream as specified."""

from __future__ import annotations

import statistics
from collections import Counter
from itertools import islice

import pytest

from gatewatch.up import SYNTHETIC_ROUTES
from traffic.demo_response import MAX_BODY_BYTES
from traffic.replay import run_synthetic
from traffic.synthetic import BRUTE_FORCER, SCANNER, SyntheticMix, expected_count
from traffic.upstream import DemoUpstream, SeenRequest


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    a = list(SyntheticMix(seed=7, rps=100, duration=None, count=500).specs())
    b = list(SyntheticMix(seed=7, rps=100, duration=None, count=500).specs())
    c = list(SyntheticMix(seed=8, rps=100, duration=None, count=500).specs())
    assert a == b
    assert a != c


def test_count_is_exact_and_duration_bounds_the_clock() -> None:
    assert len(list(SyntheticMix(rps=50, duration=None, count=123).specs())) == 123
    specs = list(SyntheticMix(rps=200, duration=10.0).specs())
    times = [s.at for s in specs]
    assert times == sorted(times)
    assert times[-1] < 10.0
    # Poisson arrivals: about rps * duration, never exactly predictable.
    assert 1_800 < len(specs) < 2_200
    assert expected_count(rps=200, duration=10.0, count=None) == 2_000
    assert expected_count(rps=200, duration=None, count=None) is None


def test_endless_mix_keeps_going() -> None:
    assert len(list(islice(SyntheticMix(duration=None, count=None).specs(), 5_000))) == 5_000


@pytest.mark.parametrize("kwargs", [{"rps": 0}, {"count": -1}, {"duration": -1.0}])
def test_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SyntheticMix(**kwargs)  # type: ignore[arg-type]


def test_mix_is_realistic() -> None:
    specs = list(SyntheticMix(seed=3, rps=1000, duration=None, count=20_000).specs())
    n = len(specs)
    statuses = Counter(s.status for s in specs)
    ok = sum(v for k, v in statuses.items() if k < 400) / n
    server_errors = sum(v for k, v in statuses.items() if k >= 500) / n
    assert 0.85 < ok < 0.97
    assert 0.002 < server_errors < 0.03
    for code in (404, 401, 429):
        assert statuses[code] > 0.003 * n
    # Every request goes to a route ``gatewatch up`` configures for the synthetic mix.
    prefixes = [p for _, p in SYNTHETIC_ROUTES if p != "/"]
    routed = sum(any(s.target.startswith(p) for p in prefixes) for s in specs)
    assert routed / n > 0.85
    assert all(s.target.startswith("/") for s in specs)
    # Upstream delays are skewed: a long tail above the median.
    delays = [s.delay_ms for s in specs]
    assert statistics.mean(delays) > statistics.median(delays)
    assert max(delays) > 10 * statistics.median(delays)
    assert all(0 <= s.body_bytes <= MAX_BODY_BYTES for s in specs if s.body_bytes is not None)
    assert all(200 <= s.status <= 599 for s in specs)
    # Heavy hitters and the two hostile clients.
    clients = Counter(s.client_ip for s in specs)
    assert clients.most_common(1)[0][1] > 10 * statistics.median(clients.values())
    assert all(
        s.status in (200, 401) and s.target == "/auth/login" for s in specs if s.client_ip == BRUTE_FORCER
    )
    assert all(s.status == 404 for s in specs if s.client_ip == SCANNER)
    assert clients[BRUTE_FORCER] > 50 and clients[SCANNER] > 50
    assert {s.method for s in specs} == {"GET", "POST"}
    assert all(s.body for s in specs if s.method == "POST")


async def test_run_synthetic_sends_the_mix_to_the_upstream() -> None:
    seen: list[SeenRequest] = []
    mix = list(SyntheticMix(seed=1, rps=2_000, duration=None, count=300).specs())
    async with DemoUpstream(on_request=seen.append) as server:
        # Short delays only, so the test stays quick.
        result = await run_synthetic(server.url, count=300, rps=2_000, duration=None, seed=1, concurrency=64)
    assert result.requests == 300 and result.transport_errors == 0
    assert Counter((s.method, s.target, s.status, s.forwarded_for) for s in seen) == Counter(
        (s.method, s.target, s.status, s.client_ip) for s in mix
    )
    assert result.responses == Counter(s.status for s in mix)
