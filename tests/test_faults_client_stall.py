"""Clients that stop reading (issue 23, item 3).

A write to a client that makes no progress for ``server.write_timeout`` ends its
response: the provider's slot and the limits go free, the tokens streamed count, the
access line says ``client_stalled`` (499), the provider is not blamed. A follower of a
coalesced request that stops reading never makes the leader's recording grow past the
bound of ``coalesce.py``: it is dropped, and its response ends with the error event.

The gateway runs with ``handler_cancellation=True``, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp.test_utils import TestClient

from llmgw.cache.coalesce import FOLLOWER_LAG, LAG_CHECK
from llmgw.server.appkeys import CACHE
from tests.conftest import CLIENT_KEY, Serve, one_provider
from tests.fakes import chat_chunks, wait_for
from tests.fault_fakes import (
    LAST_CHUNK,
    SSE_HEAD,
    Conn,
    RawRequest,
    chunk,
    flood,
    head,
    raw_upstream,
)
from tests.test_faults_client import STREAM, post_head

OTHER_KEY = "sk-client-other-1111111111"
EVENT_SIZE = 16 * 1024  # the provider's content events, about this many bytes each


@pytest.fixture(autouse=True)
def access_lines(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Access lines are captured; no test here may make the gateway log an error."""
    caplog.set_level(logging.INFO, logger="llmgw")
    yield
    bad = [r for r in caplog.records if r.name.startswith("llmgw") and r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def config(url: str, extra: str = "") -> str:
    return (
        one_provider(url, max_retries=0, max_concurrency=1, timeout="3s")
        + f"""\
auth:
  keys:
    - {{name: team, key: {CLIENT_KEY}}}
    - {{name: other, key: {OTHER_KEY}}}
{extra}
"""
    )


async def stop_reading(gw: TestClient[Any, Any], request_id: str) -> tuple[Any, Any]:
    """A raw client that asks for a stream, reads its response's head, then reads no more."""
    assert gw.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    body = orjson.dumps(STREAM)
    fields = (
        f"Authorization: Bearer {CLIENT_KEY}",
        "Content-Type: application/json",
        f"X-Request-ID: {request_id}",
    )
    writer.write(post_head("/v1/chat/completions", len(body), *fields) + body)
    response_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert response_head.startswith(b"HTTP/1.1 200"), response_head
    return reader, writer


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """What the gateway sent, until the response's last chunk or until it closed the
    connection (bounded)."""
    received = bytearray()
    with contextlib.suppress(ConnectionError):
        while not received.endswith(b"\r\n0\r\n\r\n"):
            data = await asyncio.wait_for(reader.read(1 << 20), 10)
            if not data:
                break
            received += data
    return bytes(received)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def access_line(caplog: pytest.LogCaptureFixture, request_id: str) -> logging.LogRecord:
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert len(lines) == 1, lines
    return lines[0]


async def test_a_stalled_client_frees_its_provider_slot(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """max_concurrency 1: while a client that reads nothing holds the only slot, another
    key's request waits for it; write_timeout ends the stalled one and lets it through."""
    async with raw_upstream(flood(64 * 1024 * 1024, EVENT_SIZE)) as up:
        gw = await serve(config(up.url, "server: {write_timeout: 500ms}"))
        reader, writer = await stop_reading(gw, "stalls")
        client = openai.AsyncOpenAI(
            base_url=str(gw.make_url("/v1")), api_key=OTHER_KEY, max_retries=0, timeout=20
        )
        answer = None
        for _ in range(5):  # each try waits up to the provider's timeout (3s) for the slot
            try:
                chunks = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "hi"}],
                    stream=True,
                )
            except openai.InternalServerError as exc:  # 503: the slot is still held
                assert exc.status_code == 503 and "concurrency limit" in str(exc)
                continue
            answer = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
            break
        assert answer == "fine"
        await client.close()

        line = access_line(caplog, "stalls")
        assert (line.status, line.error) == (499, "client_stalled")
        assert line.completion_tokens > 0  # what was streamed before the stall counts
        usage = await (await gw.get("/api/v1/usage")).json()
        assert usage["keys"]["team"]["completion_tokens"] == line.completion_tokens
        status = await (await gw.get("/api/v1/providers/status")).json()
        assert status["providers"]["up"]["errors"] == 0  # a stalled client is no provider fault
        assert status["providers"]["up"]["circuit"] == "closed"
        assert status["providers"]["up"]["in_flight"] == 0
        received = await read_to_end(reader)  # the gateway closed the connection
        await close(writer)
        assert b"data: [DONE]" not in received
        metrics = await (await gw.get("/metrics")).text()
        assert "llmgw_inflight_requests 0.0" in metrics


