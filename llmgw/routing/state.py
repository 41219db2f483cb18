"""Routing state that outlives a config snapshot: pools' round-robin positions and a
bounded ring of recent decisions (for ``/api/v1/routing``). One per app."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from llmgw.routing.pools import SmoothWeighted

RECENT = 100  # decisions kept for /api/v1/routing


class RoutingState:
    __slots__ = ("_rounds", "recent")

    def __init__(self) -> None:
        self._rounds: dict[tuple[str, tuple[str, ...], tuple[int, ...]], SmoothWeighted] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)

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

    def remember(self, decision: dict[str, Any]) -> None:
        decision["at"] = round(time.time(), 3)
        self.recent.append(decision)
