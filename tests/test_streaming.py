"""Streams: chunk-by-chunk relay, client disconnects, failures after the first byte."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.conftest import one_provider
from tests.fakes import FakeOpenAI, chat_chunks, reply_stream, wait_for

STREAM = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def error_events(body: bytes) -> list[dict[str, Any]]:
    events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: {")]
    return [e["error"] for e in map(orjson.loads, events) if "error" in e]


async def test_client_disconnect_closes_upstream_connection(fake: FakeOpenAI, gateway: Any) -> None:
    fake.then(fake.slow_stream(chunks=500, delay=0.01))
    gw = await gateway(one_provider(fake.url))
    async with aiohttp.ClientSession() as session:
        response = await session.post(gw.make_url("/v1/chat/completions"), json=STREAM)
        await response.content.readuntil(b"\n\n")
        response.close()  # the client goes away mid-stream
    await asyncio.wait_for(fake.stream_closed.wait(), 3)
    status = await (await gw.get("/api/v1/providers/status")).json()
    assert status["providers"]["up"]["in_flight"] == 0


async def test_failure_after_first_byte_ends_with_error_event(
    fake: FakeOpenAI, gateway: Any
) -> None:
    async def broken(request: web.Request, _: Any) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chat_chunks(["partial"])[0])
        await response.write(chat_chunks(["partial"])[1])
        assert request.transport is not None
        request.transport.abort()  # reset mid-stream
        return response

    fake.then(broken)
    gw = await gateway(one_provider(fake.url))
    response = await gw.post("/v1/chat/completions", json=STREAM)
    body = await response.read()
    assert response.status == 200
    assert b"partial" in body
    [error] = error_events(body)
    assert error["code"] == "upstream_error"


async def test_truncated_stream_without_done_gets_error_event(
    fake: FakeOpenAI, gateway: Any
) -> None:
    fake.then(reply_stream(chat_chunks(["a", "b"])[:-1]))  # no [DONE]
    gw = await gateway(one_provider(fake.url))
    body = await (await gw.post("/v1/chat/completions", json=STREAM)).read()
    [error] = error_events(body)
    assert "ended before it was done" in error["message"]


async def test_silence_past_read_timeout_ends_stream(fake: FakeOpenAI, gateway: Any) -> None:
    gate = asyncio.Event()  # never set: the upstream falls silent after one event
    fake.then(reply_stream(chat_chunks(["a"]), gate=gate, gate_after=1))
    gw = await gateway(one_provider(fake.url, read_timeout="300ms"))
    response = await gw.post("/v1/chat/completions", json=STREAM)
    body = await asyncio.wait_for(response.read(), 5)
    [error] = error_events(body)
    assert "did not answer in time" in error["message"]


async def test_event_split_across_network_chunks(fake: FakeOpenAI, gateway: Any) -> None:
    whole = b"".join(chat_chunks(["split", "me"]))
    pieces = [whole[i : i + 7] for i in range(0, len(whole), 7)]
    fake.then(reply_stream(pieces))
    gw = await gateway(one_provider(fake.url))
    response = await gw.post("/v1/chat/completions", json=STREAM)
    assert await response.read() == whole


async def test_crlf_stream_behind_a_comment_is_relayed_as_sent(
    fake: FakeOpenAI, gateway: Any
) -> None:
    """The first event is looked for across every boundary the SSE spec allows: here
    ``\\r\\n\\r\\n`` after a comment, cut into pieces mid-boundary."""
    events = [c.replace(b"\n", b"\r\n") for c in chat_chunks(["cr", "lf"])]
    whole = b": keep-alive\r\n\r\n" + b"".join(events)
    pieces = [whole[i : i + 5] for i in range(0, len(whole), 5)]
    fake.then(reply_stream(pieces))
    gw = await gateway(one_provider(fake.url))
    response = await gw.post("/v1/chat/completions", json=STREAM)
    assert response.status == 200
    assert await response.read() == whole


async def test_stream_usage_is_logged(fake: FakeOpenAI, gateway: Any, caplog: Any) -> None:
    caplog.set_level("INFO", logger="llmgw.access")
    fake.then(reply_stream(chat_chunks(["a", "b"])))
    gw = await gateway(one_provider(fake.url))
    await (await gw.post("/v1/chat/completions", json=STREAM)).read()
    await wait_for(lambda: any(r.name == "llmgw.access" for r in caplog.records))
    record = next(r for r in caplog.records if r.name == "llmgw.access")
    assert (record.prompt_tokens, record.completion_tokens) == (9, 3)


async def test_a_streams_head_leaves_with_its_first_event(
    fake: FakeOpenAI, gateway: Any, monkeypatch: Any
) -> None:
    """One system call for the head and the first event, not one each: the gateway
    commits to a stream once its first event is at hand (a miss, a coalesced follower,
    a stored stream replayed past the one-write size alike)."""
    from aiohttp import http_writer

    sent: list[bytes] = []
    real = http_writer.StreamWriter._writelines

    def record(self: Any, chunks: Any) -> None:
        chunks = [bytes(chunk) for chunk in chunks]
        sent.append(b"".join(chunks))
        real(self, chunks)

    monkeypatch.setattr(http_writer.StreamWriter, "_writelines", record)
    monkeypatch.setattr(
        http_writer.StreamWriter, "_write", lambda self, chunk: record(self, [chunk])
    )
    fake.then(reply_stream(chat_chunks(["a", "b", "c"])))
    gw = await gateway(one_provider(fake.url))
    response = await gw.post("/v1/chat/completions", json=STREAM)
    body = await response.read()
    assert response.status == 200 and b"[DONE]" in body
    heads = [write for write in sent if b"X-Request-ID" in write]  # the gateway's, not the fake's
    assert len(heads) == 1
    assert b"\r\n\r\n" in heads[0] and b"data: {" in heads[0].partition(b"\r\n\r\n")[2]
