"""The planner's fast paths (precomputed per config snapshot, see routing/candidates.py)
against SPEC §10's rules written out plainly: the same chain and the same scores for
random candidates, prices, profiles, disabled providers, open circuits, capabilities,
quality floors and observed latencies. Also the round-robin positions of pools."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest

from llmgw.api.calls import parse_call
from llmgw.config import parse
from llmgw.core import estimate_prompt_tokens
from llmgw.errors import InvalidRequest
from llmgw.http.client import Pool
from llmgw.plan import plan
from llmgw.routing.classifier import classify
from llmgw.routing.scoring import WEIGHTS
from llmgw.routing.state import RoutingState
from llmgw.runtime import ProviderStates, Runtime, build_runtime

WORDS = [
    "explain",
    "why",
    "the",
    "proof",
    "of",
    "this",
    "theorem",
    "in",
    "python",
    "is",
    "slow,",
    "step",
    "by",
    "step",
]


def random_config(rng: random.Random) -> str:
    providers, profiles, prices, candidates = [], [], [], []
    for p in range(rng.randint(1, 4)):
        models = [f"m{p}{m}" for m in range(rng.randint(1, 3))]
        key = rng.choice(["k", "k", "k", ""])  # an empty key disables the provider
        providers.append(f"  p{p}: {{type: openai, api_key: '{key}', models: {models}}}")
        for model in models:
            candidates.append(f"p{p}/{model}")
            quality = rng.choice([0.5, 0.55, 0.7, 0.8, 0.85, 0.9, 0.95])
            latency = rng.choice([300, 500, 500, 900])
            context = rng.choice([200, 100_000])
            tools, vision = rng.choice([True, False]), rng.choice([True, False])
            profiles.append(
                f"  {model}: {{quality: {quality}, latency_ms: {latency}, "
                f"context_window: {context}, tools: {str(tools).lower()}, "
                f"vision: {str(vision).lower()}}}"
            )
            if rng.random() < 0.8:
                i, o = rng.choice([0.1, 0.15, 1, 2.5, 5]), rng.choice([0.4, 0.6, 4, 10, 15])
                prices.append(f"  {model}: {{input: {i}, output: {o}}}")
    medium, complex_ = rng.choice([0.0, 0.6, 0.8]), rng.choice([0.8, 0.9, 0.99])
    return (
        "providers:\n"
        + "\n".join(providers)
        + f"\nrouting:\n  min_quality: {{medium: {medium}, complex: {complex_}}}\n"
        + f"  candidates: {rng.sample(candidates, len(candidates))}\n"
        + "profiles:\n"
        + "\n".join(profiles)
        + ("\nprices:\n" + "\n".join(prices) if prices else "")
        + "\n"
    )


def random_body(rng: random.Random, model: str) -> dict[str, Any]:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))
    if rng.random() < 0.2:
        text *= 40  # past the small context windows
    content: Any = text
    if rng.random() < 0.2:
        content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": "x"}}]
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    if rng.random() < 0.3:
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    if rng.random() < 0.3:
        body["max_tokens"] = rng.choice([10, 1000, 9000])
    return body


def plainly(runtime: Runtime, body: dict[str, Any], strategy: str) -> Any:
    """SPEC §10 over ``runtime``'s candidates, one step at a time: (chain, scores), or
    None when no candidate is capable."""
    call = parse_call("chat", orjson.dumps(body))
    names = list(runtime.config.routing.candidates or ())
    facts = [runtime.profiles[name] for name in names]
    states = [runtime.providers[f.provider] for f in facts]
    tools = bool(body.get("tools"))
    image = not isinstance(body["messages"][0]["content"], str)
    prompt = estimate_prompt_tokens(call)
    capable = [
        i
        for i, f in enumerate(facts)
        if (f.profile.tools or not tools)
        and (f.profile.vision or not image)
        and prompt <= f.profile.context_window
    ]
    if not capable:
        return None
    cooldown = runtime.config.routing.circuit_breaker.cooldown
    healthy = [
        i
        for i in capable
        if states[i].disabled is None and not states[i].state.breaker.is_open(cooldown)
    ] or capable
    complexity = classify(body)
    floors = runtime.config.routing.min_quality
    floor = {"complex": floors.complex, "medium": floors.medium}.get(complexity, 0.0)
    pool = [i for i in healthy if facts[i].profile.quality >= floor] or healthy
    expected = min(body.get("max_tokens", 256), 4096)
    costs: list[float | None] = []
    for i in pool:
        price = facts[i].price
        costs.append(None if price is None else prompt * price[0] + expected * price[1])
    latencies = [
        states[i].state.target_latency_ms.get(facts[i].model) or facts[i].profile.latency_ms
        for i in pool
    ]
    qualities = [facts[i].profile.quality for i in pool]
    w_cost, w_quality, w_latency = WEIGHTS[strategy]
    known = [c for c in costs if c is not None]
    scores = []
    for cost, quality, latency in zip(costs, qualities, latencies, strict=True):
        cost_part = 0.0
        if cost is not None:
            span = max(known) - min(known)
            cost_part = (max(known) - cost) / span if span else 1.0
        span = max(qualities) - min(qualities)
        quality_part = w_quality * ((quality - min(qualities)) / span if span else 1.0)
        span = max(latencies) - min(latencies)
        latency_part = (max(latencies) - latency) / span if span else 1.0
        scores.append(round(w_cost * cost_part + quality_part + w_latency * latency_part, 4))
    ranked = sorted(range(len(pool)), key=lambda j: -scores[j])  # stable: ties keep order
    chain = [names[pool[j]] for j in ranked]
    by_name = {names[pool[j]]: scores[j] for j in ranked}
    for i in capable:
        if i not in pool:
            chain.append(names[i])
            by_name[names[i]] = 0.0
    return chain, by_name


@pytest.mark.parametrize("seed", range(6))
async def test_planner_scores_as_the_plain_rules_say(seed: int) -> None:
    rng = random.Random(seed)
    pool = Pool(user_agent="test", max_body=1 << 20)
    try:
        for _ in range(15):
            runtime = build_runtime(parse(random_config(rng), environ={}), ProviderStates(), pool)
            for _ in range(15):
                for provider in runtime.providers.values():  # live state moves between requests
                    state = provider.state
                    if rng.random() < 0.2:
                        state.breaker.failure(1)  # open
                    elif rng.random() < 0.5:
                        state.breaker.success()
                    for model in provider.config.models or ():
                        if rng.random() < 0.3:
                            state.target_latency_ms[model] = rng.choice([100.0, 450.0, 2000.0])
                model = rng.choice(["auto", "fast", "cheap"])
                strategy = runtime.router.virtual(model)
                assert strategy is not None
                body = random_body(rng, model)
                expected = plainly(runtime, body, strategy)
                call = parse_call("chat", orjson.dumps(body))
                if expected is None:
                    with pytest.raises(InvalidRequest):
                        plan(runtime, call, RoutingState(Counter()))
                    continue
                decision = plan(runtime, call, RoutingState(Counter()))
                assert [str(t) for t in decision.targets] == expected[0]
                assert decision.scores == expected[1]
                assert list(decision.scores or ()) == expected[0]  # best first
    finally:
        await pool.close()


def test_a_pools_position_survives_the_same_pool_and_restarts_a_changed_one() -> None:
    state = RoutingState(Counter())
    picks = [state.round_robin("p", ("a/x", "b/y"), (2, 1)) for _ in range(2)]
    assert picks == [0, 1]  # smooth weighted: a, b, a, a, b, a, ...
    assert state.round_robin("p", ["a/x", "b/y"], [2, 1]) == 0  # equal, as lists: kept
    assert state.round_robin("p", ("a/x", "b/y"), (2, 1)) == 0
    assert state.round_robin("p", ("a/x", "b/y"), (2, 1)) == 1
    assert state.round_robin("p", ("a/x", "b/y"), (1, 2)) == 1  # new weights: from the start
    assert state.round_robin("q", ("a/x", "b/y"), (2, 1)) == 0  # another pool: its own


def test_decisions_are_counted_and_kept_in_order() -> None:
    counts: Counter[tuple[str, ...]] = Counter()
    state = RoutingState(counts)
    for n in range(105):
        state.remember(f"r{n}", "auto", "balanced", "simple", (), {"a/x": 1.0}, "a/x")
    state.remember("last", "pool", "weighted", "medium", (), None, "b/y")
    assert counts == {("balanced", "a/x"): 105, ("weighted", "b/y"): 1}
    recent = state.recent()
    assert len(recent) == 100 and recent[0].request_id == "r6" and recent[-1].model == "pool"