def held_back_flood(go: asyncio.Event, total: int) -> Callable[[Conn, RawRequest], Awaitable[None]]:
    """``flood``, but only the first event until ``go`` is set."""
    event = chat_chunks(["x" * EVENT_SIZE], usage=False)[1]

    async def behave(conn: Conn, _: RawRequest) -> None:
        await conn.send(head(200, SSE_HEAD) + chunk(chat_chunks([])[0]))
        await go.wait()
        for _ in range(total // len(event)):
            await conn.send(chunk(event))
        await conn.send(chunk(b"data: [DONE]\n\n") + LAST_CHUNK)
        await conn.close()

    return behave


async def test_a_stalled_follower_does_not_pin_the_recording(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """An answer too big to cache (1 MiB), a follower that stops reading: the flight
    holds at most FOLLOWER_LAG (and a little) while the leader reads 48 MiB; the
    follower is dropped and its response ends with the stream's error event."""
    go = asyncio.Event()
    total = 48 * 1024 * 1024
    async with raw_upstream(held_back_flood(go, total)) as up:
        gw = await serve(
            config(up.url, "cache: {enabled: true, max_size: 1MiB}").replace(
                "max_concurrency: 1", "max_concurrency: 0"
            )
        )
        flights = gw.server.app[CACHE].flights
        async with aiohttp.ClientSession() as session:
            leader = await session.post(
                gw.make_url("/v1/chat/completions"),
                json=STREAM,
                headers={"Authorization": f"Bearer {CLIENT_KEY}", "X-Request-ID": "leads"},
            )
            assert leader.headers["X-Cache"] == "MISS"
            reader, writer = await stop_reading(gw, "follows")
            await wait_for(lambda: all(f.followed for f in flights) and len(flights) == 1)
            go.set()
            peak, received, tail = 0, 0, b""
            async for data in leader.content.iter_chunked(1 << 20):
                received += len(data)
                tail = (tail + data)[-64:]
                peak = max([peak, *(f.held for f in flights)])
        assert tail.endswith(b"data: [DONE]\n\n") and received > total * 0.99
        assert len(up.requests) == 1  # the follower did follow
        assert peak <= FOLLOWER_LAG + LAG_CHECK + 4 * EVENT_SIZE, peak

        followed = await read_to_end(reader)
        await close(writer)
        assert b"fell too far behind" in followed
        assert followed.endswith(b"\r\n0\r\n\r\n")  # the response ended properly
        assert b"data: [DONE]" not in followed
        leads, follows = access_line(caplog, "leads"), access_line(caplog, "follows")
        assert (leads.status, leads.error) == (200, None)
        assert (follows.status, follows.error, follows.cache) == (499, "client_lagged", "HIT")


async def test_a_stalled_cache_hit_is_ended_too(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A hit is written by the gateway within write_timeout like a miss: a client that
    reads none of a large stored answer is closed and logged client_stalled."""
    async with raw_upstream(flood(32 * 1024 * 1024, EVENT_SIZE)) as up:
        gw = await serve(config(up.url, "server: {write_timeout: 500ms}\ncache: {enabled: true}"))
        auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
        first = await gw.post("/v1/chat/completions", json=STREAM, headers=auth)
        assert first.headers["X-Cache"] == "MISS"
        assert (await first.read()).endswith(b"data: [DONE]\n\n")
        reader, writer = await stop_reading(gw, "stalls-on-a-hit")
        await wait_for(
            lambda: any(
                getattr(r, "request_id", None) == "stalls-on-a-hit" for r in caplog.records
            ),
            10,
        )
        line = access_line(caplog, "stalls-on-a-hit")
        assert (line.status, line.error, line.cache) == (499, "client_stalled", "HIT")
        await read_to_end(reader)  # closed by the gateway, not left hanging
        await close(writer)
        assert len(up.requests) == 1
