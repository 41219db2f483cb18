"""Translated streams take the direct path too (``relay/translated.py``): the translator
runs in the provider connection's callback (``Response.push_to``) and its output goes
straight to the client's transport (``Sink.push``). These tests drive it over HTTP with
the official SDKs and hold its edges: the exact events a client receives when pieces
are paced (each one pushed), when a piece translates to nothing, when the client is
not ready (the output is held for the relay's loop; nothing overtakes it, nothing is
doubled, the recording has it all), the provider's last piece (written with the end),
and an error mid-stream (a reset, a provider's error event).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from llmgw.answer import Rest
from llmgw.http.response import Response
from llmgw.translate.anthropic_messages import MessagesRelay
from tests.conftest import Serve, provider_config
from tests.fakes import chat_chunks, wait_for
from tests.fault_fakes import SSE_HEAD, Conn, RawRequest, chunk, head, raw_upstream, stream
from tests.provider_fakes import anthropic_client
from tests.test_faults_client_stall import close, post_head, read_to_end
from tests.test_stream_push import at_once, read_slowly

CHAT = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


def event(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def message_start(model: str = "claude-x") -> bytes:
    message = {
        "id": "msg_push",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 1},
    }
    return event({"type": "message_start", "message": message})


BLOCK_START = event(
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
)
PING = event({"type": "ping"})
BLOCK_STOP = event({"type": "content_block_stop", "index": 0})
MESSAGE_STOP = event({"type": "message_stop"})


def delta(text: str) -> bytes:
    return event(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    )


def message_delta(output_tokens: int) -> bytes:
    return event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )


def anthropic_stream(texts: list[str]) -> list[bytes]:
    """The real event sequence, one event a piece, pings and the block's start and stop
    among them (pieces that translate to nothing for an OpenAI client)."""
    return [
        message_start(),
        BLOCK_START,
        PING,
        *[delta(text) for text in texts],
        PING,
        BLOCK_STOP,
        message_delta(len(texts)),
        MESSAGE_STOP,
    ]


def config(url: str, extra: str = "") -> str:
    return provider_config(url, "claude", "anthropic", "claude-x", max_retries=0) + extra


class Taken:
    """What the provider connection's callback did with each piece it was handed:
    True (sent on), None (taken, its output held for the relay's loop)."""

    def __init__(self) -> None:
        self.results: list[bool | None] = []


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[Taken]:
    record = Taken()
    original = Response.push_to

    def push_to(self: Response, consumer: Callable[[bytes], bool | None] | None) -> bool:
        if consumer is None:
            return original(self, None)

        def counted(piece: bytes) -> bool | None:
            result = consumer(piece)
            record.results.append(result)
            return result

        return original(self, counted)

    monkeypatch.setattr(Response, "push_to", push_to)
    yield record


def chat_events(body: bytes) -> list[Any]:
    """The client's SSE events (``[DONE]`` as the string), without ``created``, which
    is the gateway's clock."""
    found: list[Any] = []
    for block in body.split(b"\n\n"):
        data = b"\n".join(line[6:] for line in block.split(b"\n") if line.startswith(b"data: "))
        if not data:
            continue
        if data == b"[DONE]":
            found.append("[DONE]")
            continue
        parsed = orjson.loads(data)
        parsed.pop("created", None)
        found.append(parsed)
    return found


def expected_chat(texts: list[str], usage: bool = True) -> list[Any]:
    """What an OpenAI client is sent for ``anthropic_stream(texts)``."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {
            "id": "msg_push",
            "object": "chat.completion.chunk",
            "model": "claude-x",
            "choices": [choice],
        }

    events: list[Any] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": text}) for text in texts]
    events.append(chunk({}, "stop"))
    if usage:
        tokens = {"prompt_tokens": 11, "completion_tokens": len(texts)}
        usage_chunk = {
            "id": "msg_push",
            "object": "chat.completion.chunk",
            "model": "claude-x",
            "choices": [],
            "usage": {**tokens, "total_tokens": 11 + len(texts)},
        }
        events.append(usage_chunk)
    return [*events, "[DONE]"]


async def test_paced_pieces_are_translated_and_pushed_one_by_one(
    serve: Serve, sdk: Any, taken: Taken
) -> None:
    """An Anthropic provider's events, paced, behind the openai SDK: each piece is taken
    in the connection's callback and sent on at once; the SDK gets exactly the chunks of
    the relay path, usage included."""
    texts = ["Hel", "lo", ", wö", "rld"]
    async with raw_upstream(stream(anthropic_stream(texts), delay=0.02)) as up:
        gw = await serve(config(up.url))
        chunks = [c async for c in await sdk(gw).chat.completions.create(**STREAM)]
    seen = [c.model_dump(exclude={"created"}, exclude_none=True) for c in chunks]
    wanted = [e for e in expected_chat(texts) if e != "[DONE]"]
    assert seen == [_without_nulls(e) for e in wanted]
    assert taken.results and all(result is True for result in taken.results)


def _without_nulls(value: Any) -> Any:
    """As ``model_dump(exclude_none=True)`` leaves a chunk."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


async def test_pieces_that_translate_to_nothing_are_taken_and_write_nothing(
    serve: Serve, taken: Taken
) -> None:
    """Pings and a block's start and stop, each a piece of its own between two deltas:
    the translator makes nothing of them, nothing is written for them, and the client's
    events are exactly those of the deltas around them."""
    events = [message_start(), BLOCK_START, PING, delta("a"), PING, PING, PING, delta("b")]
    events += [PING, BLOCK_STOP, message_delta(2), MESSAGE_STOP]
    async with raw_upstream(stream(events, delay=0.02)) as up:
        gw = await serve(config(up.url))
        response = await gw.post("/v1/chat/completions", json=STREAM)
        body = await response.read()
    assert response.status == 200
    assert chat_events(body) == expected_chat(["a", "b"])
    assert taken.results.count(True) >= 1


PIECES = 300
PAD = "x" * 4000  # each delta ~4 KiB: 1.2 MiB in all, far past the client's window


def numbered_flood() -> Any:
    async def behave(conn: Conn, _: RawRequest) -> None:
        await conn.send(head(200, SSE_HEAD) + chunk(message_start() + BLOCK_START))
        for index in range(PIECES):
            await conn.send(chunk(delta(f"<{index:04d}>{PAD}")))
        tail = BLOCK_STOP + message_delta(PIECES) + MESSAGE_STOP
        await conn.send(chunk(tail) + b"0\r\n\r\n")
        await conn.close()

    return behave


def dechunk(raw: bytes) -> bytes:
    """An HTTP/1.1 response's chunked body, its framing taken off."""
    _, _, rest = raw.partition(b"\r\n\r\n")
    body = bytearray()
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2 :]
    return bytes(body)


