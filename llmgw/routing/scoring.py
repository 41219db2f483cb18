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
    weights = WEIGHTS[strategy]
    scored = values(
        [o.cost for o in options],
        weighted_quality([o.quality for o in options], weights[1]),
        [o.latency_ms for o in options],
        weights,
    )
    order = sorted(range(len(options)), key=scored.__getitem__, reverse=True)  # stable
    return [(options[i].target, scored[i]) for i in order]


def values(
    costs: Sequence[float | None],
    quality_terms: Sequence[float],
    latencies: Sequence[float],
    weights: tuple[float, float, float],
) -> list[float]:
    """Each option's score (rounded to 4 places), in the given order: plain arithmetic
    over parallel sequences, so that a request builds no object per candidate.
    ``quality_terms``: the quality parts (``weighted_quality``), precomputed per
    config snapshot for the usual groups."""
    w_cost, _, w_latency = weights
    known = [cost for cost in costs if cost is not None]
    cheap, dear = (min(known), max(known)) if known else (0.0, 0.0)
    quick, slow = min(latencies), max(latencies)
    # x - y == 0 exactly when x == y (IEEE floats): the spans say "all equal"
    cost_span, latency_span = dear - cheap, slow - quick
    scored = []
    for cost, quality_term, latency in zip(costs, quality_terms, latencies, strict=True):
        value = (
            w_cost * (0.0 if cost is None else (dear - cost) / cost_span if cost_span else 1.0)
            + quality_term
            + w_latency * ((slow - latency) / latency_span if latency_span else 1.0)
        )
        # round4(value), inline: a call per candidate shows in the benchmark (a plain
        # loop measured faster than one or two comprehensions here)
        scaled = value * 10_000.0
        whole = round(scaled)
        scored.append(
            whole / 10_000.0 if -_NOT_HALF < scaled - whole < _NOT_HALF else round(value, 4)
        )
    return scored


def weighted_quality(qualities: Sequence[float], weight: float) -> list[float]:
    """The quality part of each score: normalised over ``qualities``, weighted."""
    low_q, high_q = min(qualities), max(qualities)
    span = high_q - low_q
    return [weight * ((quality - low_q) / span if span else 1.0) for quality in qualities]


def round4(value: float) -> float:
    """``round(value, 4)`` for a score (0 to 1), twice as fast: the scaled value's
    nearest integer over 10,000 is the same float, unless the scaling's rounding error
    (under 1e-12 here) could have crossed a half, where ``round`` itself decides."""
    scaled = value * 10_000.0
    whole = round(scaled)
    if -_NOT_HALF < scaled - whole < _NOT_HALF:
        return whole / 10_000.0
    return round(value, 4)


_NOT_HALF = 0.5 - 1e-9  # a scaled score this far from a half rounds the same either way
