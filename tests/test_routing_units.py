"""The pure parts of smart routing: the complexity classifier on a table of prompts,
weighted pools over 1,000 picks, scores by strategy, profiles."""

from __future__ import annotations

from collections import Counter

import pytest

from llmgw.routing.classifier import classify
from llmgw.routing.pools import SmoothWeighted, weighted_order
from llmgw.routing.profiles import UNKNOWN, built_in
from llmgw.routing.scoring import Option, score

PROMPTS = [
    ("What is 2+2?", "simple"),
    ("Hi there!", "simple"),
    ("Translate 'good morning' into French.", "simple"),
    ("What's the capital of Peru?", "simple"),
    ("Explain why the sky is blue.", "medium"),  # two reasoning words
    ("Explain why the sky is blue and compare it with red sunsets.", "medium"),
    ("Write a Python function that reverses a string.", "medium"),
    ("What is the derivative of x^2?", "medium"),
    ("Summarise this: " + "lorem ipsum dolor sit amet " * 40, "simple"),
    (
        "Prove that there are infinitely many primes, then write a Rust function that "
        "checks whether a number is prime.",
        "complex",
    ),
    (
        "Design the architecture of a rate limiter, explain the trade-offs, and implement "
        "it in Go with unit tests.",
        "complex",
    ),
    (
        "```python\ndef f(x):\n    return x\n```\nWhy does this fail? Analyze step by step.",
        "complex",
    ),
]


@pytest.mark.parametrize(("prompt", "level"), PROMPTS)
def test_classifier_table(prompt: str, level: str) -> None:
    assert classify({"messages": [{"role": "user", "content": prompt}]}) == level


def test_classifier_counts_conversation_depth_and_parts() -> None:
    turn = [{"role": "user", "content": "why?"}, {"role": "assistant", "content": "because"}]
    assert classify({"messages": turn * 1}) == "simple"
    assert classify({"messages": turn * 7}) == "medium"  # 14 messages: depth adds two
    parts = [{"type": "text", "text": "Prove the theorem and write code for it"}]
    assert classify({"messages": [{"role": "user", "content": parts}]}) == "complex"
    assert classify({"prompt": "hello"}) == "simple"


@pytest.mark.parametrize("weights", [(3, 1), (5, 3, 2), (1, 1, 1, 7), (10, 1)])
def test_weighted_pool_keeps_its_weights_over_1000_picks(weights: tuple[int, ...]) -> None:
    rounds = SmoothWeighted(weights)
    picks = Counter(rounds.pick() for _ in range(1000))
    total = sum(weights)
    for index, weight in enumerate(weights):
        assert abs(picks[index] / 1000 - weight / total) <= 0.02, (weights, picks)


def test_smooth_weighted_spreads_picks_as_nginx_does() -> None:
    rounds = SmoothWeighted((5, 1, 1))
    # nginx's documented sequence for weights 5, 1, 1: a a b a c a a
    assert [rounds.pick() for _ in range(7)] == [0, 0, 1, 0, 2, 0, 0]
    assert weighted_order(["a", "b", "c"], 2, (5, 1, 3)) == ["c", "a", "b"]


def test_strategies_weigh_cost_quality_latency() -> None:
    options = [
        Option("cheap/slow", 0.001, 0.6, 2000),
        Option("dear/smart", 0.050, 0.95, 1500),
        Option("mid/quick", 0.010, 0.7, 200),
    ]
    assert score(options, "cost")[0][0] == "cheap/slow"
    assert score(options, "quality")[0][0] == "dear/smart"
    assert score(options, "latency")[0][0] == "mid/quick"
    ranked = dict(score(options, "balanced"))
    # balanced: 0.40 cost + 0.35 quality + 0.25 latency, each normalised best 1 / worst 0
    expected_mid = 0.40 * (0.040 / 0.049) + 0.35 * (0.1 / 0.35) + 0.25 * 1.0
    assert ranked["mid/quick"] == pytest.approx(expected_mid, abs=1e-3)
    unknown = [Option("a/x", None, 0.5, 100), Option("b/y", 0.01, 0.5, 100)]
    assert score(unknown, "cost")[0][0] == "b/y"  # an unknown price scores lowest on cost


def test_built_in_profiles_cover_the_common_families() -> None:
    for name in (
        "gpt-4o-mini-2024-07-18",
        "claude-sonnet-4-5",
        "gemini-2.5-pro",
        "llama3.2:3b",
        "mistral-large-latest",
        "qwen2.5-coder:7b",
        "deepseek-chat",
        "meta-llama/llama-3.3-70b",
    ):
        assert built_in(name) is not UNKNOWN, name
    assert built_in("something-else") is UNKNOWN
    assert not UNKNOWN.tools
