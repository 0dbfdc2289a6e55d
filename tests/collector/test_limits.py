"""Cardinality limits (pure): admission order, known names always pass, refused lines reported."""

from __future__ import annotations

from collector.ingest import parse_ndjson
from collector.limits import CardinalityLimit, drop_refused
from collector.windows import fold_batch
from tests.collector.helpers import event, ndjson


def test_new_names_are_admitted_in_order_until_the_limit_and_known_ones_always_pass() -> None:
    limit = CardinalityLimit(max_routes=2, max_backends_per_route=2)
    assert limit.check([("a", "x"), ("a", None), ("b", "x")]) == {}
    refused = limit.check([("c", "x"), ("a", "y"), ("a", "z"), ("b", None), ("c", None)])
    assert {key: r.reason for key, r in refused.items()} == {
        ("c", "x"): "max_routes",
        ("a", "z"): "max_backends_per_route",
        ("c", None): "max_routes",
    }
    assert limit.check([("a", "x"), ("a", "y"), ("b", "x")]) == {}
    assert limit.routes == 2


def test_drop_refused_turns_refused_events_into_rejected_lines_in_line_order() -> None:
    events = [event(route="a"), event(route="new"), event(route="a"), event(route="new", backend="b9")]
    body = b"{}\n" + ndjson(events)  # line 1 is a schema rejection
    parsed = parse_ndjson(body)
    figures = fold_batch(parsed.events, 0.01)
    limit = CardinalityLimit(max_routes=1, max_backends_per_route=8)
    refused = limit.check(figures.aggregates)
    kept, kept_figures, by_reason = drop_refused(parsed, figures, refused, max_reported=100)
    assert [e.route for e in kept.events] == ["a", "a"]
    assert kept.numbers == [2, 4]
    assert [r.line for r in kept.rejected] == [1, 3, 5]
    assert kept.rejected_total == 3
    assert kept.rejected[1].error.startswith("gateway.route: 'new' refused")
    assert by_reason == {"max_routes": 2}
    assert {route for route, _ in kept_figures.aggregates} == {"a"}
    assert {route for route, _ in kept_figures.circuit_states} == {"a"}