async def test_outputs_the_client_is_not_ready_for_wait_and_nothing_overtakes_them(
    serve: Serve, taken: Taken
) -> None:
    """A client with a small receive window that pauses before reading: outputs are
    held for the relay's loop (written under the write timeout) while later pieces
    wait. Every delta arrives once, in order, and the recording has exactly what the
    client got: the cache hit that follows replays the same bytes."""
    async with raw_upstream(numbered_flood()) as up:
        gw = await serve(config(up.url, "cache: {enabled: true}\n"))
        assert gw.port is not None
        received = await read_slowly(
            gw.port, orjson.dumps(STREAM), "Content-Type: application/json"
        )
        hit = await gw.post("/v1/chat/completions", json=STREAM)
        replayed = await hit.read()
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    first = dechunk(received)
    numbers = [int(n) for n in re.findall(rb"<(\d{4})>", first)]
    assert numbers == list(range(PIECES))
    events = chat_events(first)
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == PIECES
    assert None in taken.results  # some output was held for the loop
    assert hit.headers["X-Cache"] == "HIT" and replayed == first


async def test_the_last_piece_leaves_with_the_end(serve: Serve, taken: Taken) -> None:
    """The provider's last piece holds the last delta, the block's stop, the usage and
    ``message_stop``, and arrives with the end of its body: it is translated with the
    translator's closing bytes, after the pushed pieces, nothing lost or doubled."""
    events = anthropic_stream(["one", "two", "three"])
    last = b"".join(events[-5:])  # the last delta, a ping, the stops and the usage

    async def behave(conn: Conn, _: RawRequest) -> None:
        await conn.send(head(200, SSE_HEAD) + chunk(events[0]))
        for item in events[1:-5]:
            await asyncio.sleep(0.02)
            await conn.send(chunk(item))
        await asyncio.sleep(0.02)
        await conn.send(chunk(last) + b"0\r\n\r\n")
        await conn.close()

    async with raw_upstream(behave) as up:
        gw = await serve(config(up.url))
        response = await gw.post("/v1/chat/completions", json=STREAM)
        body = await response.read()
    assert chat_events(body) == expected_chat(["one", "two", "three"])
    assert taken.results.count(True) >= 1


