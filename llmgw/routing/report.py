"""What the gateway tells the client about its routing (SPEC §10): the ``x-gateway``
block of a non-streamed JSON answer, and the ``: x-gateway {...}`` comment a stream
carries before it ends (``routing.response_metadata`` or ``x-gateway.metadata_in_body``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from llmgw.config.schema import Price
from llmgw.core import RequestContext
from llmgw.observe.usage import cost_nano_usd, price_for


def metadata(ctx: RequestContext, prices: Mapping[str, Price]) -> dict[str, Any]:
    cost = None
    if ctx.upstream_model is not None and ctx.cache != "HIT":
        price = price_for(prices, ctx.provider, ctx.upstream_model)
        if price is not None and ctx.prompt_tokens is not None:
            nano = cost_nano_usd(price, ctx.prompt_tokens, ctx.completion_tokens or 0)
            cost = nano / 1_000_000_000
    answered = None if ctx.provider is None else f"{ctx.provider}/{ctx.upstream_model}"
    return {
        "provider": ctx.provider,
        "routing_decision": ctx.routing_line(),
        "latency_ms": round((time.perf_counter() - ctx.started) * 1000, 2),
        "cost_usd": cost,
        "cache_hit": ctx.cache == "HIT",
        "fallback_used": answered is not None and answered != ctx.first_target,
    }


def with_metadata(body: bytes, block: dict[str, Any]) -> bytes | None:
    """A JSON object answer with ``"x-gateway": block`` added (None: not an object)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(answer, dict):
        return None
    answer["x-gateway"] = block
    return orjson.dumps(answer)


def comment(block: dict[str, Any]) -> bytes:
    """An SSE comment line, which every SSE client skips: ``: x-gateway {...}``."""
    return b": x-gateway " + orjson.dumps(block) + b"\n\n"
