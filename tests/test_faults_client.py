"""Client faults while a request is in flight: slow readers and disconnects at every
stage (head, body, waiting on the provider, mid-stream, leading or following a
coalesced request). Never a 500, never a traceback, nothing left behind: no request
in flight, no concurrency slot held, no upstream connection open, no task.

The gateway runs as in production: ``handler_cancellation=True``, so a client that
goes away cancels its request at once. (What clients send is in
``test_faults_client_input.py``.)
"""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import CLIENT_KEY, Serve, one_provider
from tests.fakes import chat_chunks, wait_for
from tests.fault_fakes import RawUpstream, flood, hang, raw_upstream, stream

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
ADMIN_KEY = "adm-secret-admin-key-4242"  # used where a config sets auth.admin_key


def config(url: str, extra: str = "") -> str:
    return (
        one_provider(url, max_retries=0, read_timeout="10s")
        + f"""\
  demo:
    type: mock
auth:
  keys:
    - {{name: team, key: {CLIENT_KEY}, limits: {{concurrency: 1}}}}
{extra}
"""
    )


@pytest.fixture(autouse=True)
def no_gateway_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No test here may make the gateway log an error, let alone a traceback."""
    caplog.set_level(logging.DEBUG)
    yield
    bad = [r for r in caplog.records if r.name.startswith("llmgw") and r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("llmgw"))


async def raw_exchange(gw: TestClient[Any, Any], data: bytes, within: float = 3.0) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    assert gw.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), within)
    finally:
        writer.close()


def post_head(path: str, length: int, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gw", f"Content-Length: {length}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def healthy(gw: TestClient[Any, Any]) -> None:
    """The gateway still answers, and nothing of the faulty request is left in flight."""
    response = await gw.post("/v1/chat/completions", json={**CHAT, "model": "demo/x"}, headers=AUTH)
    assert response.status == 200, await response.text()
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    status = await (await gw.get("/api/v1/providers/status", headers=admin)).json()
    assert all(p["in_flight"] == 0 for p in status["providers"].values())
    metrics = await (await gw.get("/metrics", headers=admin)).text()
    assert "llmgw_inflight_requests 0.0" in metrics


# Slow readers ---------------------------------------------------------------------------


async def test_slow_reader_holds_the_provider_back_and_memory_stays_flat(serve: Serve) -> None:
    total = 48 * 1024 * 1024
    async with raw_upstream(flood(total)) as up:
        gw = await serve(config(up.url))
        assert gw.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        body = orjson.dumps(STREAM)
        writer.write(post_head("/v1/chat/completions", len(body), *_auth()) + body)
        received = len(await reader.readexactly(256 * 1024))
        tracemalloc.start()
        try:  # the client stops reading: buffers fill, then the provider stalls
            sent = -1
            for _ in range(50):
                await asyncio.sleep(0.2)
                if up.conns[0].sent == sent:
                    break
                sent = up.conns[0].sent
            held = tracemalloc.get_traced_memory()[0]
            await asyncio.sleep(0.5)
            assert up.conns[0].sent - sent < 256 * 1024  # the provider is held back
            grown = tracemalloc.get_traced_memory()[0] - held
        finally:
            tracemalloc.stop()
        assert sent < total // 2  # kernel and aiohttp buffers, not the whole stream
        assert grown < 2 * 1024 * 1024
        tail = b""
        while not tail.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"):
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            assert chunk, "the stream ended early"
            received += len(chunk)
            tail = (tail + chunk)[-64:]
        writer.close()
        assert received > total * 0.99
        await healthy(gw)


def _auth() -> tuple[str, str]:
    return f"Authorization: Bearer {CLIENT_KEY}", "Content-Type: application/json"


# Disconnects at every stage -------------------------------------------------------------


async def test_disconnect_during_the_request_head(serve: Serve) -> None:
    async with raw_upstream() as up:
        gw = await serve(config(up.url))
        assert gw.port is not None
        _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Le")
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.1)
        assert up.requests == []
        await healthy(gw)


async def test_disconnect_during_the_body(serve: Serve) -> None:
    async with raw_upstream() as up:
        gw = await serve(config(up.url))
        assert gw.port is not None
        _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(post_head("/v1/chat/completions", 1000, *_auth()) + b'{"model": "gpt')
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.sleep(0.1)
        assert up.requests == []
        await healthy(gw)


async def test_disconnect_while_the_provider_thinks(serve: Serve) -> None:
    async with raw_upstream(hang(10)) as up:
        gw = await serve(config(up.url))
        timeout = aiohttp.ClientTimeout(total=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with pytest.raises(TimeoutError):
                await session.post(gw.make_url("/v1/chat/completions"), json=CHAT, headers=AUTH)
        await asyncio.wait_for(up.gone.wait(), 2)  # the upstream request was cancelled
        await healthy(gw)  # the key's only concurrency slot is free again
        status = await (await gw.get("/api/v1/providers/status")).json()
        assert status["providers"]["up"]["errors"] == 0  # a client leaving is no provider fault
        assert status["providers"]["up"]["circuit"] == "closed"


async def test_disconnect_mid_stream_cancels_upstream_and_counts_usage(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that leaves before the stream's end event: 499, client_disconnected,
    nothing cached (one that leaves right after it: ``test_faults_client_done.py``)."""
    events = chat_chunks([f"w{i} " for i in range(40)], usage=False)
    async with raw_upstream(stream(events, delay=0.05)) as up:
        gw = await serve(config(up.url, "cache: {enabled: true}"))
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                gw.make_url("/v1/chat/completions"),
                json=STREAM,
                headers={**AUTH, "X-Request-ID": "leaves-early"},
            )
            for _ in range(4):
                await response.content.readuntil(b"\n\n")
            response.close()
        await asyncio.wait_for(_closed(up), 2)
        await healthy(gw)
        usage = await (await gw.get("/api/v1/usage")).json()
        assert usage["keys"]["team"]["completion_tokens"] >= 3  # what was streamed counts
        [line] = [r for r in caplog.records if getattr(r, "request_id", None) == "leaves-early"]
        assert (line.status, line.error) == (499, "client_disconnected")
        metrics = await (await gw.get("/metrics")).text()
        assert 'status="499"' in metrics
        again = await gw.post("/v1/chat/completions", json=STREAM, headers=AUTH)
        assert again.headers["X-Cache"] == "MISS"  # the cut stream was not stored
        await again.read()


