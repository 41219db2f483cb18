"""A bounded sample of recent latencies and its percentiles (health endpoints)."""

from __future__ import annotations

import math
from collections import deque


class Reservoir:
    """The last ``size`` values: O(1) to add, sorted only when percentiles are asked."""

    __slots__ = ("_values",)

    def __init__(self, size: int = 512) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, q: float) -> float | None:
        """The nearest-rank ``q`` percentile (0 < q <= 100), or None when empty."""
        if not self._values:
            return None
        ordered = sorted(self._values)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return round(ordered[rank - 1], 2)

    def summary(self) -> dict[str, float | None]:
        return {f"p{q}": self.percentile(q) for q in (50, 95, 99)}
