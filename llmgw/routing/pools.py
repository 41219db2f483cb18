"""How an alias pool orders its targets without scores: ``ordered`` (as listed),
``weighted`` (smooth weighted round-robin, as nginx does), ``least_latency`` and
``least_busy``. The chosen target leads; the others follow as the fallback chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class SmoothWeighted:
    """nginx's smooth weighted round-robin: every pick adds each weight to its
    target's current value, takes the largest, and takes the total off it. Over any
    ``sum(weights)`` picks each target is chosen exactly ``weight`` times, spread out."""

    __slots__ = ("_current", "_total", "weights")

    def __init__(self, weights: Sequence[int]) -> None:
        self.weights = tuple(weights)
        self._current = [0] * len(self.weights)
        self._total = sum(self.weights)

    def pick(self) -> int:
        current = self._current
        best = 0
        for index, weight in enumerate(self.weights):
            current[index] += weight
            if current[index] > current[best]:
                best = index
        current[best] -= self._total
        return best


def weighted_order(targets: Sequence[T], first: int, weights: Sequence[int]) -> list[T]:
    """The picked target, then the rest by weight (heaviest first), as the fallback chain."""
    rest = sorted((i for i in range(len(targets)) if i != first), key=lambda i: -weights[i])
    return [targets[first], *(targets[i] for i in rest)]


def by_key(targets: Sequence[T], keys: Sequence[float]) -> list[T]:
    """``targets`` by ascending key (latency, requests in flight); ties keep their order."""
    order = sorted(range(len(targets)), key=lambda i: keys[i])
    return [targets[i] for i in order]
