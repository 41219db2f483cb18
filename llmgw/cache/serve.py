"""How a request meets the cache: look up, follow a flight or lead one, store, replay.

``X-Cache`` is ``HIT`` for an entry or a coalesced answer, ``MISS`` for a request
that went upstream, ``BYPASS`` when the cache is off for it (disabled, or the
client sent ``Cache-Control: no-cache``). Only complete ``200`` answers are stored:
never an error, a truncated stream or a cancelled one. Hits and followers are written
like misses, within ``server.write_timeout`` (``sink.py``); a follower too far behind
its leader is dropped (``coalesce.py``).

After an exact miss, the semantic cache (SPEC §13, when on) looks for an earlier
answer to a paraphrase (``semantic_serve.py``); a hit says ``X-Cache-Match: semantic``
and its ``X-Cache-Similarity``, an exact one ``X-Cache-Match: exact``. A clean miss's
stored answer is indexed by its prompt's vector. ``no-cache`` skips it both ways.

A ``no-cache`` (or ``max-age=0``) answer replaces the stored entry only when the
caller may refresh it: always under ``scope: key`` (the entry is its own), else only
a principal with ``cache_refresh``. Anyone else's skips the cache both ways, so no key
can overwrite what every other key is served.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from aiohttp import web

from llmgw.answer import Answer, ClientAnswer, Head, apart
from llmgw.cache.coalesce import Flight, Follower
from llmgw.cache.embed import Embedder
from llmgw.cache.entry import Entry, Store
from llmgw.cache.front import ResponseCache
from llmgw.cache.keys import Policy, cache_key
from llmgw.cache.recording import Recording
from llmgw.cache.semantic_serve import look, remember
from llmgw.core import Call, RequestContext
from llmgw.errors import stream_error_event
from llmgw.observe.metrics import Metrics
from llmgw.relay import delivered, saw_end
from llmgw.runtime import Runtime
from llmgw.sink import ClientStalled, Sink, Stream

Upstream = Callable[[Answer], Awaitable[web.StreamResponse]]
# Speech and images too (a stored speech answer keeps its audio's content type); never
# an upload (transcriptions, translations): its key could not cover the file.
WHOLE_WRITE = 32 * 1024  # bytes: well under a transport's 64 KiB high-water mark
CACHEABLE = frozenset(
    {"chat", "completions", "embeddings", "messages", "responses", "audio_speech", "images"}
)


class Lookup(NamedTuple):  # a NamedTuple: made on every request, cheaper than a frozen dataclass
    """A request's exact cache key, what its Cache-Control allows, and the stored entry
    it may be answered with (None: a miss, or not read)."""

    key: str
    policy: Policy
    entry: Entry | None


async def look_up(
    request: web.Request,
    ctx: RequestContext,
    runtime: Runtime,
    call: Call,
    cache: ResponseCache,
    key: str | None = None,
) -> Lookup | None:
    """The exact lookup, made before routing: a hit needs no routing decision (it is
    charged to the target that answered it). None when the cache is not used for it;
    ``key``: the call's cache key when known already (``hits.py``)."""
    settings = runtime.config.cache
    if not settings.enabled or not call.extensions.cache or call.endpoint not in CACHEABLE:
        return None
    policy = Policy.from_header(request.headers.get("Cache-Control"))
    if key is None:
        key = cache_key(call, ctx.key if settings.scope == "key" else None)
    if not policy.read:
        return Lookup(key, policy, None)
    entry = await cache.store(settings).get(key)
    if entry is not None and not policy.accepts(entry, time.time()):
        entry = None
    return Lookup(key, policy, entry)


