"""Routing state that outlives a snapshot: the round-robin positions of pools, the
decisions counted (llmgw_routing_decisions_total) and kept for /api/v1/routing."""

from __future__ import annotations

from collections import Counter

from llmgw.routing.state import RoutingState


def test_a_pools_position_survives_the_same_pool_and_restarts_a_changed_one() -> None:
    state = RoutingState(Counter())
    picks = [state.round_robin("p", ("a/x", "b/y"), (2, 1)) for _ in range(2)]
    assert picks == [0, 1]  # smooth weighted: a, b, a, a, b, a, ...
    assert state.round_robin("p", ["a/x", "b/y"], [2, 1]) == 0  # equal, as lists: kept
    assert state.round_robin("p", ("a/x", "b/y"), (2, 1)) == 0
    assert state.round_robin("p", ("a/x", "b/y"), (2, 1)) == 1
    assert state.round_robin("p", ("a/x", "b/y"), (1, 2)) == 1  # new weights: from the start
    assert state.round_robin("q", ("a/x", "b/y"), (2, 1)) == 0  # another pool: its own


def test_decisions_are_counted_and_kept_in_order() -> None:
    counts: Counter[tuple[str, ...]] = Counter()
    state = RoutingState(counts)
    for n in range(105):
        state.remember(f"r{n}", "auto", "balanced", "simple", (), {"a/x": 1.0}, "a/x")
    state.remember("last", "pool", "weighted", "medium", (), None, "b/y")
    assert counts == {("balanced", "a/x"): 105, ("weighted", "b/y"): 1}
    recent = state.recent()
    assert len(recent) == 100 and recent[0].request_id == "r6" and recent[-1].model == "pool"
