"""Streams relayed byte for byte (the provider speaks the client's format), each chunk
written as it arrives; before anything is committed the first real event is read so
that a provider answering ``200`` with an error event can still fall back (SPEC §2).

Per piece this path wakes nothing: once the first event went out, each piece the
provider sends goes from its connection's callback straight to the client's transport
(``Response.push_to``, ``Sink.push``), counted and kept in the tail there; the loop
wakes only for a piece the client is not ready for (written under the write timeout,
nothing overtaking it) and for the stream's end. The body's last piece, once the
provider's response is complete, leaves with the end of the response in one write.
Usage is read once, from the last few chunks, when the stream ends.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator

from aiohttp import web

from llmgw import sse
from llmgw.adapter import Adapter
from llmgw.answer import Answer, ClientAnswer, Rest, apart, is_done
from llmgw.core import RequestContext
from llmgw.errors import stream_error_event
from llmgw.relay.ends import client_gone, end, finish, open_stream, saw_end
from llmgw.upstream import TRANSPORT_ERRORS, AttemptFailure, UpstreamResponse, failure_from

FIRST_EVENT_LIMIT = 1024 * 1024  # commit anyway once this much arrived without an event


async def _read_first_event(
    ctx: RequestContext, adapter: Adapter, chunks: AsyncIterator[bytes]
) -> bytes:
    """Buffer up to the first non-comment event; raise if it is an error event. Usually
    the first piece holds it: that piece is returned as it came, not copied."""
    head: bytes | bytearray = b""
    start = 0
    clock = time.perf_counter
    try:
        while len(head) < FIRST_EVENT_LIMIT:
            began = clock()
            chunk = await anext(chunks, None)
            ctx.upstream_wait += clock() - began
            if chunk is None:  # over before any event: nothing worth committing to
                raise AttemptFailure("stream_error", "the provider's stream ended before an event")
            if not head:
                head = chunk
            else:
                if isinstance(head, bytes):
                    head = bytearray(head)
                head += chunk
            while (end := sse.event_end(head, start)) != -1:
                event = sse.parse_event(head[start:end])
                start = end
                if event.is_comment:
                    continue
                message = adapter.stream_error(event)
                if message is not None:
                    raise AttemptFailure("stream_error", message)
                return bytes(head)
    except TRANSPORT_ERRORS as exc:
        raise failure_from(exc) from None
    if not head.strip():
        raise AttemptFailure("stream_error", "the provider's stream was empty")
    return bytes(head)


async def stream(
    ctx: RequestContext, adapter: Adapter, upstream: UpstreamResponse, answer: Answer
) -> web.StreamResponse:
    chunks = upstream.chunks()
    first = await _read_first_event(ctx, adapter, chunks)
    whole = upstream.at_end  # the first read brought the whole body
    ctx.streamed_events = first.count(b"data:")  # per chunk: one C-level count, no parse

    content_type = upstream.headers.get("Content-Type", "text/event-stream")
    out = await open_stream(ctx, answer, content_type)
    tail: deque[bytes] = deque((first,), maxlen=4)

    clock = time.perf_counter
    next_chunk = chunks.__anext__
    write = answer.write
    sent: bytes | None = None  # the last chunk the client was sent whole
    mark = 0.0  # when the relay was last ready for the provider's next piece
    client = answer if isinstance(answer, ClientAnswer) else None
    push = client.push if client is not None else None
    # The body's last chunk, when it is known to be the last (the provider's response is
    # complete): written with the response's end, in one system call (``finish``).
    last = first if whole and client is not None else None

    def take(chunk: bytes) -> bool:
        """A piece, straight from the provider's connection to the client's (see the
        module): what the loop below does for it, without waking the loop."""
        nonlocal sent, mark
        arrived = clock()
        if push is None or not push(chunk):
            return False  # the loop below takes it, and waits for the client if it must
        ctx.upstream_wait += arrived - mark
        ctx.streamed_events += chunk.count(b"data:")
        tail.append(chunk)
        sent = chunk
        mark = clock()
        return True

    pushing = False
    try:
        if last is None:
            await write(first)
            sent = first
            pushing = client is not None and client.pushable() and upstream.push_to(take)
        while last is None:
            mark = clock()
            try:
                chunk = await next_chunk()
            except StopAsyncIteration:
                break
            except TRANSPORT_ERRORS as exc:
                failure = failure_from(exc)
                ctx.error = failure.kind
                await answer.write_error(apart(tail) + stream_error_event(failure.message))
                break
            ctx.upstream_wait += clock() - mark
            ctx.streamed_events += chunk.count(b"data:")
            tail.append(chunk)
            if client is not None and upstream.at_end:
                last = chunk
                break
            if pushing:  # nothing may overtake this piece while it waits for the client
                upstream.push_to(None)
            await write(chunk)
            sent = chunk
            if pushing:
                upstream.push_to(take)
        if pushing:
            upstream.push_to(None)
        if ctx.error is None and adapter.ends_with_done and not is_done(tail):
            if last is not None:
                await write(last)
                sent, last = last, None
            ctx.error = "stream_truncated"
            message = "the provider's stream ended before it was done"
            await answer.write_error(apart(tail) + stream_error_event(message))
        _read_usage(ctx, adapter, b"".join(tail))
        await finish(ctx, answer, client, last)
    except (ConnectionResetError, asyncio.CancelledError) as gone:  # the client left or stalled
        if pushing:  # what is left is read by ``Rest``, from the queue
            upstream.push_to(None)
        written = tail if tail[-1] is sent else list(tail)[:-1]
        client_gone(ctx, gone, ctx.error is None and saw_end(written, "openai"))
        rest = Rest(chunks, tail, None, "openai", adapter.ends_with_done)
        await answer.left(ctx.delivered, rest)
        _read_usage(ctx, adapter, b"".join(tail))
        end(answer, gone)
    return out


def _read_usage(ctx: RequestContext, adapter: Adapter, tail: bytes) -> None:
    """Usage from the last event in the tail that carries one (cheap: a few chunks)."""
    at = tail.rfind(b'"usage":{')
    if at == -1:
        at = tail.rfind(b'"usage": {')
    if at == -1:
        return
    line_start = tail.rfind(b"data:", 0, at)
    line_end = tail.find(b"\n", at)
    if line_start == -1:
        return
    data = tail[line_start + 5 : line_end if line_end != -1 else len(tail)].strip()
    usage = adapter.usage(data)
    ctx.prompt_tokens = usage.prompt_tokens
    ctx.completion_tokens = usage.completion_tokens