async def serve(
    request: web.Request,
    ctx: RequestContext,
    runtime: Runtime,
    call: Call,
    cache: ResponseCache,
    metrics: Metrics,
    upstream: Upstream,
    refresh: bool = False,
    use_cache: bool = True,
    embed: Embedder | None = None,
    looked: Lookup | None = None,
) -> web.StreamResponse:
    """Answer ``call`` from the cache or from ``upstream``, recording what is cacheable;
    ``refresh``: the caller may replace shared entries (``Principal.cache_refresh``);
    ``use_cache`` False (``x-cache: false``): neither read nor write it; ``embed``: how
    this request embeds its prompt for the semantic cache (``semantic_serve.py``);
    ``looked``: its ``look_up``, when made already (not made again)."""
    config = runtime.config
    settings = config.cache
    write_timeout = config.server.write_timeout
    if looked is not None and looked.entry is not None:  # an exact hit, looked up already
        _count(ctx, metrics, cache, "HIT", "exact")
        if ctx.complexity is None:  # the same prompt: no need to classify it again
            ctx.complexity = looked.entry.complexity
        return await replay(request, ctx, looked.entry, write_timeout)
    if not settings.enabled or not use_cache or call.endpoint not in CACHEABLE:
        return await _bypass(ctx, metrics, upstream, ClientAnswer(request, write_timeout))
    store = cache.store(settings)
    scope = ctx.key if settings.scope == "key" else None
    if looked is None:
        policy = Policy.from_header(request.headers.get("Cache-Control"))
        key = cache_key(call, scope)
    else:
        policy, key = looked.policy, looked.key
    if not policy.read:
        writes = policy.write and (refresh or settings.scope == "key")
        recorder = Flight(settings.max_size) if writes else None
        answer = (
            ClientAnswer(request, write_timeout)
            if recorder is None
            else Recording(request, write_timeout, recorder)
        )
        response = await _bypass(ctx, metrics, upstream, answer)
        await _keep(store, key, recorder, ctx, settings.ttl)
        return response

    entry = await store.get(key) if looked is None else None  # (a looked-up hit: above)
    if entry is not None and policy.accepts(entry, time.time()):
        _count(ctx, metrics, cache, "HIT", "exact")
        if ctx.complexity is None:  # the same prompt: no need to classify it again
            ctx.complexity = entry.complexity
        return await replay(request, ctx, entry, write_timeout)
    semantic = cache.semantic(settings) if embed is not None else None
    probe = None
    if semantic is not None and embed is not None:
        probe = await look(semantic, settings, call, scope, embed, store, policy)
        if probe is not None and probe.entry is not None:
            _count(ctx, metrics, cache, "HIT", "semantic")
            ctx.cache_similarity = probe.similarity
            return await replay(request, ctx, probe.entry, write_timeout)
    flight, leads = cache.flights.join(key, settings.max_size)
    if not leads:
        follower = flight.follower()
        try:
            head = await follower.head()
            if head is not None and (head.stream or await _finished_whole(follower)):
                _count(ctx, metrics, cache, "HIT", "exact")
                return await follow(request, ctx, follower, head, call.client_format, write_timeout)
        finally:
            follower.leave()
        flight = Flight(settings.max_size)  # the leader gave up: go upstream ourselves
    _count(ctx, metrics, cache, "MISS")
    try:
        response = await upstream(Recording(request, write_timeout, flight))
    finally:
        flight.finish(complete=False)  # a no-op when the relay finished it
        if policy.write and await _keep(store, key, flight, ctx, settings.ttl):
            remember(probe, key)
        if leads:
            cache.flights.land(key, flight)
    return response


async def replay(
    request: web.Request, ctx: RequestContext, entry: Entry, write_timeout: float
) -> web.StreamResponse:
    """A stored answer, byte for byte. A stored stream goes out whole, in one write
    with its length: its events are all there already, and writing them one by one
    (a system call each) would only make a hit cost what a miss does. Past
    ``WHOLE_WRITE`` bytes it goes through a ``Sink``, bounded by ``write_timeout``."""
    ctx.provider, ctx.upstream_model = entry.provider, entry.upstream_model
    ctx.prompt_tokens, ctx.completion_tokens = entry.prompt_tokens, entry.completion_tokens
    body = b"".join(entry.chunks) if len(entry.chunks) > 1 else entry.chunks[0]
    if ctx.annotate is not None:
        body = ctx.annotate(body, entry.content_type)
    headers = {"Age": str(entry.age(time.time())), "Content-Type": entry.content_type}
    if len(body) <= WHOLE_WRITE:
        # Handed to aiohttp whole: head and body leave in one system call (a stream of
        # head, then body, costs two), and a body this small fits the transport's
        # buffer at once, so no write can wait on a stalled client.
        ctx.first_byte = time.perf_counter()
        return web.Response(body=body, status=entry.status, headers=headers)
    headers["Content-Length"] = str(len(body))
    out = Stream(status=entry.status, headers=headers)
    sink = Sink(request, write_timeout)
    await sink.prepare(out)
    ctx.first_byte = time.perf_counter()
    try:
        await sink.write(body)
        await sink.write_eof()
    except ClientStalled:
        ctx.error = "client_stalled"
        sink.abort()
    except ConnectionResetError:
        ctx.error = "client_disconnected"
    return out


