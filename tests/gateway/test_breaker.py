from hypothesis import given
from hypothesis import strategies as st

from sidecar_gateway.breaker import CircuitBreaker
from sidecar_gateway.health import HealthState


def test_opens_after_threshold_consecutive_failures() -> None:
    b = CircuitBreaker(failure_threshold=3, open_seconds=10)
    for _ in range(2):
        assert b.acquire(0)
        b.on_failure(0)
    assert b.state(0) == "closed"
    b.on_success(0)  # a success resets the streak
    for _ in range(2):
        b.on_failure(1)
    assert b.state(1) == "closed"
    b.on_failure(1)
    assert b.state(1) == "open"
    assert not b.acquire(5)


def test_half_open_after_open_seconds_then_closes_on_probe_success() -> None:
    b = CircuitBreaker(failure_threshold=1, open_seconds=10, half_open_max_requests=2)
    b.on_failure(100)
    assert b.state(109.9) == "open"
    assert b.state(110) == "half_open"
    assert b.acquire(110) and b.acquire(110)
    assert not b.acquire(110)  # only two probes at once
    b.on_success(111)
    assert b.state(111) == "closed"
    assert b.acquire(111)


def test_half_open_probe_failure_reopens_for_another_period() -> None:
    b = CircuitBreaker(failure_threshold=1, open_seconds=10)
    b.on_failure(0)
    assert b.acquire(10)
    b.on_failure(12)
    assert b.state(12) == "open"
    assert b.state(21.9) == "open"
    assert b.state(22) == "half_open"


def test_released_probe_frees_its_slot() -> None:
    b = CircuitBreaker(failure_threshold=1, open_seconds=1, half_open_max_requests=1)
    b.on_failure(0)
    assert b.acquire(1)
    assert not b.acquire(1)
    b.release(1)
    assert b.acquire(1)


def test_failure_reported_while_open_does_not_extend_it() -> None:
    b = CircuitBreaker(failure_threshold=1, open_seconds=10)
    b.on_failure(0)
    b.on_failure(5)  # a request that started before the breaker opened
    assert b.state(10) == "half_open"


events = st.lists(st.tuples(st.sampled_from(["ok", "fail", "try", "release"]), st.floats(0, 5)), max_size=60)


@given(st.integers(1, 5), st.floats(0.5, 10), st.integers(1, 3), events)
def test_never_admits_while_open_and_probes_are_bounded(
    threshold: int, open_s: float, probes: int, steps: list[tuple[str, float]]
) -> None:
    b = CircuitBreaker(threshold, open_s, probes)
    now = 0.0
    in_probe = 0
    for action, dt in steps:
        now += dt
        state = b.state(now)
        if action == "try":
            admitted = b.acquire(now)
            if state == "open":
                assert not admitted
            if state == "half_open" and admitted:
                in_probe += 1
                assert in_probe <= probes
        elif action == "ok":
            b.on_success(now)
            assert b.state(now) == "closed"
            in_probe = 0
        elif action == "fail":
            b.on_failure(now)
            if b.state(now) != "half_open":
                in_probe = 0
        else:
            b.release(now)
            in_probe = max(0, in_probe - 1)


def test_health_state_thresholds() -> None:
    h = HealthState(healthy_threshold=2, unhealthy_threshold=3)
    assert h.healthy
    assert h.record(False) and h.record(False)
    assert not h.record(False)
    assert not h.record(True)
    assert h.record(True)
    assert h.record(False)  # one failure is not enough again
