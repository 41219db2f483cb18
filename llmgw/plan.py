"""The routing decision of one request: which targets, in which order, and why.

- a virtual model (``auto``, ``fast``, ``cheap``) scores ``routing.candidates``;
- an alias pool orders its targets by its strategy;
- anything else resolves as before (routing/router.py), reordered only when the
  request asks for a strategy.
Scoring strategies filter by capability first (tools, images, context window,
disabled providers and open circuits), then by the minimum quality of the prompt's
complexity (if no candidate meets it, every capable one stays, best first).
``x-prefer-provider`` moves that provider's targets to the front.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmgw.config.routing import POOL_ONLY, SCORING
from llmgw.core import Call, estimate_prompt_tokens
from llmgw.errors import InvalidRequest
from llmgw.routing.classifier import classify
from llmgw.routing.pools import by_key, weighted_order
from llmgw.routing.profiles import Facts, Profile, facts_of
from llmgw.routing.router import Target
from llmgw.routing.scoring import Option, score
from llmgw.routing.state import RoutingState
from llmgw.runtime import Runtime

STRATEGIES = frozenset((*SCORING, *POOL_ONLY))
EXPECTED_OUTPUT = 256  # output tokens assumed when the request sets no max_tokens


@dataclass(frozen=True, slots=True)
class Decision:
    strategy: str
    targets: tuple[Target, ...]
    complexity: str
    scores: Mapping[str, float] | None = None
    configured: bool = False  # a virtual model or pool: its targets are configured names


@dataclass(frozen=True, slots=True)
class Needs:
    """What the request asks of a model."""

    tools: bool
    vision: bool
    prompt_tokens: int


def plan(runtime: Runtime, call: Call, state: RoutingState) -> Decision:
    ext = call.extensions
    router = runtime.router
    if ext.prefer_provider is not None and ext.prefer_provider not in runtime.providers:
        raise InvalidRequest(
            f"'{ext.provider_field}' names unknown provider '{ext.prefer_provider}'",
            param=ext.provider_field,
        )
    complexity = classify(call.body)
    virtual = router.virtual(call.model)
    pool = router.pools.get(call.model)
    if virtual is not None:
        config = runtime.config.routing
        names = list(config.candidates) if config.candidates is not None else None
        names = names if names is not None else [str(t) for t in router.chat_targets]
        strategy, weights, configured = ext.strategy or virtual, [1] * len(names), True
    elif pool is not None:
        names = [p.target for p in pool.targets]
        weights = [p.weight for p in pool.targets]
        strategy, configured = ext.strategy or pool.strategy, True
    else:
        resolved = router.resolve(call.model)
        names, weights = [str(t) for t in resolved], [1] * len(resolved)
        strategy, configured = ext.strategy or "ordered", False
    scores = None
    if strategy in SCORING:
        ranked = _scored(runtime, call, names, strategy, complexity)
        names = [name for name, _ in ranked]
        scores = dict(ranked)
    elif strategy == "weighted":
        names = weighted_order(names, state.round_robin(call.model, names, weights), weights)
    elif strategy in ("least_latency", "least_busy"):
        names = by_key(names, [_busy(runtime, n, strategy) for n in names])
    if ext.prefer_provider is not None:
        prefer = ext.prefer_provider
        names = sorted(names, key=lambda n: n.partition("/")[0] != prefer)
    targets = tuple(Target(*name.split("/", 1)) for name in names)
    return Decision(strategy, targets, complexity, scores, configured)


def _scored(
    runtime: Runtime, call: Call, names: Sequence[str], strategy: str, complexity: str
) -> list[tuple[str, float]]:
    needs = needs_of(call)
    providers = runtime.providers
    cooldown = runtime.config.routing.circuit_breaker.cooldown
    floor = _min_quality(runtime, complexity)
    capable: list[Facts] = []
    healthy: list[Facts] = []
    for name in names:
        facts = runtime.profiles.get(name) or facts_of(name, runtime.config)
        profile = facts.profile
        if (
            (needs.tools and not profile.tools)
            or (needs.vision and not profile.vision)
            or needs.prompt_tokens > profile.context_window
        ):
            continue
        capable.append(facts)
        provider = providers[facts.provider]
        if provider.disabled is None and not provider.state.breaker.is_open(cooldown):
            healthy.append(facts)
    if not capable:
        what = "tools" if needs.tools else "images" if needs.vision else "this prompt's length"
        raise InvalidRequest(
            f"No model for '{call.model}' supports {what}",
            param="tools" if needs.tools else "messages",
        )
    pool = healthy or capable  # none healthy: the fallback loop says why (503)
    pool = [f for f in pool if f.profile.quality >= floor] or pool
    expected = _expected_output(call.body)
    prompt = needs.prompt_tokens
    options = []
    for facts in pool:
        price = facts.price
        cost = None if price is None else prompt * price[0] + expected * price[1]
        latency = providers[facts.provider].state.target_latency_ms.get(facts.model)
        options.append(
            Option(facts.name, cost, facts.profile.quality, latency or facts.profile.latency_ms)
        )
    ranked = score(options, strategy)
    # capable but unhealthy or below the floor: last resorts, after the scored ones
    chosen = {f.name for f in pool}
    return ranked + [(f.name, 0.0) for f in capable if f.name not in chosen]


def needs_of(call: Call) -> Needs:
    body = call.body
    tools = bool(body.get("tools") or body.get("functions"))
    return Needs(tools, _has_image(body.get("messages")), estimate_prompt_tokens(call))


def _has_image(messages: object) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in _IMAGE_PARTS:
                    return True
    return False


_IMAGE_PARTS = frozenset({"image_url", "image", "input_image"})


def _profile(runtime: Runtime, name: str) -> Profile:
    found = runtime.profiles.get(name)
    if found is None:  # an alias reordered by a request's strategy: not precomputed
        found = facts_of(name, runtime.config)
    return found.profile


def _min_quality(runtime: Runtime, complexity: str) -> float:
    floors = runtime.config.routing.min_quality
    return (
        floors.complex
        if complexity == "complex"
        else (floors.medium if complexity == "medium" else 0.0)
    )


def _busy(runtime: Runtime, name: str, strategy: str) -> float:
    provider, _, model = name.partition("/")
    state = runtime.providers[provider].state
    if strategy == "least_busy":
        return state.inflight
    observed = state.target_latency_ms.get(model)
    return observed if observed is not None else _profile(runtime, name).latency_ms


def _expected_output(body: dict[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, 4096)
    return EXPECTED_OUTPUT


def describe(decision: Decision, call: Call, request_id: str) -> dict[str, Any]:
    """One entry of the recent-decisions ring."""
    chain = [str(t) for t in decision.targets[:5]]
    scores = decision.scores or {}
    return {
        "request_id": request_id,
        "model": call.model,
        "strategy": decision.strategy,
        "complexity": decision.complexity,
        "chain": chain,
        "scores": {name: scores[name] for name in chain if name in scores},
    }
