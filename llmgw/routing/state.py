"""Routing state that outlives a config snapshot: pools' round-robin positions and a
bounded ring of recent decisions (for ``/api/v1/routing``). One per app."""

from __future__ import annotations

import time
from collections import deque
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
    __slots__ = ("_rounds", "recent")

    def __init__(self) -> None:
        self._rounds: dict[tuple[str, tuple[str, ...], tuple[int, ...]], SmoothWeighted] = {}
        self.recent: deque[Recent] = deque(maxlen=RECENT)

    def round_robin(self, pool: str, targets: Sequence[str], weights: Sequence[int]) -> int:
        """The next pick of ``pool``: its position survives reloads that keep its targets
        and weights (a changed pool starts over)."""
        key = (pool, tuple(targets), tuple(weights))
        rounds = self._rounds.get(key)
        if rounds is None:
            for old in [k for k in self._rounds if k[0] == pool]:
                del self._rounds[old]
            rounds = self._rounds[key] = SmoothWeighted(weights)
        return rounds.pick()

    def remember(
        self,
        request_id: str,
        model: str,
        strategy: str,
        complexity: str | None,
        targets: tuple[Target, ...],
        scores: Mapping[str, float] | None,
    ) -> None:
        self.recent.append(
            Recent(request_id, model, strategy, complexity, targets, scores, time.time())
        )
