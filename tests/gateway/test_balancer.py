from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar_gateway.balancer import SmoothWRR


def test_smooth_interleaving_matches_nginx() -> None:
    wrr = SmoothWRR([5, 1, 1])
    picks = "".join("abc"[wrr.pick()] for _ in range(7))  # type: ignore[index]
    assert picks == "aabacaa"


@given(st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=6), st.integers(1, 3))
def test_each_window_of_total_weight_picks_each_target_weight_times(weights: list[int], rounds: int) -> None:
    wrr = SmoothWRR(weights)
    for _ in range(rounds):
        counts = Counter(wrr.pick() for _ in range(sum(weights)))
        assert counts == {i: w for i, w in enumerate(weights)}


@given(st.lists(st.integers(min_value=1, max_value=10), min_size=2, max_size=5), st.data())
def test_ineligible_targets_are_never_picked(weights: list[int], data: st.DataObject) -> None:
    down = data.draw(st.sets(st.integers(0, len(weights) - 1), max_size=len(weights) - 1))
    wrr = SmoothWRR(weights)
    picks = [wrr.pick(lambda i: i not in down) for _ in range(3 * sum(weights))]
    assert all(p is not None and p not in down for p in picks)
    live = [i for i in range(len(weights)) if i not in down]
    window = Counter(wrr.pick(lambda i: i not in down) for _ in range(sum(weights[i] for i in live)))
    assert window == {i: weights[i] for i in live}


def test_nothing_eligible_is_none() -> None:
    assert SmoothWRR([1, 2]).pick(lambda i: False) is None


def test_bad_weights_are_rejected() -> None:
    with pytest.raises(ValueError):
        SmoothWRR([])
    with pytest.raises(ValueError):
        SmoothWRR([1, 0])
