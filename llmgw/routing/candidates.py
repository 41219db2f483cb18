"""The targets a routing strategy orders, worked out once per config snapshot.

A ``Group`` is a virtual model's candidates or a pool's targets: the ``Target``s
themselves, their weights, each weighted pick's fallback chain, and what scoring
reads of them as plain tuples (capability bits, context windows, qualities, latency
priors, prices) next to handles on the live state a request reads (a disabled
provider, its circuit breaker, its observed latencies). Nothing here depends on the
request, so the planner (plan.py) does only arithmetic over tuples per request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from llmgw.routing.pools import weighted_order
from llmgw.routing.profiles import Facts
from llmgw.routing.router import CircuitBreaker, Target
from llmgw.routing.scoring import WEIGHTS, weighted_quality

TOOLS, VISION = 1, 2  # capability bits


@dataclass(frozen=True, slots=True)
class Live:
    """A provider's state as routing reads it: kept across reloads (runtime.py)."""

    disabled: bool
    breaker: CircuitBreaker
    latency_ms: Mapping[str, float]  # observed, per upstream model (a live table)


@dataclass(frozen=True, slots=True)
class Group:
    names: tuple[str, ...]  # provider/model, as configured
    targets: tuple[Target, ...]
    models: tuple[str, ...]  # each target's upstream model
    weights: tuple[int, ...]
    by_pick: tuple[tuple[Target, ...], ...]  # weighted: the chain when target i is picked
    caps: tuple[int, ...]  # TOOLS | VISION bits
    context: tuple[int, ...]
    quality: tuple[float, ...]
    # by quality floor: the targets that reach it (all, if none does) and, by strategy,
    # their weighted quality parts: what scoring does when nobody is filtered out
    floored: Mapping[float, tuple[tuple[int, ...], Mapping[str, tuple[float, ...]]]]
    prior_ms: tuple[float, ...]  # profile latency, until observed
    price: tuple[tuple[float, float] | None, ...]  # USD per 1M tokens (input, output)
    disabled: tuple[bool, ...]
    breakers: tuple[CircuitBreaker, ...]
    observed: tuple[Mapping[str, float], ...]
    every: tuple[int, ...]  # 0 .. len - 1
    common_caps: int  # capabilities every target has
    min_context: int
    any_disabled: bool


def group(
    names: Sequence[str],
    facts: Callable[[str], Facts],
    live: Mapping[str, Live],
    weights: Sequence[int] | None = None,
    floors: Sequence[float] = (),
) -> Group:
    """The group of ``names`` (configured ``provider/model`` of known providers);
    ``floors``: the qualities a prompt's complexity may require."""
    known = [facts(name) for name in names]
    states = [live[f.provider] for f in known]
    weights = tuple(weights) if weights is not None else (1,) * len(known)
    targets = tuple(Target(f.provider, f.model) for f in known)
    caps = tuple(
        (TOOLS if f.profile.tools else 0) | (VISION if f.profile.vision else 0) for f in known
    )
    context = tuple(f.profile.context_window for f in known)
    quality = tuple(f.profile.quality for f in known)
    common = TOOLS | VISION
    for bits in caps:
        common &= bits
    return Group(
        names=tuple(names),
        targets=targets,
        models=tuple(f.model for f in known),
        weights=weights,
        by_pick=tuple(tuple(weighted_order(targets, i, weights)) for i in range(len(targets))),
        caps=caps,
        context=context,
        quality=quality,
        floored={floor: _floored(quality, floor) for floor in {0.0, *floors}} if known else {},
        prior_ms=tuple(f.profile.latency_ms for f in known),
        price=tuple(f.price for f in known),
        disabled=tuple(s.disabled for s in states),
        breakers=tuple(s.breaker for s in states),
        observed=tuple(s.latency_ms for s in states),
        every=tuple(range(len(known))),
        common_caps=common,
        min_context=min(context, default=0),
        any_disabled=any(s.disabled for s in states),
    )


def _floored(
    quality: Sequence[float], floor: float
) -> tuple[tuple[int, ...], Mapping[str, tuple[float, ...]]]:
    every = tuple(range(len(quality)))
    kept = tuple(i for i in every if quality[i] >= floor) or every
    kept_quality = [quality[i] for i in kept]
    return kept, {
        strategy: tuple(weighted_quality(kept_quality, w[1])) for strategy, w in WEIGHTS.items()
    }
