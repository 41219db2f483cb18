"""Token counting, prices, cost and usage totals (SPEC §5).

Tokens come from the provider's ``usage`` when it sent one (``relay`` puts it on the
request context); otherwise they are estimated at about four characters a token:
the prompt from the request's message text, the completion from the answer's text
(JSON) or from the number of events streamed (one event carries about one token),
which is also what a stream cancelled by its client is charged.

A request answered from the cache counts as a request with no tokens and no cost:
no provider was paid for it (the log still shows the tokens the entry recorded).

Cost is in USD from ``prices:`` (per 1M tokens) over the built-in list below, looked
up by the upstream model that answered (``provider/model`` first, then ``model``,
then the name without a date suffix such as ``-2024-08-06``); the first name with an
entry decides, and an entry in ``prices:`` replaces the built-in one of its name whole.
Transcriptions, translations, speech and images are priced per unit where the model
is (per minute, per 1M characters, per image: ``unit_prices.py``), else by the tokens
their answer reports. Totals are kept in whole nano-dollars so that sums stay exact.
An unknown price, or a measure the provider did not report, leaves the cost unknown
(``null`` in the log), not zero.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiohttp import web

from llmgw.config.schema import Price
from llmgw.core import (
    ANONYMOUS_LABEL,
    Call,
    RequestContext,
    estimate_prompt_tokens,
    text_length,
    tokens_for_chars,
)
from llmgw.observe.metrics import Metrics
from llmgw.observe.unit_prices import (
    DEFAULT_UNIT_PRICES,
    UNIT_ENDPOINTS,
    UnitPrice,
    unit_cost_nano,
)

NANO = 1_000_000_000

# List prices in USD per 1M tokens (input, output), standard tier, prompts under any
# long-context threshold. From the providers' pricing pages (platform.openai.com/docs/
# pricing, platform.claude.com/docs/en/about-claude/pricing, ai.google.dev/gemini-api/
# docs/pricing) as reported on 2026-11-23. `prices:` in gateway.yaml overrides them.
DEFAULT_PRICES: Mapping[str, tuple[float, float]] = {
    # OpenAI
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    "text-embedding-ada-002": (0.10, 0.0),
    # Anthropic (Opus 4.5 and later cost less than Opus 4 / 4.1)
    "claude-opus-4-6": (5.00, 25.00),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-0": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4-6": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
    # Google Gemini (2.5 Pro: prompts up to 200k tokens)
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-embedding-001": (0.15, 0.0),
    # Images: gpt-image-1 (text in, image out) is priced by the tokens its answers report
    "gpt-image-1": (5.00, 40.00),
}

_VERSION_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def estimate_completion_tokens(ctx: RequestContext, response: web.StreamResponse | None) -> int:
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        return tokens_for_chars(_answer_length(response.body))
    # A stream: the first event only opens the message (role, no text).
    return max(0, ctx.streamed_events - 1)


def price_for(
    prices: Mapping[str, Price], provider: str | None, model: str
) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for the model that answered, or None."""
    for name in _names(provider, model):
        price = prices.get(name)
        if price is not None:
            return price.tokens
        default = DEFAULT_PRICES.get(name)
        if default is not None:
            return default
        if name in DEFAULT_UNIT_PRICES:
            return None
    return None


def unit_price_for(
    prices: Mapping[str, Price], provider: str | None, model: str
) -> UnitPrice | None:
    """The per-unit price (minutes, characters, images) of the model, or None."""
    for name in _names(provider, model):
        price = prices.get(name)
        if price is not None:
            units = (price.per_minute, price.per_1m_characters, price.per_image)
            return None if units == (None, None, None) else UnitPrice(*units)
        default = DEFAULT_UNIT_PRICES.get(name)
        if default is not None:
            return default
        if name in DEFAULT_PRICES:
            return None
    return None


def _names(provider: str | None, model: str) -> list[str]:
    names = [f"{provider}/{model}", model] if provider else [model]
    base = _VERSION_SUFFIX.sub("", model)
    if base != model:
        names.append(base)
    return names


PRICE_MEMO = 4096  # (provider, model) pairs remembered; past that the memo starts afresh


