from hypothesis import given
from hypothesis import strategies as st

from sidecar_gateway.breaker import CircuitBreaker
from sidecar_gateway.health import HealthState


def test_opens_after_threshold_consecutive_failures() -> None:
    b = CircuitBreaker(failure_threshold=3, open_seconds=10)
    for _ in range(2):
        assert b.acquire(0)
        b.on_failure(0, 0)
    assert b.state(0) == "closed"
    b.on_success(0, 0)  # a success resets the streak
    for _ in range(2):
        b.on_failure(1, 1)
    assert b.state(1) == "closed"
    b.on_failure(1, 1)
    assert b.state(1) == "open"
    assert not b.acquire(5)


def test_half_open_after_open_seconds_then_closes_on_probe_success() -> None:
    b = CircuitBreaker(failure_threshold=1, open_seconds=10, half_open_max_requests=2)
    b.on_failure(100, 100)
    assert b.state(109.9) == "open"
    assert b.state(110) == "half_open"
    assert b.acquire(110) and b.acquire(110)
    assert not b.acquire(110)  # only two probes at once
    b.on_success(111, 110)
    assert b.state(111) == "closed"
    assert b.acquire(111)


def test_half_open_probe_failure_reopens_for_another_period() -> None:
    b = CircuitBreaker(failure_threshold=1, open_seconds=10)
    b.on_failure(0, 0)
    assert b.acquire(10)
    b.on_failure(12, 10)
    assert b.state(12) == "open"
    assert b.state(21.9) == "open"
    assert b.state(22) == "half_open"


def test_released_probe_frees_its_slot() -> None:
    b = CircuitBreaker(failure_threshold=1, open_seconds=1, half_open_max_requests=1)
    b.on_failure(0, 0)
    assert b.acquire(1)
    assert not b.acquire(1)
    b.release(1, 1)
    assert b.acquire(1)


def test_failure_reported_while_open_does_not_extend_it() -> None:
    b = CircuitBreaker(failure_threshold=1, open_seconds=10)
    b.on_failure(0, 0)
    b.on_failure(5, -1)  # a request that started before the breaker opened
    assert b.state(10) == "half_open"


def test_a_request_admitted_before_the_breaker_opened_is_no_probe() -> None:
    """Admitted at 0 while closed, ending during half-open: its release must not free the probe's
    slot, its success must not close the breaker, its failure must not reopen it."""
    b = CircuitBreaker(failure_threshold=1, open_seconds=3, half_open_max_requests=1)
    assert b.acquire(0)  # a slow request, admitted while closed
    b.on_failure(1, 1)  # another one fails: open
    assert b.acquire(4.5)  # the probe
    assert not b.acquire(4.6)
    b.release(5, 0)  # the slow one's client goes away
    assert not b.acquire(5.1)  # the probe still holds the only slot
    b.on_success(5.2, 0)
    assert b.state(5.2) == "half_open"
    b.on_failure(5.3, 0)
    assert b.state(5.3) == "half_open"
    b.on_success(6, 4.5)  # the probe's own verdict decides
    assert b.state(6) == "closed"


# A request's life: admitted at some step, then it ends with one verdict some steps later.
Verdict = st.sampled_from(["ok", "fail", "release"])
lives = st.lists(st.tuples(st.floats(0, 5), st.integers(0, 6), Verdict), max_size=40)


@given(st.integers(1, 5), st.floats(0.5, 10), st.integers(1, 3), lives)
def test_never_admits_while_open_and_probes_in_flight_are_bounded(
    threshold: int, open_s: float, probes: int, plan: list[tuple[float, int, str]]
) -> None:
    b = CircuitBreaker(threshold, open_s, probes)
    now = 0.0
    in_flight: list[tuple[int, float, str]] = []  # (ends at step, admitted, verdict)
    for step, (dt, lasts, verdict) in enumerate(plan):
        now += dt
        for item in [r for r in in_flight if r[0] <= step]:
            in_flight.remove(item)
            _, admitted, v = item
            {"ok": b.on_success, "fail": b.on_failure, "release": b.release}[v](now, admitted)
        state = b.state(now)
        admitted_now = b.acquire(now)
        if state == "open":
            assert not admitted_now
        if admitted_now:
            in_flight.append((step + lasts, now, verdict))
        if b.state(now) == "half_open":
            since = b.since
            probes_out = sum(1 for _, admitted, _ in in_flight if admitted >= since)
            assert probes_out <= probes


def test_health_state_thresholds() -> None:
    h = HealthState(healthy_threshold=2, unhealthy_threshold=3)
    assert h.healthy
    assert h.record(False) and h.record(False)
    assert not h.record(False)
    assert not h.record(True)
    assert h.record(True)
    assert h.record(False)  # one failure is not enough again
