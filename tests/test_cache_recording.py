"""The cache's recording of an answer (``cache/recording.py``) when the leader's client
leaves a translated stream (an Anthropic provider behind ``/v1/chat/completions``)
while an identical request follows it: the rest is read on for the follower, and a
provider that breaks meanwhile ends the follower's stream with the provider's failure."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import aiohttp

from tests.conftest import claude_config
from tests.fault_fakes import (
    LAST_CHUNK,
    SSE_HEAD,
    Conn,
    RawBehaviour,
    RawRequest,
    chunk,
    head,
    raw_upstream,
)
from tests.provider_fakes import collect_chat, openai_chunks
from tests.test_faults_upstream import cache_entries, error_events
from tests.test_faults_upstream_translated import EVENTS

CHAT = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def config(url: str) -> str:
    return claude_config(url, "cache: {enabled: true}\n", model="claude-x")


def gated(
    first: Iterable[bytes], gate: asyncio.Event, rest: Iterable[bytes], end: str
) -> RawBehaviour:
    """An SSE answer that sends ``first``, waits for ``gate``, then sends ``rest`` and
    ends properly (``eof``) or with a TCP reset (``reset``)."""

    async def behave(conn: Conn, _: RawRequest) -> None:
        await conn.send(head(200, SSE_HEAD))
        for item in first:
            await conn.send(chunk(item))
        await asyncio.wait_for(gate.wait(), 10)
        for item in rest:
            await conn.send(chunk(item))
        if end == "reset":
            conn.reset()
            return
        await conn.send(LAST_CHUNK)
        await conn.close()

    return behave


async def _leader_leaves(gw: Any, gate: asyncio.Event) -> tuple[Any, bytes]:
    """The leader reads its first event and hangs up with a follower attached; then the
    provider goes on. The follower's response and body."""
    async with aiohttp.ClientSession() as session:
        leader = await session.post(gw.make_url("/v1/chat/completions"), json=CHAT)
        assert leader.status == 200
        await leader.content.readuntil(b"\n\n")

        async def follow() -> tuple[Any, bytes]:
            response = await gw.post("/v1/chat/completions", json=CHAT)
            return response, await response.read()

        follower = asyncio.ensure_future(follow())
        await asyncio.sleep(0.2)  # the follower has joined the leader's flight
        leader.close()
        await asyncio.sleep(0.2)  # the gateway saw its client go
        gate.set()
        return await asyncio.wait_for(follower, 10)


async def test_translated_followers_get_the_rest_when_the_leaders_client_leaves(
    gateway: Any,
) -> None:
    gate = asyncio.Event()
    async with raw_upstream(gated(EVENTS[:4], gate, EVENTS[4:], "eof")) as up:
        gw = await gateway(config(up.url))
        response, body = await _leader_leaves(gw, gate)
        assert response.status == 200 and response.headers["X-Cache"] == "HIT"
        assert error_events(body) == []
        chat = collect_chat(openai_chunks(body))
        assert (chat["text"], chat["finish"]) == ("Hello, wörld!", "stop")
        assert body.rstrip().endswith(b"data: [DONE]")
        assert len(up.requests) == 1
        assert await cache_entries(gw) == 1  # the whole answer, read on, was stored
        again = await gw.post("/v1/chat/completions", json=CHAT)
        assert again.headers["X-Cache"] == "HIT" and await again.read() == body


async def test_translated_followers_get_the_providers_failure_after_the_leader_left(
    gateway: Any,
) -> None:
    """The provider cuts its stream before sending anything more: the follower's stream
    ends with the error event that says so (not a vaguer one, no server error)."""
    gate = asyncio.Event()
    async with raw_upstream(gated(EVENTS[:4], gate, [], "reset")) as up:
        gw = await gateway(config(up.url))
        response, body = await _leader_leaves(gw, gate)
        assert response.status == 200 and response.headers["X-Cache"] == "HIT"
        assert b'"content":"Hello"' in body
        [error] = error_events(body)
        assert "cut off" in error["message"]
        assert await cache_entries(gw) == 0
