"""What routing knows of a model: quality, context window, tools, vision, and a prior
latency (used until the gateway has observed the target itself).

Built-in profiles cover common OpenAI, Anthropic, Gemini, Llama, Mistral, Qwen and
DeepSeek models; top-level ``profiles:`` overrides them field by field, keyed by
``provider/model`` or by model name. A name is matched exactly, then without a date
or tag suffix (``-2024-08-06``, ``:8b``), then by its longest known prefix. Quality is
a 0-1 judgement from public leaderboards, rounded: a ranking aid, not a benchmark.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from llmgw.config.routing import AliasPool, ModelProfile
from llmgw.config.schema import GatewayConfig, Price
from llmgw.observe.usage import price_for


@dataclass(frozen=True, slots=True)
class Profile:
    quality: float
    context_window: int
    tools: bool
    vision: bool
    latency_ms: float  # prior time to first byte

    def to_json(self) -> dict[str, object]:
        return {
            "quality": self.quality,
            "context_window": self.context_window,
            "tools": self.tools,
            "vision": self.vision,
            "latency_ms": self.latency_ms,
        }


def _p(quality: float, context: int, tools: bool, vision: bool, latency: float) -> Profile:
    return Profile(quality, context, tools, vision, latency)


# A model nobody described: usable for plain chat, never trusted with tools or images.
UNKNOWN = _p(0.5, 32_768, False, False, 1000)

BUILT_IN: Mapping[str, Profile] = {
    # OpenAI
    "gpt-5": _p(0.95, 400_000, True, True, 1500),
    "gpt-5-mini": _p(0.85, 400_000, True, True, 900),
    "gpt-5-nano": _p(0.7, 400_000, True, True, 600),
    "gpt-4.1": _p(0.87, 1_047_576, True, True, 700),
    "gpt-4.1-mini": _p(0.78, 1_047_576, True, True, 500),
    "gpt-4.1-nano": _p(0.62, 1_047_576, True, True, 350),
    "gpt-4o": _p(0.85, 128_000, True, True, 600),
    "gpt-4o-mini": _p(0.7, 128_000, True, True, 400),
    "o3": _p(0.95, 200_000, True, True, 4000),
    "o3-mini": _p(0.86, 200_000, True, False, 2500),
    "o4-mini": _p(0.88, 200_000, True, True, 2500),
    "gpt-3.5-turbo": _p(0.5, 16_385, True, False, 400),
    # Anthropic
    "claude-opus-4": _p(0.96, 200_000, True, True, 1800),
    "claude-sonnet-4": _p(0.92, 200_000, True, True, 1000),
    "claude-3-7-sonnet": _p(0.88, 200_000, True, True, 1000),
    "claude-3-5-sonnet": _p(0.85, 200_000, True, True, 900),
    "claude-haiku-4-5": _p(0.8, 200_000, True, True, 500),
    "claude-3-5-haiku": _p(0.68, 200_000, True, True, 500),
    "claude-3-haiku": _p(0.55, 200_000, True, True, 400),
    # Google Gemini
    "gemini-2.5-pro": _p(0.93, 1_048_576, True, True, 1800),
    "gemini-2.5-flash": _p(0.82, 1_048_576, True, True, 600),
    "gemini-2.5-flash-lite": _p(0.7, 1_048_576, True, True, 400),
    "gemini-2.0-flash": _p(0.75, 1_048_576, True, True, 500),
    "gemini-1.5-pro": _p(0.8, 2_097_152, True, True, 1200),
    "gemini-1.5-flash": _p(0.68, 1_048_576, True, True, 500),
    # Meta Llama
    "llama3.1": _p(0.6, 128_000, True, False, 700),
    "llama3.2": _p(0.55, 128_000, True, False, 500),
    "llama3.3": _p(0.72, 128_000, True, False, 800),
    "llama-3.1-8b": _p(0.55, 128_000, True, False, 500),
    "llama-3.1-70b": _p(0.72, 128_000, True, False, 800),
    "llama-3.3-70b": _p(0.74, 128_000, True, False, 800),
    "llama-4-scout": _p(0.75, 10_000_000, True, True, 700),
    "llama-4-maverick": _p(0.8, 1_000_000, True, True, 800),
    # Mistral
    "mistral-large": _p(0.8, 128_000, True, False, 900),
    "mistral-medium": _p(0.75, 128_000, True, True, 700),
    "mistral-small": _p(0.65, 128_000, True, True, 450),
    "mistral": _p(0.5, 32_768, True, False, 500),
    "mixtral": _p(0.58, 32_768, True, False, 600),
    "codestral": _p(0.72, 256_000, True, False, 500),
    "pixtral": _p(0.7, 128_000, True, True, 800),
    # Qwen
    "qwen3": _p(0.8, 128_000, True, False, 900),
    "qwen2.5": _p(0.65, 128_000, True, False, 600),
    "qwen2.5-coder": _p(0.7, 128_000, True, False, 600),
    "qwen-max": _p(0.85, 32_768, True, False, 1200),
    "qwen-plus": _p(0.78, 131_072, True, False, 800),
    "qwen-turbo": _p(0.65, 1_000_000, True, False, 400),
    # DeepSeek
    "deepseek-chat": _p(0.85, 128_000, True, False, 1200),
    "deepseek-reasoner": _p(0.9, 128_000, False, False, 4000),
    "deepseek-v3": _p(0.85, 128_000, True, False, 1200),
    "deepseek-r1": _p(0.9, 128_000, False, False, 4000),
    "deepseek-coder": _p(0.7, 128_000, True, False, 900),
}

_SUFFIX = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|-preview(?:-[\w.-]+)?|:[\w.-]+)$")
# Longest names first, so "gpt-4o-mini-tts" matches gpt-4o-mini, not gpt-4o.
_BY_LENGTH = sorted(BUILT_IN, key=len, reverse=True)


def built_in(model: str) -> Profile:
    """The built-in profile of ``model`` (an upstream model name), or ``UNKNOWN``."""
    name = model.lower().rpartition("/")[2]  # "meta-llama/llama-3.1-8b" → "llama-3.1-8b"
    found = BUILT_IN.get(name) or BUILT_IN.get(_SUFFIX.sub("", name))
    if found is not None:
        return found
    for known in _BY_LENGTH:
        if name.startswith(known):
            return BUILT_IN[known]
    return UNKNOWN


def profile_of(provider: str, model: str, overrides: Mapping[str, ModelProfile]) -> Profile:
    """``provider/model``'s profile: the built-in one under the config's overrides."""
    base = built_in(model)
    override = overrides.get(f"{provider}/{model}") or overrides.get(model)
    if override is None:
        return base
    changes = {k: v for k, v in override.model_dump().items() if v is not None}
    return replace(base, **changes)


@dataclass(frozen=True, slots=True)
class Facts:
    """What scoring reads of one target, worked out once per config snapshot."""

    name: str  # provider/model
    provider: str
    model: str
    profile: Profile
    price: tuple[float, float] | None  # USD per 1M tokens (input, output)


def facts_of(name: str, config: GatewayConfig) -> Facts:
    provider, _, model = name.partition("/")
    prices: Mapping[str, Price] = config.prices
    return Facts(
        name,
        provider,
        model,
        profile_of(provider, model, config.profiles),
        price_for(prices, provider, model),
    )


def profile_table(config: GatewayConfig, listed: Iterable[object]) -> Mapping[str, Facts]:
    """Profiles of every target smart routing may score: ``routing.candidates`` (else
    ``listed``, the enabled providers' chat models) and every pool's targets."""
    names = [str(t) for t in listed] if config.routing.candidates is None else []
    names += config.routing.candidates or ()
    for value in config.models.values():
        if isinstance(value, AliasPool):
            names += (p.target for p in value.targets)
    return MappingProxyType({name: facts_of(name, config) for name in names})
