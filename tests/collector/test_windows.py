"""Sliding windows with an injected clock: slot rotation, rates, route and backend figures."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.windows import COARSE_SLOTS, FINE_SLOTS, SlidingWindows, WindowName
from tests.collector.helpers import BACKENDS, event


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def requests_in(w: SlidingWindows, window: WindowName, route: str = "users") -> int:
    snap = w.snapshot(window)
    return snap.routes[route].total.requests if route in snap.routes else 0


def test_windows_rotate_out_old_slots_and_total_keeps_everything() -> None:
    clock = FakeClock(1000.0)  # fine slot 100, coarse slot 16
    w = SlidingWindows(0.005, clock)
    w.add([event()] * 10)
    clock.now = 1030.0  # fine slot 103
    w.add([event()] * 5)

    clock.now = 1059.0  # 1m = fine slots 100..105: both batches
    assert requests_in(w, "1m") == 15
    clock.now = 1060.0  # 1m = slots 101..106: the first batch has left
    assert requests_in(w, "1m") == 5
    clock.now = 1299.0  # 5m = slots 100..129
    assert requests_in(w, "5m") == 15
    clock.now = 1300.0
    assert requests_in(w, "5m") == 5
    clock.now = 1090.0 + 300  # after 5m (slot 139): the second batch has left too
    assert requests_in(w, "5m") == 0
    # 1h uses 60 s slots: the first batch (coarse slot 16) leaves at slot 76 = 4560 s.
    clock.now = 4559.0
    assert requests_in(w, "1h") == 15
    clock.now = 4560.0
    assert requests_in(w, "1h") == 5
    clock.now = 10_000.0
    assert requests_in(w, "1h") == 0
    assert requests_in(w, "total") == 15


def test_a_route_without_recent_traffic_reports_zeros_and_no_latency() -> None:
    clock = FakeClock(0.0)
    w = SlidingWindows(0.005, clock)
    w.add([event(route="orders", duration_ns=5_000_000)])
    clock.now = 120.0
    snap = w.snapshot("1m")
    orders = snap.routes["orders"]
    assert orders.total.requests == 0
    assert orders.total.latency.quantile(0.5) is None
    assert orders.backends[BACKENDS[0]].requests == 0  # known backends stay listed


def test_rates_divide_by_the_time_the_window_covers() -> None:
    clock = FakeClock(995.0)  # collector starts mid-slot 99
    w = SlidingWindows(0.005, clock)
    clock.now = 1000.0
    w.add([event()] * 30)
    clock.now = 1025.0
    snap = w.snapshot("1m")  # slots 97..102, but the collector only started at 995
    assert snap.span_seconds == 30.0
    assert snap.rate(30) == 1.0
    clock.now = 2000.0
    snap = w.snapshot("1m")  # slots 195..200: a full 50 s + the 0 s of the current slot
    assert snap.span_seconds == 50.0
    assert w.snapshot("total").span_seconds == 1005.0


def test_route_level_counts_events_without_a_backend_and_backends_are_split() -> None:
    w = SlidingWindows(0.005, FakeClock(0.0))
    w.add(
        [
            event(backend=BACKENDS[0], status=200, duration_ns=10_000_000),
            event(backend=BACKENDS[1], status=502, outcome="failure", duration_ns=30_000_000),
            event(backend=None, status=503, error="circuit_open", outcome="failure", circuit_state=None),
            event(backend=BACKENDS[0], status=499, error="client_disconnect", duration_ns=0),
            event(backend=BACKENDS[0], status=200, error="upstream_timeout", outcome="failure"),
        ]
    )
    route = w.snapshot("total").routes["users"]
    assert (route.total.requests, route.total.errors) == (5, 3)
    assert route.total.status_codes == {200: 2, 502: 1, 503: 1, 499: 1}
    assert sorted(route.backends) == sorted(BACKENDS)
    b0, b1 = route.backends[BACKENDS[0]], route.backends[BACKENDS[1]]
    assert (b0.requests, b0.errors, b1.requests, b1.errors) == (3, 1, 1, 1)
    assert b0.latency.zero_count == 1
    assert b1.latency.quantile(0.5) is not None and abs(b1.latency.quantile(0.5) - 0.03) <= 0.03 * 0.005


def test_last_reported_circuit_state_wins_per_backend() -> None:
    w = SlidingWindows(0.005, FakeClock(0.0))
    w.add([event(circuit_state="closed"), event(circuit_state="open"), event(backend=BACKENDS[1])])
    w.add([event(circuit_state=None)])  # no report: the last known state stays
    assert w.circuit_states() == {("users", BACKENDS[0]): "open", ("users", BACKENDS[1]): "closed"}
    w.add([event(circuit_state="half_open")])
    assert w.snapshot("5m").circuit_states[("users", BACKENDS[0])] == "half_open"


def test_a_clock_stepping_back_does_not_reopen_old_slots() -> None:
    clock = FakeClock(1000.0)
    w = SlidingWindows(0.005, clock)
    clock.now = 1100.0
    w.add([event()])
    clock.now = 900.0  # NTP stepped the wall clock back
    w.add([event()])
    assert requests_in(w, "1m") == 2  # counted at 1100, the latest time seen
    clock.now = 1161.0
    assert requests_in(w, "1m") == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 400), st.integers(1, 3)), min_size=1, max_size=30), st.integers(0, 4000)
)
def test_windows_equal_a_brute_force_count(batches: list[tuple[int, int]], query_after: int) -> None:
    """Batches arrive at increasing times; each window counts exactly the batches whose slot lies
    within its last n slots, and memory holds no more slots than the ring's length."""
    clock = FakeClock(0.0)
    w = SlidingWindows(0.005, clock)
    t = 0.0
    arrivals = []
    for gap, size in batches:
        t += gap
        clock.now = t
        w.add([event()] * size)
        arrivals.append((t, size))
    clock.now = t + query_after
    now = clock.now
    rings: tuple[tuple[WindowName, int, int], ...] = (("1m", 10, 6), ("5m", 10, 30), ("1h", 60, 60))
    for window, slot, n in rings:
        current = int(now // slot)
        expected = sum(size for at, size in arrivals if current - n < int(at // slot) <= current)
        assert requests_in(w, window) == expected
    assert requests_in(w, "total") == sum(size for _, size in arrivals)
    assert len(w._fine.slot_indexes()) <= FINE_SLOTS
    assert len(w._coarse.slot_indexes()) <= COARSE_SLOTS
