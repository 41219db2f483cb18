"""The response cache end to end (SPEC §4): hits, client policy, stream replay,
coalescing, scopes, the redis backend and reloads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from llmgw.app import create_app
from llmgw.config import parse
from llmgw.server.appkeys import CACHE
from tests.fakes import (
    FakeOpenAI,
    chat_chunks,
    reply_error,
    reply_stream,
    reply_stream_as_openai,
    wait_for,
)

MESSAGES = [{"role": "user", "content": "cache me"}]
CHAT = {"model": "m", "messages": MESSAGES}
STREAM = {**CHAT, "stream": True}


def cached(url: str, extra: str = "") -> str:
    return f"""
providers:
  up: {{type: openai, base_url: "{url}", models: [m], max_retries: 0}}
cache:
  enabled: true
  ttl: 1h
{extra}"""


async def post(gw: Any, body: dict[str, Any] = CHAT, **headers: str) -> tuple[Any, bytes]:
    response = await gw.post("/v1/chat/completions", json=body, headers=headers)
    return response, await response.read()


async def test_miss_then_hit_with_age(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(cached(fake.url))
    first, body = await post(gw)
    second, again = await post(gw)
    assert first.headers["X-Cache"] == "MISS" and "Age" not in first.headers
    assert second.headers["X-Cache"] == "HIT" and second.headers["Age"] == "0"
    assert second.headers["X-Cache-Match"] == "exact" and "X-Cache-Match" not in first.headers
    assert again == body
    assert second.headers["X-LLMGW-Provider"] == "up"
    assert len(fake.seen) == 1
    stats = await (await gw.get("/api/v1/cache/stats")).json()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (1, 1, 1)
    metrics = await (await gw.get("/metrics")).text()
    assert 'llmgw_cache_requests_total{match="exact",result="hit"} 1.0' in metrics
    assert 'cache="hit",endpoint="chat"' in metrics


async def test_user_does_not_change_the_key(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(cached(fake.url))
    await post(gw, {**CHAT, "user": "alice"})
    response, _ = await post(gw, {**CHAT, "user": "bob"})
    assert response.headers["X-Cache"] == "HIT"
    response, _ = await post(gw, {**CHAT, "temperature": 0.5})
    assert response.headers["X-Cache"] == "MISS"


async def test_cache_control_from_the_client(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(cached(fake.url))
    response, _ = await post(gw, **{"Cache-Control": "no-store"})
    assert response.headers["X-Cache"] == "MISS"
    response, _ = await post(gw)
    assert response.headers["X-Cache"] == "MISS"  # no-store wrote nothing
    response, _ = await post(gw, **{"Cache-Control": "no-cache"})
    assert response.headers["X-Cache"] == "BYPASS"
    assert len(fake.seen) == 3
    response, _ = await post(gw, **{"Cache-Control": "max-age=60"})
    assert response.headers["X-Cache"] == "HIT"
    response, _ = await post(gw, **{"Cache-Control": "max-age=0"})
    assert response.headers["X-Cache"] == "BYPASS"


async def test_disabled_cache_says_bypass(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(cached(fake.url).replace("enabled: true", "enabled: false"))
    for _ in range(2):
        response, _ = await post(gw)
        assert response.headers["X-Cache"] == "BYPASS"
    assert len(fake.seen) == 2


async def test_stream_replayed_whole_with_identical_bytes(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    chunks = chat_chunks(["one ", "two ", "three"])
    fake.then(reply_stream(chunks, delay=0.01))
    gw = await gateway(cached(fake.url))
    await post(gw, STREAM)
    response, body = await post(gw, STREAM)
    assert response.headers["X-Cache"] == "HIT"
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert body == b"".join(chunks)
    assert response.headers["Content-Length"] == str(len(body))  # one write, not one per event
    stream = await sdk(gw).chat.completions.create(**STREAM)  # the SDK reads it as a stream
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == (
        "one two three"
    )
    assert len(fake.seen) == 1


async def _sdk_stream(client: Any, usage: bool) -> tuple[Any, list[Any]]:
    """One streamed chat through the openai SDK: its response headers and its chunks."""
    extra = {"stream_options": {"include_usage": True}} if usage else {}
    raw = await client.chat.completions.with_raw_response.create(**STREAM, **extra)
    return raw.headers, [chunk async for chunk in raw.parse()]


def _check_chunks(chunks: list[Any], usage: bool) -> None:
    """What a client gets is what it asked for: the usage chunk (no choices) only with
    ``include_usage``, so the common ``chunk.choices[0]`` loop never breaks."""
    if usage:
        *chunks, last = chunks
        assert last.choices == [] and last.usage.completion_tokens == 3
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Hello!"


@pytest.mark.parametrize("first", [True, False], ids=["usage-first", "plain-first"])
async def test_stream_options_are_part_of_the_key(
    fake: FakeOpenAI, gateway: Any, sdk: Any, first: bool
) -> None:
    fake.default = reply_stream_as_openai()
    gw = await gateway(cached(fake.url))
    client = sdk(gw)
    for usage, expected in (
        (first, "MISS"),
        (not first, "MISS"),
        (first, "HIT"),
        (not first, "HIT"),
    ):
        headers, chunks = await _sdk_stream(client, usage)
        assert headers["X-Cache"] == expected, (usage, expected)
        assert ("Age" in headers) == (expected == "HIT")
        _check_chunks(chunks, usage)
    assert [bool(seen.body.get("stream_options")) for seen in fake.seen] == [first, not first]


async def test_coalescing_keeps_stream_options_apart(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    gate = asyncio.Event()
    fake.default = reply_stream_as_openai(gate=gate)
    gw = await gateway(cached(fake.url))
    client = sdk(gw)
    asks = [asyncio.ensure_future(_sdk_stream(client, usage)) for usage in (True, True, False)]
    cache = gw.app[CACHE]
    await wait_for(lambda: len(fake.seen) == 2 and cache.hits == 1)  # one follows a flight
    gate.set()
    answers = await asyncio.gather(*asks)
    assert sorted(headers["X-Cache"] for headers, _ in answers) == ["HIT", "MISS", "MISS"]
    for (_, chunks), usage in zip(answers, (True, True, False), strict=True):
        _check_chunks(chunks, usage)
    assert len(fake.seen) == 2


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda: reply_stream(chat_chunks(["cut"])[:-1]), id="no-done"),
        pytest.param(lambda: reply_error(500), id="error-status"),
        pytest.param(
            lambda: reply_stream([*chat_chunks(["x"])[:2], b'data: {"error": {"m": 1}}\n\n']),
            id="error-event-midway",
        ),
    ],
)
async def test_no_partial_or_failed_answer_is_stored(
    fake: FakeOpenAI, gateway: Any, broken: Any
) -> None:
    fake.then(broken())
    gw = await gateway(cached(fake.url))
    await post(gw, STREAM)
    stats = await (await gw.get("/api/v1/cache/stats")).json()
    assert stats["entries"] == 0
    response, _ = await post(gw, STREAM)
    assert response.headers["X-Cache"] == "MISS"


async def test_cancelled_stream_is_not_stored(fake: FakeOpenAI, gateway: Any) -> None:
    fake.then(fake.slow_stream(chunks=100, delay=0.01))
    gw = await gateway(cached(fake.url))
    async with aiohttp.ClientSession() as session:
        response = await session.post(gw.make_url("/v1/chat/completions"), json=STREAM)
        await response.content.readuntil(b"\n\n")
        response.close()
    await asyncio.wait_for(fake.stream_closed.wait(), 5)
    stats = await (await gw.get("/api/v1/cache/stats")).json()
    assert stats["entries"] == 0 and stats["in_flight"] == 0


async def test_50_identical_streams_make_one_upstream_call(fake: FakeOpenAI, gateway: Any) -> None:
    chunks = chat_chunks([f"w{i} " for i in range(20)])
    fake.then(reply_stream(chunks, delay=0.02))
    gw = await gateway(cached(fake.url))
    bodies = await asyncio.gather(*(post(gw, STREAM) for _ in range(50)))
    assert len(fake.seen) == 1
    assert all(body == b"".join(chunks) for _, body in bodies)
    verdicts = sorted(response.headers["X-Cache"] for response, _ in bodies)
    assert verdicts == ["HIT"] * 49 + ["MISS"]


async def test_slow_follower_stalls_nobody(fake: FakeOpenAI, gateway: Any) -> None:
    """One follower reads nothing until every other client is done: the leader and the
    other followers finish regardless."""
    chunks = chat_chunks([f"w{i} " for i in range(10)])
    fake.then(reply_stream(chunks, delay=0.01))
    gw = await gateway(cached(fake.url))
    async with aiohttp.ClientSession() as session:
        url = gw.make_url("/v1/chat/completions")
        stalled = await session.post(url, json=STREAM)  # headers only, body unread
        others = await asyncio.gather(*(post(gw, STREAM) for _ in range(5)))
        assert all(body == b"".join(chunks) for _, body in others)
        assert await stalled.read() == b"".join(chunks)
    assert len(fake.seen) == 1


async def test_followers_of_a_failed_leader_go_upstream_themselves(
    fake: FakeOpenAI, gateway: Any
) -> None:
    started = asyncio.Event()

    async def slow_failure(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        started.set()
        await asyncio.sleep(0.2)
        return await reply_error(500)(request, body)

    fake.then(slow_failure)
    gw = await gateway(cached(fake.url))
    leader = asyncio.ensure_future(post(gw))
    await started.wait()
    follower, body = await post(gw)
    first, _ = await leader
    assert first.status == 502
    assert follower.status == 200 and b"echo from m" in body
    assert len(fake.seen) == 2


async def test_non_streamed_coalescing(fake: FakeOpenAI, gateway: Any) -> None:
    async def slow(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(0.1)
        return await fake.echo(request, body)

    fake.then(slow)
    gw = await gateway(cached(fake.url))
    results = await asyncio.gather(*(post(gw) for _ in range(10)))
    assert len(fake.seen) == 1
    assert len({body for _, body in results}) == 1


async def test_scope_key_keeps_client_keys_apart(fake: FakeOpenAI, gateway: Any) -> None:
    extra = """  scope: key
