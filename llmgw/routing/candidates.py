"""The targets a routing strategy orders, worked out once per config snapshot.

A ``Group`` is a virtual model's candidates or a pool's targets: the ``Target``s
themselves, their weights, each weighted pick's fallback chain, and what scoring
reads of them as plain tuples (capability bits, context windows, qualities, latency
priors, prices) next to handles on the live state a request reads (a disabled
provider, its circuit breaker, its observed latencies). Nothing here depends on the
request, so the planner (plan.py) does only arithmetic over tuples per request.

A ``Kept`` is what one request's scoring compares: the targets that pass the
capability, health and quality filters with what scoring reads of each, and the
capable ones left out (last resorts). The usual case, every target capable and no
circuit open, is worked out here once per quality floor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from llmgw.config.routing import MinQuality
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
    floor_of: Mapping[str, float]  # by complexity: the minimum quality (routing.min_quality)
    # by complexity: what scoring compares when every target is capable and no circuit
    # is open (disabled providers are left out, unless all are)
    floored: Mapping[str, Kept]
    prior_ms: tuple[float, ...]  # profile latency, until observed
    price: tuple[tuple[float, float] | None, ...]  # USD per 1M tokens (input, output)
    disabled: tuple[bool, ...]
    breakers: tuple[CircuitBreaker, ...]
    observed: tuple[Mapping[str, float], ...]
    every: tuple[int, ...]  # 0 .. len - 1
    common_caps: int  # capabilities every target has
    min_context: int
    any_disabled: bool
    distinct_breakers: tuple[CircuitBreaker, ...]  # one per provider: is any open?


def group(
    names: Sequence[str],
    facts: Callable[[str], Facts],
    live: Mapping[str, Live],
    weights: Sequence[int] | None = None,
    min_quality: MinQuality | None = None,
) -> Group:
    """The group of ``names`` (configured ``provider/model`` of known providers);
    ``min_quality``: the qualities a prompt's complexity requires."""
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
    every = tuple(range(len(known)))
    floors = min_quality or MinQuality(medium=0.0, complex=0.0)
    floor_of = {"simple": 0.0, "medium": floors.medium, "complex": floors.complex}
    disabled = tuple(s.disabled for s in states)
    enabled = tuple(i for i in every if not disabled[i]) or every
    built = Group(
        names=tuple(names),
        targets=targets,
        models=tuple(f.model for f in known),
        weights=weights,
        by_pick=tuple(tuple(weighted_order(targets, i, weights)) for i in range(len(targets))),
        caps=caps,
        context=context,
        quality=quality,
        floor_of=floor_of,
        floored={},
        prior_ms=tuple(f.profile.latency_ms for f in known),
        price=tuple(f.price for f in known),
        disabled=disabled,
        breakers=tuple(s.breaker for s in states),
        observed=tuple(s.latency_ms for s in states),
        every=every,
        common_caps=common,
        min_context=min(context, default=0),
        any_disabled=any(disabled),
        distinct_breakers=tuple({id(s.breaker): s.breaker for s in states}.values()),
    )
    if not known:
        return built
    floored = {
        complexity: kept(built, every, enabled, floor, WEIGHTS)
        for complexity, floor in floor_of.items()
    }
    return replace(built, floored=floored)


@dataclass(frozen=True, slots=True)
class Kept:
    """What one request's scoring compares, as parallel tuples in group order."""

    targets: tuple[Target, ...]
    names: tuple[str, ...]
    price: tuple[tuple[float, float] | None, ...]
    # where each one's latency is read: its provider's observed table, its upstream
    # model (the key), its profile's prior (until observed)
    latency: tuple[tuple[Mapping[str, float], str, float], ...]
    terms: Mapping[str, tuple[float, ...]]  # by strategy: the weighted quality parts
    # capable but left out (unhealthy, or below the floor): last, scored 0
    rest_targets: tuple[Target, ...]
    rest_names: tuple[str, ...]


def kept(
    group: Group,
    capable: Sequence[int],
    healthy: Sequence[int],
    floor: float,
    strategies: Iterable[str],
) -> Kept:
    """The ``healthy`` targets that reach ``floor`` (all of them, if none does),
    with the weighted quality parts of ``strategies``; the rest of ``capable`` last."""
    quality = group.quality
    pool = [i for i in healthy if quality[i] >= floor] or list(healthy)
    chosen = set(pool)
    rest = [i for i in capable if i not in chosen]
    pool_quality = [quality[i] for i in pool]
    targets, names, observed = group.targets, group.names, group.observed
    return Kept(
        targets=tuple(targets[i] for i in pool),
        names=tuple(names[i] for i in pool),
        price=tuple(group.price[i] for i in pool),
        latency=tuple((observed[i], group.models[i], group.prior_ms[i]) for i in pool),
        terms={s: tuple(weighted_quality(pool_quality, WEIGHTS[s][1])) for s in strategies},
        rest_targets=tuple(targets[i] for i in rest),
        rest_names=tuple(names[i] for i in rest),
    )
