"""Upstream faults on translated streams (an Anthropic or Gemini provider behind
``/v1/chat/completions``), and the SSE decoder those translators read with.

A translated stream is parsed event by event, so a provider that never ends an event
must not make the gateway buffer without bound: past 16 MiB the event becomes an
error (a fallback before the first byte, an error event after it).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from llmgw import sse
from tests.conftest import provider_config
from tests.fault_fakes import LEAK, answer, raw_upstream, stream
from tests.provider_fakes import fixture, pieces
from tests.test_faults_upstream import assert_clean_error, cache_entries, error_events

CHAT = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "stream": True}
EVENTS = fixture("anthropic/stream_text.sse").split(b"\n\n")[:-1]
EVENTS = [event + b"\n\n" for event in EVENTS]  # message_start ... message_stop
MIB = 1024 * 1024
OVERSIZED = 17 * MIB


def config(url: str) -> str:
    timeouts = {"timeout": "250ms", "read_timeout": "250ms", "response_timeout": "250ms"}
    claude = provider_config(url, "claude", "anthropic", "claude-x", max_retries=0, **timeouts)
    return (
        claude
        + """\
  backup:
    type: mock
models:
  chain: [claude/claude-x, backup/echo]
cache: {enabled: true}
"""
    )


def delta(text: str) -> bytes:
    data = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }
    return b"event: content_block_delta\ndata: " + orjson.dumps(data) + b"\n\n"


async def test_giant_event_mid_stream_ends_it_with_an_error(gateway: Any) -> None:
    giant = delta("x" * OVERSIZED)
    async with raw_upstream(stream([*EVENTS[:2], *pieces(giant, MIB), *EVENTS[-3:]])) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json=CHAT)
        body = await response.read()
        assert response.status == 200
        assert len(body) < 64 * 1024  # the giant event was not passed on
        [error] = error_events(body)
        assert "over 16 MiB" in error["message"]
        assert b"[DONE]" not in body
        assert await cache_entries(gw) == 0


async def test_giant_first_event_falls_back(gateway: Any) -> None:
    giant = b"event: message_start\ndata: " + b"x" * OVERSIZED
    async with raw_upstream(stream(pieces(giant, MIB))) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json={**CHAT, "model": "chain"})
        body = await response.read()
        assert response.headers["X-LLMGW-Provider"] == "backup"
        assert body.endswith(b"data: [DONE]\n\n")


async def test_reset_mid_translated_stream_ends_with_error_event(gateway: Any) -> None:
    async with raw_upstream(stream(EVENTS[:4], end="reset")) as up:
        gw = await gateway(config(up.url))
        body = await (await gw.post("/v1/chat/completions", json=CHAT)).read()
        assert b'"content":"Hello"' in body
        [error] = error_events(body)
        assert "cut off" in error["message"]
        assert await cache_entries(gw) == 0


async def test_translated_stream_without_its_end_gets_error_event(gateway: Any) -> None:
    async with raw_upstream(stream(EVENTS[:-1])) as up:
        gw = await gateway(config(up.url))
        body = await (await gw.post("/v1/chat/completions", json=CHAT)).read()
        [error] = error_events(body)
        assert "ended before it was done" in error["message"]
        assert await cache_entries(gw) == 0


async def test_malformed_json_from_a_translated_provider_is_502(gateway: Any) -> None:
    async with raw_upstream(answer(200, f"<html>{LEAK}".encode(), "text/html")) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json={**CHAT, "stream": False})
        assert_clean_error(await response.text(), 502, "upstream_error")


# The decoder -----------------------------------------------------------------------------

# Text a provider can send: any character but line breaks and lone surrogates (which
# have no UTF-8 encoding, so no stream can carry them).
event_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
    max_size=40,
)


@settings(max_examples=60, deadline=None, database=None)
@given(
    events=st.lists(st.tuples(st.sampled_from(["", "delta", "ping"]), event_text), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    newline=st.sampled_from([b"\n", b"\r\n"]),
)
def test_decoder_reads_the_same_events_however_the_bytes_are_cut(
    events: list[tuple[str, str]], cuts: list[int], newline: bytes
) -> None:
    wire = b"".join(
        (f"event: {name}".encode() + newline if name else b"")
        + b"data: "
        + data.encode()
        + newline * 2
        for name, data in events
    )
    whole = sse.Decoder().feed(wire)
    decoder = sse.Decoder()
    pieces, start = [], 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts):
        pieces.append(wire[start:cut])
        start = cut
    pieces.append(wire[start:])
    assert [e for piece in pieces for e in decoder.feed(piece)] == whole
    assert decoder.flush() == []


def test_decoder_scans_each_byte_once() -> None:
    decoder = sse.Decoder()
    began = time.perf_counter()
    decoder.feed(b"data: ")
    for _ in range(4096):  # one 4 MiB event in 1 KiB chunks: quadratic would be ~8 GB
        assert decoder.feed(b"x" * 1024) == []
    [event] = decoder.feed(b"\n\n")
    assert len(event.data) == 4 * 1024 * 1024
    assert time.perf_counter() - began < 1.0


def test_decoder_refuses_an_endless_event_once() -> None:
    decoder = sse.Decoder()
    events = [e for _ in range(17) for e in decoder.feed(b"data: " + b"x" * (1 << 20))]
    assert events == [sse.TOO_LARGE]
    assert decoder.feed(b"\n\ndata: more\n\n") == [] and decoder.flush() == []


# Each line shape the SSE spec allows, read as the spec reads it (event, data, id); the
# shapes providers send (one ``data:`` line; ``event:`` then ``data:``) take a shortcut
# in the decoder, the others the general reading: both must agree with the spec.
LINE_SHAPES = [
    (b"data: x\n\n", [(None, b"x", None)]),
    (b"data:x\n\n", [(None, b"x", None)]),
    (b"data:  x \n\n", [(None, b" x ", None)]),  # one space after the colon goes, no more
    (b"data: a:b\n\n", [(None, b"a:b", None)]),
    (b"data\n\n", []),  # a field without a colon: its value is empty, nothing to dispatch
    (b"data:\n\n", []),  # empty data, no event name: nothing to dispatch
    (b"event: e\ndata: x\n\n", [("e", b"x", None)]),
    (b"event:e\ndata:x\n\n", [("e", b"x", None)]),
    (b"event: e\ndata: a\ndata: b\n\n", [("e", b"a\nb", None)]),
    (b"data: a\ndata: b\n\n", [(None, b"a\nb", None)]),
    (b"event: e\n\n", [("e", b"", None)]),
    (b"id: 7\ndata: x\n\n", [(None, b"x", "7")]),
    (b"data: x\nid: 7\n\n", [(None, b"x", "7")]),
    (b": ping\n\n", []),
    (b": ping\ndata: x\n\n", [(None, b"x", None)]),
    (b"data: x\n: note\n\n", [(None, b"x", None)]),
    (b"retry: 5\ndata: x\n\n", [(None, b"x", None)]),
    (b"data: a\n\n\n\ndata: b\n\n\n", [(None, b"a", None), (None, b"b", None)]),
    (b"event: e\r\ndata: x\r\n\r\n", [("e", b"x", None)]),
    (b"data: a\r\rdata: b\n\n", [(None, b"a", None), (None, b"b", None)]),
    (b"data: a\rdata: b\r\r", [(None, b"a\nb", None)]),
    (b"data: a\n\ndata: tail", [(None, b"a", None), (None, b"tail", None)]),  # flush
]


def test_decoder_reads_each_line_shape_as_the_sse_spec_does() -> None:
    for wire, expected in LINE_SHAPES:
        whole = sse.Decoder()
        events = whole.feed(wire) + whole.flush()
        assert [(e.event, e.data, e.id) for e in events] == expected, wire
        by_byte = sse.Decoder()
        events = [e for i in range(len(wire)) for e in by_byte.feed(wire[i : i + 1])]
        events += by_byte.flush()
        assert [(e.event, e.data, e.id) for e in events] == expected, wire
