"""A stream's pieces go from the provider's connection straight to the client's
(``relay.stream``, ``Response.push_to``, ``Sink.push``): what the relay loop did for
each piece is done in the connection's callback, and must come out the same. These
tests hold the edges of that: order when the client reads slowly (pieces then wait in
the queue, and later ones must not overtake them), the provider's pauses counted as
its own (the overhead metric), and the events counted for the usage estimate.
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import aiohttp
import orjson

from tests.conftest import Serve
from tests.fakes import chat_chunks
from tests.fault_fakes import SSE_HEAD, Conn, RawRequest, chunk, head, raw_upstream, stream
from tests.test_faults_client import AUTH, STREAM, config
from tests.test_faults_client_stall import close, post_head, read_to_end

PIECES = 300
PAD = "x" * 4000  # each piece ~4 KiB: 1.2 MiB in all, far past the client's window


def numbered(index: int) -> bytes:
    delta = {"content": f"<{index:04d}>{PAD}"}
    event = {
        "id": "chatcmpl-push",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"


async def numbered_flood(conn: Conn, _: RawRequest) -> None:
    """PIECES numbered content events, one HTTP chunk each, as fast as they are taken."""
    await conn.send(head(200, SSE_HEAD))
    for index in range(PIECES):
        await conn.send(chunk(numbered(index)))
    await conn.send(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await conn.close()


async def read_slowly(port: int, body: bytes, *fields: str) -> bytes:
    """POST ``body`` on a connection with a small receive window and read nothing for
    half a second (the provider's pieces pile up meanwhile), then all of the answer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(post_head("/v1/chat/completions", len(body), *fields) + body)
    await asyncio.sleep(0.5)
    received = await read_to_end(reader)
    await close(writer)
    return received


async def test_pieces_keep_their_order_when_the_client_reads_slowly(serve: Serve) -> None:
    """A client with a small receive window that pauses before reading: the gateway's
    writes back up, pieces wait in the queue for the client, and those arriving meanwhile
    must not overtake them. Every piece arrives, once, in order."""
    async with raw_upstream(numbered_flood) as up:
        gw = await serve(config(up.url))
        assert gw.port is not None
        fields = (f"Authorization: {AUTH['Authorization']}", "Content-Type: application/json")
        received = await read_slowly(gw.port, orjson.dumps(STREAM), *fields)
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    numbers = [int(n) for n in re.findall(rb"<(\d{4})>", received)]
    assert numbers == list(range(PIECES))
    assert received.endswith(b"0\r\n\r\n") and b"data: [DONE]" in received


async def metric(gw: Any, name: str) -> float:
    text = await (await gw.get("/metrics")).text()
    [value] = re.findall(rf'^{name}{{endpoint="chat"}} (\S+)$', text, re.M)
    return float(value)


async def test_the_providers_pauses_are_not_the_gateways_overhead(serve: Serve) -> None:
    """Five pauses of 250 ms between the provider's pieces: the request lasts over a
    second, and the overhead histogram (duration less the wait on the provider) counts
    none of those pauses."""
    events = chat_chunks(["a", "b", "c", "d"])
    async with raw_upstream(stream(events, delay=0.25)) as up:
        gw = await serve(config(up.url))
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                gw.make_url("/v1/chat/completions"), json=STREAM, headers=AUTH
            )
            body = await response.read()
        assert response.status == 200 and body.rstrip().endswith(b"data: [DONE]")
        assert await metric(gw, "llmgw_request_duration_seconds_sum") >= 1.0
        assert await metric(gw, "llmgw_overhead_seconds_sum") < 0.5


async def test_pieces_pushed_one_by_one_count_for_the_usage_estimate(serve: Serve) -> None:
    """A stream without usage, its events arriving one by one: the completion tokens
    are estimated from the events relayed, every one of them counted."""
    events = chat_chunks([f"w{i}" for i in range(12)], usage=False)
    async with raw_upstream(stream(events, delay=0.02)) as up:
        gw = await serve(config(up.url))
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                gw.make_url("/v1/chat/completions"), json=STREAM, headers=AUTH
            )
            await response.read()
        usage = await (await gw.get("/api/v1/usage")).json()
    relayed = sum(event.count(b"data:") for event in events)
    assert usage["keys"]["team"]["completion_tokens"] == relayed - 1


def at_once(events: list[bytes]) -> Any:
    """The whole answer, head to last chunk, in one write: the gateway reads it whole."""

    async def behave(conn: Conn, _: RawRequest) -> None:
        body = b"".join(chunk(event) for event in events)
        await conn.send(head(200, SSE_HEAD) + body + b"0\r\n\r\n")
        await conn.close()

    return behave


async def test_a_stream_read_whole_is_relayed_and_recorded_whole(serve: Serve) -> None:
    """When the provider's whole stream is in with its first read, its bytes go out with
    the response's end: every event reaches the client, and the recording has them all
    (the cache hit that follows replays the same bytes)."""
    events = chat_chunks(["one", "two", "three"])
    async with raw_upstream(at_once(events), at_once(events)) as up:
        gw = await serve(config(up.url, "cache: {enabled: true}"))
        bodies = []
        for _ in range(2):
            response = await gw.post("/v1/chat/completions", json=STREAM, headers=AUTH)
            assert response.status == 200
            bodies.append((response.headers["X-Cache"], await response.read()))
    assert [cache for cache, _ in bodies] == ["MISS", "HIT"]
    assert bodies[0][1] == bodies[1][1] == b"".join(events)


async def test_the_last_piece_comes_before_the_error_of_a_stream_without_its_end(
    serve: Serve,
) -> None:
    """The provider's last piece arrives with the end of its body but without
    ``[DONE]``: that piece still reaches the client, before the error event."""
    events = chat_chunks(["first", "second", "third"], usage=False)[:-1]  # no [DONE]
    assert not events[-1].startswith(b"data: [DONE]")

    async def behave(conn: Conn, _: RawRequest) -> None:
        await conn.send(head(200, SSE_HEAD) + chunk(events[0]))
        for event in events[1:-1]:
            await asyncio.sleep(0.02)
            await conn.send(chunk(event))
        await asyncio.sleep(0.02)
        await conn.send(chunk(events[-1]) + b"0\r\n\r\n")  # the last piece and the end
        await conn.close()

    async with raw_upstream(behave) as up:
        gw = await serve(config(up.url))
        response = await gw.post("/v1/chat/completions", json=STREAM, headers=AUTH)
        body = await response.read()
    assert body.startswith(b"".join(events))
    assert b"ended before it was done" in body[len(b"".join(events)) :]