async def follow(
    request: web.Request,
    ctx: RequestContext,
    follower: Follower,
    head: Head,
    client_format: str,
    write_timeout: float,
) -> web.StreamResponse:
    """The leader's answer, live: each chunk as it is recorded, at this client's pace."""
    ctx.provider, ctx.upstream_model = head.provider, head.upstream_model
    flight = follower.flight
    if not head.stream:
        ctx.first_byte = time.perf_counter()
        return web.Response(
            body=b"".join(flight.chunks), status=head.status, content_type=head.content_type
        )
    out = Stream(status=head.status, headers={"Content-Type": head.content_type})
    sink = Sink(request, write_timeout)
    await sink.prepare(out)
    ctx.first_byte = time.perf_counter()
    written: deque[bytes] = deque(maxlen=4)  # the last chunks this client was sent whole
    try:
        async for chunk in follower.chunks():
            await sink.write(chunk)
            written.append(chunk)
        if follower.lagged:
            ctx.error = "client_lagged"
            message = "this client fell too far behind the stream it shares with identical requests"
            gap = apart(written) if written else b""
            await sink.write(gap + stream_error_event(message, client_format))
        elif not flight.complete and not flight.error_sent:
            ctx.error = "stream_interrupted"
            event = stream_error_event("the upstream stream was interrupted", client_format)
            await sink.write(event)
        await sink.write_eof()
    except (ConnectionResetError, asyncio.CancelledError) as gone:  # the client left or stalled
        if isinstance(gone, ClientStalled):
            ctx.error = "client_stalled"
            sink.abort()
        elif ctx.error is None and saw_end(written, client_format):
            delivered(ctx, head.status)
        else:
            ctx.error = ctx.error or "client_disconnected"
        if isinstance(gone, asyncio.CancelledError):
            raise
    return out


async def _finished_whole(follower: Follower) -> bool:
    """For a JSON answer, followers need all of it: wait for the leader to finish."""
    async for _ in follower.chunks():
        pass
    return follower.flight.complete


async def _bypass(
    ctx: RequestContext, metrics: Metrics, upstream: Upstream, answer: Answer
) -> web.StreamResponse:
    ctx.cache = "BYPASS"
    metrics.cache_requests.labels("bypass", "none").inc()
    return await upstream(answer)


async def _keep(
    store: Store, key: str, flight: Flight | None, ctx: RequestContext, ttl: float
) -> bool:
    """Store the recording of a complete 200 answer; whether there was one."""
    if flight is None or not flight.complete or flight.head is None:
        return False
    head = flight.head
    if head.status != 200:
        return False
    entry = Entry(
        status=head.status,
        content_type=head.content_type,
        chunks=(b"".join(flight.chunks),),
        stream=head.stream,
        stored_at=time.time(),
        provider=head.provider,
        upstream_model=head.upstream_model,
        prompt_tokens=ctx.prompt_tokens,
        completion_tokens=ctx.completion_tokens,
        complexity=_complexity(ctx),
        score=_score(ctx, f"{head.provider}/{head.upstream_model}"),
    )
    await store.put(key, entry, ttl)
    return True


def _complexity(ctx: RequestContext) -> str | None:
    """The request's complexity class, worked out now if it was not yet (its answer's
    X-LLMGW-Routing needs it anyway: it is kept on ``ctx`` for that)."""
    if ctx.complexity is None and ctx.complexity_of is not None:
        ctx.complexity = ctx.complexity_of()
    return ctx.complexity


def _score(ctx: RequestContext, target: str) -> float | None:
    """The routing score the answering target was chosen with, if it was scored."""
    return None if ctx.scores is None else ctx.scores.get(target)


def _count(
    ctx: RequestContext, metrics: Metrics, cache: ResponseCache, result: str, match: str = "none"
) -> None:
    ctx.cache = result
    cache.counter(metrics, result.lower(), match).inc()
    if result == "HIT":
        ctx.cache_match = match
        cache.hits += 1
    else:
        cache.misses += 1