auth:
  keys:
    - {name: a, key: key-a}
    - {name: b, key: key-b}
"""
    gw = await gateway(cached(fake.url, extra))
    await post(gw, Authorization="Bearer key-a")
    response, _ = await post(gw, Authorization="Bearer key-b")
    assert response.headers["X-Cache"] == "MISS"
    response, _ = await post(gw, Authorization="Bearer key-a")
    assert response.headers["X-Cache"] == "HIT"


async def test_global_scope_shares_between_keys(fake: FakeOpenAI, gateway: Any) -> None:
    extra = "auth:\n  keys:\n    - {name: a, key: key-a}\n    - {name: b, key: key-b}\n"
    gw = await gateway(cached(fake.url, extra))
    await post(gw, Authorization="Bearer key-a")
    response, _ = await post(gw, Authorization="Bearer key-b")
    assert response.headers["X-Cache"] == "HIT"


async def test_clear_empties_the_cache(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(cached(fake.url))
    await post(gw)
    cleared = await (await gw.post("/api/v1/cache/clear")).json()
    assert cleared == {"cleared": 1, "semantic_cleared": 0}
    response, _ = await post(gw)
    assert response.headers["X-Cache"] == "MISS"


async def test_byte_bound_evicts_through_the_gateway(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(cached(fake.url, "  max_size: 1500\n"))
    for i in range(6):
        await post(gw, {**CHAT, "seed": i})
    stats = await (await gw.get("/api/v1/cache/stats")).json()
    assert stats["bytes"] <= 1500 and stats["evictions"] >= 3
    response, _ = await post(gw, {**CHAT, "seed": 5})
    assert response.headers["X-Cache"] == "HIT"  # the most recent survived
    response, _ = await post(gw, {**CHAT, "seed": 0})
    assert response.headers["X-Cache"] == "MISS"  # the oldest went first


async def test_entries_survive_reload_but_removed_models_are_not_served(
    tmp_path: Path, fake: FakeOpenAI, aiohttp_client: Any
) -> None:
    text = cached(fake.url) + "models:\n  alias: up/m\n"
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    app = create_app(parse(text, str(path), {}), config_path=str(path), config_text=text)
    gw = await aiohttp_client(app)
    await post(gw, {**CHAT, "model": "alias"})
    await post(gw)
    path.write_text(
        text.replace("ttl: 1h", "ttl: 2h").replace("  alias: up/m\n", "  other: up/m\n")
    )
    assert (await (await gw.post("/api/v1/config/reload")).json())["result"] == "success"
    response, _ = await post(gw)
    assert response.headers["X-Cache"] == "HIT"
    response, _ = await post(gw, {**CHAT, "model": "alias"})
    assert response.status == 404


async def test_a_reload_that_shrinks_max_size_evicts_at_the_next_request(
    tmp_path: Path, fake: FakeOpenAI, aiohttp_client: Any
) -> None:
    text = cached(fake.url, "  max_size: 1MiB\n")
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    app = create_app(parse(text, str(path), {}), config_path=str(path), config_text=text)
    gw = await aiohttp_client(app)
    for i in range(6):
        await post(gw, {**CHAT, "seed": i})
    stats = await (await gw.get("/api/v1/cache/stats")).json()
    assert stats["entries"] == 6 and stats["bytes"] > 1500
    path.write_text(text.replace("max_size: 1MiB", "max_size: 1500"))
    assert (await (await gw.post("/api/v1/config/reload")).json())["result"] == "success"
    response, _ = await post(gw, {**CHAT, "seed": 5})
    assert response.headers["X-Cache"] == "HIT"  # the most recent survives
    stats = await (await gw.get("/api/v1/cache/stats")).json()
    assert stats["bytes"] <= 1500 and stats["evictions"] >= 3
    response, _ = await post(gw, {**CHAT, "seed": 0})
    assert response.headers["X-Cache"] == "MISS"  # the oldest went first


async def test_redis_backend_is_shared_between_replicas(
    fake: FakeOpenAI, aiohttp_client: Any, redis_url: str
) -> None:
    text = cached(fake.url, f"  backend: redis\n  redis_url: {redis_url}\n")
    one = await aiohttp_client(create_app(parse(text, environ={})))
    two = await aiohttp_client(create_app(parse(text, environ={})))
    first, body = await post(one, STREAM)
    assert first.headers["X-Cache"] == "MISS"
    response = await two.post("/v1/chat/completions", json=STREAM)
    replayed = [data async for data, _ in response.content.iter_chunks()]
    assert response.headers["X-Cache"] == "HIT"
    assert b"".join(replayed) == body
    assert len(fake.seen) == 1
    stats = await (await two.get("/api/v1/cache/stats")).json()
    assert stats["backend"] == "redis" and stats["entries"] == 1
    assert (await (await two.post("/api/v1/cache/clear")).json())["cleared"] == 1
    response, _ = await post(one, STREAM)
    assert response.headers["X-Cache"] == "MISS"


async def test_unreachable_redis_is_a_miss_not_a_failure(fake: FakeOpenAI, gateway: Any) -> None:
    from tests.fakes import free_port

    gw = await gateway(
        cached(fake.url, f"  backend: redis\n  redis_url: redis://127.0.0.1:{free_port()}/0\n")
    )
    for _ in range(2):
        response, _ = await post(gw)
        assert response.status == 200 and response.headers["X-Cache"] == "MISS"


async def test_followers_finish_when_the_leaders_client_leaves_mid_stream(
    fake: FakeOpenAI, gateway: Any
) -> None:
    """The leader's client goes away after the first chunk; a follower already attached
    still gets the whole stream, and the complete answer is cached."""
    chunks = chat_chunks([f"w{i} " for i in range(8)])
    gate = asyncio.Event()
    fake.then(reply_stream(chunks, gate=gate, gate_after=2))
    gw = await gateway(cached(fake.url))
    async with aiohttp.ClientSession() as session:
        url = gw.make_url("/v1/chat/completions")
        leader = await session.post(url, json=STREAM)
        await leader.content.readuntil(b"\n\n")
        follower = asyncio.ensure_future(post(gw, STREAM))
        await asyncio.sleep(0.1)  # the follower has joined the leader's flight
        leader.close()  # the leader's client goes away mid-stream
        await asyncio.sleep(0.1)
        gate.set()
        response, body = await asyncio.wait_for(follower, 5)
    assert response.headers["X-Cache"] == "HIT"
    assert body == b"".join(chunks)
    assert len(fake.seen) == 1
    again, replayed = await post(gw, STREAM)
    assert again.headers["X-Cache"] == "HIT" and replayed == body