class PriceBook:
    """``price_for`` / ``unit_price_for`` over ``prices``, remembered by (provider, model)."""

    __slots__ = ("_tokens", "_units", "prices")

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self.prices = prices
        self._tokens: dict[tuple[str | None, str], tuple[float, float] | None] = {}
        self._units: dict[tuple[str | None, str], UnitPrice | None] = {}

    def tokens(self, provider: str | None, model: str) -> tuple[float, float] | None:
        """(input, output) USD per 1M tokens, or None."""
        return _remembered(self._tokens, (provider, model), price_for, self.prices)

    def units(self, provider: str | None, model: str) -> UnitPrice | None:
        """The per-unit price (minutes, characters, images), or None."""
        return _remembered(self._units, (provider, model), unit_price_for, self.prices)


_T = TypeVar("_T")


def _remembered(
    table: dict[tuple[str | None, str], _T],
    key: tuple[str | None, str],
    find: Callable[[Mapping[str, Price], str | None, str], _T],
    prices: Mapping[str, Price],
) -> _T:
    """``table[key]``, found with ``find`` the first time (past ``PRICE_MEMO`` entries
    the table starts afresh: old models' lookups)."""
    try:
        return table[key]
    except KeyError:
        if len(table) >= PRICE_MEMO:
            table.clear()
        found = table[key] = find(prices, *key)
        return found


def cost_nano_usd(price: tuple[float, float], prompt_tokens: int, completion_tokens: int) -> int:
    """USD per 1M tokens times tokens, in whole nano-dollars (1 token at $1/M = 1000)."""
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) * 1000)


@dataclass(frozen=True, slots=True)
class Spend:
    """What one admitted request used, as it is added to the totals."""

    key: str
    model: str
    provider: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_nano_usd: int
    requests: int = 1  # 0: a hedged racer that lost (its tokens count, it is no request)

    def increments(self) -> list[tuple[str, int]]:
        """``(group|name|field, n)`` pairs: the shared (redis) form of ``UsageBook.add``."""
        groups = [("total|", ""), ("key|", self.key), ("model|", self.model)]
        if self.provider is not None:
            groups.append(("provider|", self.provider))
        values = (
            ("requests", self.requests),
            ("prompt_tokens", self.prompt_tokens),
            ("completion_tokens", self.completion_tokens),
            ("cost_nano_usd", self.cost_nano_usd),
        )
        return [(f"{group}{name}|{field}", n) for group, name in groups for field, n in values]


class Tally:
    __slots__ = ("completion_tokens", "cost_nano_usd", "prompt_tokens", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_nano_usd = 0

    def add(self, spend: Spend) -> None:
        self.requests += spend.requests
        self.prompt_tokens += spend.prompt_tokens
        self.completion_tokens += spend.completion_tokens
        self.cost_nano_usd += spend.cost_nano_usd

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_nano_usd / NANO, 9),
        }