async def test_a_translated_stream_read_whole_is_relayed_and_recorded_whole(
    serve: Serve, taken: Taken
) -> None:
    """The provider's whole stream in with its first read: its translation and the
    closing bytes go out with the response's end; every event reaches the client, and
    the recording has them all (the cache hit replays the same bytes)."""
    events = anthropic_stream(["whole", "at", "once"])
    async with raw_upstream(at_once(events), at_once(events)) as up:
        gw = await serve(config(up.url, "cache: {enabled: true}\n"))
        bodies = []
        for _ in range(2):
            response = await gw.post("/v1/chat/completions", json=STREAM)
            assert response.status == 200
            bodies.append((response.headers["X-Cache"], await response.read()))
    assert [cache for cache, _ in bodies] == ["MISS", "HIT"]
    assert chat_events(bodies[0][1]) == expected_chat(["whole", "at", "once"])
    assert bodies[0][1] == bodies[1][1]
    assert taken.results == []  # nothing was left to push


async def test_the_last_output_comes_before_the_error_of_a_stream_without_its_end(
    serve: Serve,
) -> None:
    """The provider's last piece arrives with the end of its body but without
    ``message_stop``: its output still reaches the client, then the error event."""
    events = anthropic_stream(["first", "second"])[:-1]  # no message_stop

    async def behave(conn: Conn, _: RawRequest) -> None:
        await conn.send(head(200, SSE_HEAD) + chunk(events[0]))
        for item in events[1:-1]:
            await asyncio.sleep(0.02)
            await conn.send(chunk(item))
        await asyncio.sleep(0.02)
        await conn.send(chunk(events[-1]) + b"0\r\n\r\n")  # the usage, and the end
        await conn.close()

    async with raw_upstream(behave) as up:
        gw = await serve(config(up.url))
        response = await gw.post("/v1/chat/completions", json=STREAM)
        body = await response.read()
    got = chat_events(body)
    wanted = expected_chat(["first", "second"])[:-2]  # no usage chunk, no [DONE]
    assert got[: len(wanted)] == wanted
    [error] = got[len(wanted) :]
    assert "ended before it was done" in error["error"]["message"]


async def test_a_reset_mid_stream_ends_it_with_an_error_after_the_pushed_pieces(
    serve: Serve, sdk: Any, taken: Taken
) -> None:
    """The provider resets its connection after a few paced pieces: the openai SDK gets
    every chunk pushed before, then the gateway's error event (the SDK raises it)."""
    events = anthropic_stream(["al", "most"])[:5]  # up to the first two deltas
    async with raw_upstream(stream(events, delay=0.02, end="reset")) as up:
        gw = await serve(config(up.url))
        seen = []
        with pytest.raises(openai.APIError) as raised:
            async for c in await sdk(gw).chat.completions.create(**STREAM):
                seen.append(c.model_dump(exclude={"created"}, exclude_none=True))
    wanted = expected_chat(["al", "most"])[:3]
    assert seen == [_without_nulls(e) for e in wanted]
    assert "provider" in raised.value.message
    assert taken.results.count(True) >= 1


async def test_a_providers_error_event_mid_stream_reaches_the_client_in_its_dialect(
    serve: Serve, taken: Taken
) -> None:
    """An Anthropic ``error`` event after a few paced deltas: translated in the
    callback, it reaches the client as an OpenAI error event, after the deltas, and
    nothing follows it."""
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events = [*anthropic_stream(["al", "most"])[:5], event(overloaded)]
    async with raw_upstream(stream(events, delay=0.02)) as up:
        gw = await serve(config(up.url))
        response = await gw.post("/v1/chat/completions", json=STREAM)
        body = await response.read()
    got = chat_events(body)
    wanted = expected_chat(["al", "most"])[:3]
    assert got[:3] == wanted
    [error] = got[3:]
    assert error["error"]["message"] == "overloaded_error: Overloaded"
    assert taken.results.count(True) >= 1


async def test_openai_pieces_behind_the_anthropic_sdk_are_pushed_one_by_one(
    serve: Serve, taken: Taken
) -> None:
    """The reverse direction: an OpenAI-compatible provider's paced chunks behind
    ``/v1/messages`` and the anthropic SDK, each translated in the callback. The SDK
    gets the exact event sequence of a Messages stream, text and usage included."""
    words = ["Hel", "lo", "!"]
    async with raw_upstream(stream(chat_chunks(words), delay=0.02)) as up:
        gw = await serve(provider_config(up.url, "up", "openai", "gpt-4o-mini", max_retries=0))
        async with anthropic_client(gw) as client:
            request = {
                "model": "gpt-4o-mini",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "hi"}],
            }
            events = [e async for e in await client.messages.create(**request, stream=True)]
    seen = [event.type for event in events]
    assert seen == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * len(words),
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    texts = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert texts == words
    assert events[0].message.model == "gpt-4o-mini"
    [end] = [e for e in events if e.type == "message_delta"]
    assert end.delta.stop_reason == "end_turn" and end.usage.output_tokens == len(words)
    assert taken.results.count(True) >= 1


