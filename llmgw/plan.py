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

from collections.abc import Mapping
from operator import attrgetter
from typing import Any, NamedTuple

from llmgw.config.routing import POOL_ONLY, SCORING
from llmgw.core import Call, estimate_prompt_tokens
from llmgw.errors import InvalidRequest
from llmgw.routing.candidates import TOOLS, VISION, Group, kept
from llmgw.routing.classifier import classify
from llmgw.routing.pools import by_key
from llmgw.routing.router import Target
from llmgw.routing.scoring import WEIGHTS, values
from llmgw.routing.state import RoutingState
from llmgw.runtime import Runtime

STRATEGIES = frozenset((*SCORING, *POOL_ONLY))
EXPECTED_OUTPUT = 256  # output tokens assumed when the request sets no max_tokens


class Decision(NamedTuple):  # a NamedTuple: made on every request, cheaper than a dataclass
    strategy: str
    targets: tuple[Target, ...]
    complexity: str | None  # None: not needed to decide (classify(call.body) says it)
    scores: Mapping[str, float] | None = None
    configured: bool = False  # a virtual model or pool: its targets are configured names


def check(runtime: Runtime, call: Call) -> None:
    """Raise what ``plan`` would for a request that names no model (404) or provider
    (400) of this config, without deciding anything: for an answer from the cache."""
    _check_prefer(runtime, call)
    router = runtime.router
    if router.virtual(call.model) is None and call.model not in runtime.pools:
        router.resolve(call.model)


def _check_prefer(runtime: Runtime, call: Call) -> None:
    ext = call.extensions
    prefer = ext.prefer_provider
    if prefer is not None and prefer not in runtime.providers:
        raise InvalidRequest(
            f"'{ext.provider_field}' names unknown provider '{prefer}'",
            param=ext.provider_field,
        )


def plan(runtime: Runtime, call: Call, state: RoutingState) -> Decision:
    """The request's chain. Only scoring classifies the prompt and estimates its
    tokens; an ordered alias or a plain model name is one table lookup."""
    ext = call.extensions
    prefer = ext.prefer_provider
    _check_prefer(runtime, call)
    router = runtime.router
    virtual = router.virtual(call.model)
    group = runtime.candidates if virtual is not None else runtime.pools.get(call.model)
    if group is None:  # an alias or a model name
        targets = router.resolve(call.model)
        strategy = ext.strategy or "ordered"
        if strategy != "ordered":  # the request asks to reorder them: rare, not precomputed
            group = runtime.group([str(t) for t in targets])
        configured = False
    else:
        pool = router.pools.get(call.model) if virtual is None else None
        strategy = ext.strategy or virtual or (pool.strategy if pool is not None else "ordered")
        targets, configured = group.targets, True
    complexity = scores = None
    if group is None or strategy == "ordered":
        pass
    elif strategy in SCORING:
        complexity = classify(call.body)
        targets, scores = _scored(runtime, call, group, strategy, complexity)
    elif strategy == "weighted":
        pick = state.round_robin(call.model, group.names, group.weights)
        targets = group.by_pick[pick]
    elif strategy in ("least_latency", "least_busy"):
        targets = tuple(by_key(group.targets, _busy(runtime, group, strategy)))
    if prefer is not None:
        targets = tuple(sorted(targets, key=lambda t: t.provider != prefer))
    return Decision(strategy, targets, complexity, scores, configured)


def _scored(
    runtime: Runtime, call: Call, group: Group, strategy: str, complexity: str
) -> tuple[tuple[Target, ...], dict[str, float]]:
    """The group's targets best first, and their scores: capable, healthy and good
    enough ones scored; capable but unhealthy or below the floor last, scored 0."""
    body = call.body
    tools = bool(body.get("tools") or body.get("functions"))
    need = (TOOLS if tools else 0) | (VISION if _has_image(body.get("messages")) else 0)
    prompt = estimate_prompt_tokens(call)  # once per request: limits and usage read it too
    capable = group.every
    if need & ~group.common_caps or prompt > group.min_context:
        caps, context = group.caps, group.context
        capable = tuple(i for i in capable if caps[i] & need == need and prompt <= context[i])
    if not capable:
        what = "tools" if tools else "images" if need else "this prompt's length"
        raise InvalidRequest(
            f"No model for '{call.model}' supports {what}",
            param="tools" if tools else "messages",
        )
    if capable is group.every and _OPEN not in map(_STATE, group.distinct_breakers):
        chosen = group.floored[complexity]  # the usual case: worked out per config snapshot
    else:
        floor = group.floor_of[complexity]
        cooldown = runtime.config.routing.circuit_breaker.cooldown
        disabled, breakers = group.disabled, group.breakers
        healthy = [i for i in capable if not disabled[i] and not breakers[i].is_open(cooldown)]
        # none healthy: the fallback loop says why (503)
        chosen = kept(group, capable, healthy or capable, floor, (strategy,))
    expected = _expected_output(body)
    costs = [None if p is None else prompt * p[0] + expected * p[1] for p in chosen.price]
    latencies = [seen.get(model) or prior for seen, model, prior in chosen.latency]
    scored = values(costs, chosen.terms[strategy], latencies, WEIGHTS[strategy])
    order = sorted(range(len(scored)), key=scored.__getitem__, reverse=True)  # stable
    names = chosen.names
    scores = {names[j]: scored[j] for j in order}
    targets = tuple(map(chosen.targets.__getitem__, order))
    if not chosen.rest_targets:
        return targets, scores
    for name in chosen.rest_names:  # last resorts, after the scored ones
        scores[name] = 0.0
    return targets + chosen.rest_targets, scores


_OPEN = "open"
_STATE = attrgetter("state")


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


def _busy(runtime: Runtime, group: Group, strategy: str) -> list[float]:
    """Each target's requests in flight, or its latency (observed, else the prior)."""
    if strategy == "least_busy":
        providers = runtime.providers
        return [providers[t.provider].state.inflight for t in group.targets]
    observed, models, prior = group.observed, group.models, group.prior_ms
    return [
        seen if (seen := observed[i].get(models[i])) is not None else prior[i] for i in group.every
    ]


def _expected_output(body: dict[str, Any]) -> int:
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        return EXPECTED_OUTPUT
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, 4096)
    return EXPECTED_OUTPUT
