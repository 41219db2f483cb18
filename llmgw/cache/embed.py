"""The semantic cache's embedding call, made through the gateway's own routing.

An embeddings ``Call`` for ``cache.semantic.embedding_model`` goes down the same
fallback chain a client's would (``forward``: targets, retries, circuit breakers,
the provider's adapter and transport), written to a ``Kept`` answer that holds the
body instead of sending it anywhere. Its usage is counted like a request's, under
the asking request's key and the embedding model (``Account``: usage, the ledger, and
the asking request's limits and budgets), its hedged racers that lost with it as a
request's are (``hedge.count_losers``). The caller bounds the whole call by
``lookup_timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from llmgw.answer import Head, Rest
from llmgw.cache.vectors import Vector, unit
from llmgw.core import Call, RequestContext
from llmgw.forward import forward
from llmgw.observe.metrics import Metrics
from llmgw.runtime import Runtime

Account = Callable[[RequestContext, Call], None]
Embedder = Callable[[str], Awaitable[Vector | None]]


class Kept:
    """An ``Answer`` that keeps a whole body and sends nothing."""

    __slots__ = ("body", "status")

    def __init__(self) -> None:
        self.body: bytes | None = None
        self.status = 0

    async def open(self, out: web.StreamResponse, head: Head) -> None:
        self.status = head.status  # a stream is no embedding: the body stays None

    def whole(self, head: Head, body: bytes) -> web.Response:
        self.status, self.body = head.status, body
        return web.Response(status=head.status)

    async def write(self, data: bytes) -> None:
        pass

    async def write_error(self, event: bytes) -> None:
        pass

    def wrote_error(self) -> None:
        pass

    async def finish(self, complete: bool, trailer: bytes = b"") -> None:
        pass

    async def left(self, complete: bool, rest: Rest | None) -> None:
        pass

    def abort(self) -> None:
        pass


def embedder(
    runtime: Runtime, metrics: Metrics, asking: RequestContext, account: Account
) -> Embedder:
    """How the request ``asking`` embeds its prompt (at most once)."""

    async def embed(text: str) -> Vector | None:
        model = runtime.config.cache.semantic.embedding_model
        body = {"model": model, "input": text}
        call = Call("embeddings", model, False, body, orjson.dumps(body))
        ctx = RequestContext(
            request_id=f"{asking.request_id}-embed",
            started=time.perf_counter(),
            endpoint="embeddings",
            key=asking.key,
            model=model,
            model_label=runtime.router.label(model),
            budget_key=asking.budget_key,
        )
        kept = Kept()
        try:
            await forward(ctx, runtime, call, runtime.router.resolve(model), metrics, kept)
            ctx.status = kept.status
        finally:  # counted whatever happened, as a client's call would be
            account(ctx, call)
        if kept.status != 200 or kept.body is None:
            raise ValueError(f"the embedding model answered {kept.status}")
        return _vector(orjson.loads(kept.body))

    return embed


def _vector(answer: Any) -> Vector | None:
    """The first embedding of an OpenAI-shaped answer, as a unit vector."""
    try:
        values = answer["data"][0]["embedding"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        return None
    return unit(values)