class UsageBook:
    """This process's usage since it started, kept across config reloads."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.started = time.time()
        self.total = Tally()
        self.keys: dict[str, Tally] = {}
        self.models: dict[str, Tally] = {}
        self.providers: dict[str, Tally] = {}

    def record(
        self,
        ctx: RequestContext,
        call: Call,
        response: web.StreamResponse | None,
        prices: PriceBook,
        request: bool = True,
    ) -> Spend:
        """Count one admitted request (whatever its outcome): fill in the context's
        tokens (estimated where the provider sent none) and cost, add to the totals
        and the metrics, and return what was spent for the limiter's books.
        ``request=False``: a hedged racer that lost, whose tokens count but which is
        not a request of its own (the client made one)."""
        key = ctx.key or ANONYMOUS_LABEL
        prompt = completion = cost = 0
        if ctx.cache == "HIT":  # answered from the cache: no provider was paid
            ctx.cost_usd = 0.0
        elif ctx.upstream_model is not None:  # an answer was relayed (maybe in part)
            reported = ctx.prompt_tokens is not None or ctx.completion_tokens is not None
            if ctx.prompt_tokens is None:
                ctx.prompt_tokens = estimate_prompt_tokens(call)
            if ctx.completion_tokens is None and call.endpoint == "embeddings":
                ctx.completion_tokens = 0
            elif ctx.completion_tokens is None:
                ctx.completion_tokens = estimate_completion_tokens(ctx, response)
            prompt, completion = ctx.prompt_tokens, ctx.completion_tokens
            if call.endpoint in UNIT_ENDPOINTS:
                found = _unit_cost(ctx, call, response, prices, reported)
            else:
                price = prices.tokens(ctx.provider, ctx.upstream_model)
                found = None if price is None else cost_nano_usd(price, prompt, completion)
            if found is not None:
                cost = found
                ctx.cost_usd = round(cost / NANO, 9)
        spend = Spend(key, ctx.model_label, ctx.provider, prompt, completion, cost, int(request))
        self.add(spend)
        provider = ctx.provider or "none"
        if prompt or completion:
            self.metrics.tokens.labels(provider, spend.model, key, "prompt").inc(prompt)
            self.metrics.tokens.labels(provider, spend.model, key, "completion").inc(completion)
        if ctx.cost_usd is not None and (prompt or completion or cost):
            self.metrics.cost.labels(provider, spend.model, key).inc(ctx.cost_usd)
        return spend

    def add(self, spend: Spend) -> None:
        self.total.add(spend)
        _tally(self.keys, spend.key).add(spend)
        _tally(self.models, spend.model).add(spend)
        if spend.provider is not None:
            _tally(self.providers, spend.provider).add(spend)

    def as_json(self) -> dict[str, Any]:
        return {
            "source": "memory",
            "since": self.started,
            "total": self.total.as_json(),
            "keys": {name: t.as_json() for name, t in sorted(self.keys.items())},
            "models": {name: t.as_json() for name, t in sorted(self.models.items())},
            "providers": {name: t.as_json() for name, t in sorted(self.providers.items())},
        }


def usage_from_fields(fields: Mapping[str, int], since: float | None) -> dict[str, Any]:
    """The ``/api/v1/usage`` document from shared ``group|name|field`` counters."""
    groups: dict[str, dict[str, Tally]] = {"total": {}, "key": {}, "model": {}, "provider": {}}
    for name, value in fields.items():
        group, _, rest = name.partition("|")
        item, _, field = rest.rpartition("|")
        if group in groups and field in Tally.__slots__:
            setattr(_tally(groups[group], item), field, value)
    return {
        "source": "redis",
        "since": since,
        "total": _tally(groups["total"], "").as_json(),
        "keys": {n: t.as_json() for n, t in sorted(groups["key"].items())},
        "models": {n: t.as_json() for n, t in sorted(groups["model"].items())},
        "providers": {n: t.as_json() for n, t in sorted(groups["provider"].items())},
    }


def _unit_cost(
    ctx: RequestContext,
    call: Call,
    response: web.StreamResponse | None,
    prices: PriceBook,
    reported: bool,
) -> int | None:
    """A media request's cost: per unit where its model has a unit price and the answer
    the measure, else by the tokens the provider reported (never by estimated ones)."""
    assert ctx.upstream_model is not None
    unit = prices.units(ctx.provider, ctx.upstream_model)
    if unit is not None:
        return unit_cost_nano(unit, call, _parsed(response))
    price = prices.tokens(ctx.provider, ctx.upstream_model)
    if price is None or not reported:
        return None
    return cost_nano_usd(price, ctx.prompt_tokens or 0, ctx.completion_tokens or 0)


def _parsed(response: web.StreamResponse | None) -> dict[str, Any] | None:
    """A whole JSON answer, parsed; None for a stream, audio or text."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return None
    try:
        parsed = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _tally(tallies: dict[str, Tally], name: str) -> Tally:
    tally = tallies.get(name)
    if tally is None:
        tally = tallies[name] = Tally()
    return tally


def _answer_length(body: bytes) -> int:
    """Characters of answer text in a JSON response (OpenAI or Anthropic shape)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return len(body)
    if not isinstance(parsed, dict):
        return 0
    total = text_length(parsed.get("content"))  # Anthropic: content blocks
    choices = parsed.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict):
                total += text_length(message.get("content"))
            total += text_length(choice.get("text"))
    return total
