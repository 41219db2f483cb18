"""Routing state that outlives a config snapshot: pools' round-robin positions and a
bounded ring of recent decisions (for ``/api/v1/routing``). One per app."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from llmgw.routing.pools import SmoothWeighted
from llmgw.routing.router import Target

RECENT = 100  # decisions kept for /api/v1/routing
SHOWN = 5  # targets of a decision's chain shown


class Recent(NamedTuple):
    """One decision as it was made; put in words only when someone reads the ring."""

    request_id: str
    model: str
    strategy: str
    complexity: str | None
    targets: tuple[Target, ...]
    scores: Mapping[str, float] | None
    at: float  # unix time

    def to_json(self) -> dict[str, Any]:
        chain = [str(t) for t in self.targets[:SHOWN]]
        scores = self.scores or {}
        return {
            "request_id": self.request_id,
            "model": self.model,
            "strategy": self.strategy,
            "complexity": self.complexity,
            "chain": chain,
            "scores": {name: scores[name] for name in chain if name in scores},
            "at": round(self.at, 3),
        }


class RoutingState:
    __slots__ = ("_recent", "_rounds", "decisions")

    def __init__(self, decisions: Counter[tuple[str, ...]]) -> None:
        # (strategy, first target) -> decisions: llmgw_routing_decisions_total's counts
        self.decisions = decisions
        # by pool: its targets and weights (compared, not hashed, per request), its picker
        self._rounds: dict[str, tuple[tuple[str, ...], tuple[int, ...], SmoothWeighted]] = {}
        # plain tuples (a Recent's fields): a request pays no object for its entry
        self._recent: deque[tuple[Any, ...]] = deque(maxlen=RECENT)

    def recent(self) -> list[Recent]:
        """The last ``RECENT`` decisions, oldest first."""
        return [Recent._make(entry) for entry in self._recent]

    def round_robin(self, pool: str, targets: Sequence[str], weights: Sequence[int]) -> int:
        """The next pick of ``pool``: its position survives reloads that keep its targets
        and weights (a changed pool starts over)."""
        targets, weights = tuple(targets), tuple(weights)  # no copy: the group's tuples
        kept = self._rounds.get(pool)
        if kept is None or kept[0] != targets or kept[1] != weights:
            kept = self._rounds[pool] = (targets, weights, SmoothWeighted(weights))
        return kept[2].pick()

    def remember(
        self,
        request_id: str,
        model: str,
        strategy: str,
        complexity: str | None,
        targets: tuple[Target, ...],
        scores: Mapping[str, float] | None,
        first: str,  # str(targets[0])
    ) -> None:
        """Count a decision of a virtual model or pool, and keep it in the ring."""
        self.decisions[strategy, first] += 1
        self._recent.append((request_id, model, strategy, complexity, targets, scores, time.time()))