async def test_the_rest_of_a_left_stream_starts_with_the_held_output() -> None:
    """A client that leaves while an output of a piece already read waits for the
    relay's loop: the rest of the stream, read on for those following its recording,
    starts with that output, then the translation of what the provider still sends."""
    translator = MessagesRelay()
    translator.feed(message_start())  # read before the client left
    later = [delta("b"), MESSAGE_STOP]

    async def chunks() -> Any:
        for piece in later:
            yield piece

    rest = Rest(chunks(), deque(), translator, "anthropic", True, held=delta("a"))
    outputs = [output async for output in rest.outputs()]
    assert outputs == [delta("a"), *later]
    assert rest.complete and rest.error is None


def endless_deltas(size: int = 16 * 1024, total: int = 64 * 1024 * 1024) -> Any:
    """An Anthropic stream of big deltas, far more than any socket holds."""
    piece = delta("y" * size)

    async def behave(conn: Conn, _: RawRequest) -> None:
        await conn.send(head(200, SSE_HEAD) + chunk(message_start() + BLOCK_START))
        for _ in range(total // len(piece)):
            await conn.send(chunk(piece))
        await conn.send(chunk(BLOCK_STOP + message_delta(1) + MESSAGE_STOP) + b"0\r\n\r\n")
        await conn.close()

    return behave


async def test_a_client_that_stops_reading_a_translated_stream_is_ended_by_the_write_timeout(
    serve: Serve, taken: Taken, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that reads the head and nothing more: outputs are held for the loop,
    whose bounded write ends the response after ``write_timeout`` (``client_stalled``,
    499), with the provider's slot freed and no fault of the provider's counted."""
    caplog.set_level(logging.INFO, logger="llmgw")
    async with raw_upstream(endless_deltas()) as up:
        gw = await serve(config(up.url, "server: {write_timeout: 500ms}\n"))
        assert gw.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        body = orjson.dumps(STREAM)
        fields = ("Content-Type: application/json", "X-Request-ID: stalls-translated")
        writer.write(post_head("/v1/chat/completions", len(body), *fields) + body)
        response_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert response_head.startswith(b"HTTP/1.1 200"), response_head

        def lines() -> list[logging.LogRecord]:
            return [
                r for r in caplog.records if getattr(r, "request_id", None) == "stalls-translated"
            ]

        await wait_for(lambda: bool(lines()), within=20)  # not reading meanwhile
        received = await read_to_end(reader)  # what was sent before the gateway closed it
        await close(writer)
        status = await (await gw.get("/api/v1/providers/status")).json()
    [line] = lines()
    assert (line.status, line.error) == (499, "client_stalled")
    assert b"[DONE]" not in received
    assert status["providers"]["claude"]["errors"] == 0
    assert status["providers"]["claude"]["in_flight"] == 0
    assert None in taken.results  # the output the client was not ready for was held


async def test_a_follower_gets_the_pushed_outputs_of_its_leader(serve: Serve, taken: Taken) -> None:
    """An identical request follows a paced translated stream: the leader's outputs,
    pushed from the callback, are recorded for its flight as they go; the follower gets
    the same bytes as the leader, and the cache stores them."""
    texts = ["a", "b", "c", "d", "e", "f"]
    async with raw_upstream(stream(anthropic_stream(texts), delay=0.05)) as up:
        gw = await serve(config(up.url, "cache: {enabled: true}\n"))
        async with aiohttp.ClientSession() as session:
            leader = await session.post(gw.make_url("/v1/chat/completions"), json=STREAM)
            assert leader.status == 200
            first = await leader.content.readuntil(b"\n\n")  # the leader is under way
            follower = await session.post(gw.make_url("/v1/chat/completions"), json=STREAM)
            followed = await follower.read()
            led = first + await leader.read()
        again = await gw.post("/v1/chat/completions", json=STREAM)
        stored = await again.read()
        assert len(up.requests) == 1
    assert follower.headers["X-Cache"] == "HIT" and again.headers["X-Cache"] == "HIT"
    assert chat_events(led) == expected_chat(texts)
    assert followed == led and stored == led
    assert taken.results.count(True) >= 1