async def test_a_write_that_finds_the_client_gone_is_a_quiet_499(
    serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client reset its connection just before the stream's head went out: the
    write fails (aiohttp's ClientConnectionResetError) before any cancellation comes.
    That is a client leaving, not an unexpected error with a traceback."""
    from llmgw.sink import Sink

    async def reset(self: Sink, out: object) -> None:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    monkeypatch.setattr(Sink, "prepare", reset)
    events = chat_chunks(["a ", "b "], usage=False)
    async with raw_upstream(stream(events)) as up:
        gw = await serve(config(up.url))
        response = await gw.post(
            "/v1/chat/completions", json=STREAM, headers={**AUTH, "X-Request-ID": "reset-early"}
        )
        await response.read()
        [line] = [r for r in caplog.records if getattr(r, "request_id", None) == "reset-early"]
        assert (line.status, line.error) == (499, "client_disconnected")
        await healthy(gw)  # the concurrency slot was given back


async def _closed(up: RawUpstream) -> None:
    while up.cancelled == 0:
        await asyncio.sleep(0.01)


async def test_leader_leaving_before_its_answer_does_not_fail_followers(serve: Serve) -> None:
    async with raw_upstream(hang(10)) as up:
        gw = await serve(
            config(up.url, "cache: {enabled: true}").replace("limits: {concurrency: 1}", "")
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.4)) as session:
            leader = asyncio.ensure_future(
                session.post(gw.make_url("/v1/chat/completions"), json=CHAT, headers=AUTH)
            )
            await wait_for(lambda: len(up.requests) == 1)
            follower = asyncio.ensure_future(
                gw.post("/v1/chat/completions", json=CHAT, headers=AUTH)
            )
            with pytest.raises(TimeoutError):
                await leader
        response = await asyncio.wait_for(follower, 5)
        assert response.status == 200  # it went upstream itself once the leader gave up
        assert response.headers["X-Cache"] == "MISS" and len(up.requests) == 2
        await healthy(gw)


async def test_follower_leaving_mid_stream_leaves_the_leader_whole(serve: Serve) -> None:
    events = chat_chunks([f"w{i} " for i in range(20)])
    async with raw_upstream(stream(events, delay=0.03)) as up:
        gw = await serve(
            config(up.url, "cache: {enabled: true}").replace("limits: {concurrency: 1}", "")
        )
        leader = asyncio.ensure_future(gw.post("/v1/chat/completions", json=STREAM, headers=AUTH))
        await wait_for(lambda: len(up.requests) == 1)
        async with aiohttp.ClientSession() as session:
            follower = await session.post(
                gw.make_url("/v1/chat/completions"), json=STREAM, headers=AUTH
            )
            assert follower.headers["X-Cache"] == "HIT"
            await follower.content.readuntil(b"\n\n")
            follower.close()
        body = await (await leader).read()
        assert body == b"".join(events)
        stats = await (await gw.get("/api/v1/cache/stats")).json()
        assert stats["entries"] == 1 and len(up.requests) == 1
        await healthy(gw)


async def test_no_task_is_left_behind_by_disconnects(serve: Serve) -> None:
    async with raw_upstream() as up:
        up.default = stream(chat_chunks([f"w{i} " for i in range(50)]), delay=0.02)
        gw = await serve(config(up.url).replace("limits: {concurrency: 1}", ""))
        await healthy(gw)
        baseline = len(asyncio.all_tasks())
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                response = await session.post(
                    gw.make_url("/v1/chat/completions"), json=STREAM, headers=AUTH
                )
                await response.content.readuntil(b"\n\n")
                response.close()
        await wait_for(lambda: up.cancelled == 5, 3)
        await wait_for(lambda: len(asyncio.all_tasks()) <= baseline, 3)
