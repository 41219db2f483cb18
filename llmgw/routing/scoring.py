"""Scores of capable targets under a strategy (SPEC §10).

Each target has an expected cost (``prices:`` of the estimated input and expected
output tokens), a quality (its profile) and a latency (observed, else the profile's
prior). Each is normalised over the targets being compared — the best 1, the worst 0,
all equal 1 — and weighted by the strategy. An unknown price scores 0 on cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

# (cost, quality, latency)
WEIGHTS: dict[str, tuple[float, float, float]] = {
    "balanced": (0.40, 0.35, 0.25),
    "cost": (0.80, 0.10, 0.10),
    "quality": (0.05, 0.85, 0.10),
    "latency": (0.10, 0.10, 0.80),
}


class Option(NamedTuple):
    target: str  # provider/model
    cost: float | None  # USD for this request, None when no price is known
    quality: float
    latency_ms: float


def score(options: Sequence[Option], strategy: str) -> list[tuple[str, float]]:
    """(target, score) best first; ties keep the given order."""
    w_cost, w_quality, w_latency = WEIGHTS[strategy]
    known = [o.cost for o in options if o.cost is not None]
    cheap, dear = (min(known), max(known)) if known else (0.0, 0.0)
    low_q, high_q = min(o.quality for o in options), max(o.quality for o in options)
    quick = min(o.latency_ms for o in options)
    slow = max(o.latency_ms for o in options)
    scored = []
    for option in options:
        cost = option.cost
        value = (
            w_cost
            * (0.0 if cost is None else 1.0 if dear == cheap else (dear - cost) / (dear - cheap))
            + w_quality * (1.0 if high_q == low_q else (option.quality - low_q) / (high_q - low_q))
            + w_latency * (1.0 if slow == quick else (slow - option.latency_ms) / (slow - quick))
        )
        scored.append((option.target, round(value, 4)))
    scored.sort(key=lambda pair: -pair[1])  # stable: ties keep the configured order
    return scored
