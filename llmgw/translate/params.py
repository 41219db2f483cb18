"""The fate of every OpenAI chat request parameter in a translator to another format.

Each translator (Anthropic, Gemini) declares a table: a parameter is
``translated`` (the provider gets its equivalent), ``dropped`` (the provider has
none; the answer says so in ``X-LLMGW-Dropped-Params``) or ``rejected`` (serving
the request without it would be a different answer, so this provider type is
unsupported for the request and the chain moves on). README.md's parameter table
is written from these tables, and a test holds the two together.

A parameter that is absent, ``null`` or at OpenAI's default (``n: 1``,
``logprobs: false`` ...) asks for nothing and has no fate. A parameter no table
knows (a newer one, or a provider-specific extra) is dropped and named.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from llmgw.core import Unsupported

Fate = Literal["translated", "dropped", "rejected"]

# Every parameter of OpenAI's chat completion request, in the order of its reference.
OPENAI_PARAMS = (
    "model",
    "messages",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
)

# Values that ask for nothing beyond OpenAI's default behaviour.
DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "n": 1,
        "logprobs": False,
        "parallel_tool_calls": True,
        "store": False,
        "stream": False,
        "modalities": ["text"],
    }
)

# What a rejected parameter asks for, in the 400's words.
REASONS: Mapping[str, str] = MappingProxyType(
    {
        "n": "n > 1",
        "audio": "audio output",
        "modalities": "audio output (modalities)",
        "web_search_options": "web_search_options",
        "functions": "the deprecated functions parameter (send tools)",
        "function_call": "the deprecated function_call parameter (send tool_choice)",
    }
)

_COMMON: dict[str, Fate] = {
    "model": "translated",
    "messages": "translated",
    "max_completion_tokens": "translated",
    "max_tokens": "translated",
    "stop": "translated",
    "stream": "translated",
    "stream_options": "translated",
    "temperature": "translated",
    "top_p": "translated",
    "tools": "translated",
    "tool_choice": "translated",
    "response_format": "translated",
    "reasoning_effort": "translated",
    "logit_bias": "dropped",
    "logprobs": "dropped",
    "top_logprobs": "dropped",
    "metadata": "dropped",
    "store": "dropped",
    "service_tier": "dropped",
    "prediction": "dropped",
    "prompt_cache_key": "dropped",
    "verbosity": "dropped",
    "audio": "rejected",
    "modalities": "rejected",
    "web_search_options": "rejected",
    "functions": "rejected",
    "function_call": "rejected",
}

ANTHROPIC: Mapping[str, Fate] = MappingProxyType(
    _COMMON
    | {
        "n": "rejected",
        "parallel_tool_calls": "translated",  # false → disable_parallel_tool_use
        "user": "translated",  # → metadata.user_id
        "safety_identifier": "translated",  # → metadata.user_id (preferred over user)
        "frequency_penalty": "dropped",
        "presence_penalty": "dropped",
        "seed": "dropped",
    }
)

GEMINI: Mapping[str, Fate] = MappingProxyType(
    _COMMON
    | {
        "n": "translated",  # → candidateCount
        "frequency_penalty": "translated",
        "presence_penalty": "translated",
        "seed": "translated",
        "parallel_tool_calls": "dropped",
        "user": "dropped",
        "safety_identifier": "dropped",
    }
)

TABLES: Mapping[str, Mapping[str, Fate]] = MappingProxyType(
    {"anthropic": ANTHROPIC, "gemini": GEMINI}
)


def asks(name: str, value: object) -> bool:
    """Whether a parameter's value asks for anything (not null, not OpenAI's default)."""
    if value is None:
        return False
    default = DEFAULTS.get(name, _NO_DEFAULT)
    return not (value == default and type(value) is type(default))


_NO_DEFAULT = object()


def sort(body: Mapping[str, Any], provider_type: str) -> tuple[str, ...]:
    """The parameters of ``body`` this provider type drops, in the order sent; raises
    ``Unsupported`` naming the first one it cannot serve."""
    table = TABLES[provider_type]
    dropped: list[str] = []
    for name, value in body.items():
        if not asks(name, value):
            continue
        fate = table.get(name, "dropped")
        if fate == "rejected":
            reason = REASONS.get(name, name)
            raise Unsupported(f"{provider_type} providers do not support {reason}", param=name)
        if fate == "dropped":
            dropped.append(name)
    return tuple(dropped)
