"""Relay a provider's successful response to the client.

JSON bodies are relayed whole. Streams are relayed byte for byte, each chunk
written as it arrives; before anything is committed the first real event is read
so that a provider answering ``200`` with an error event can still fall back
(SPEC §2). After the first byte, a failure ends the stream with an SSE error event.
A stream is whole once its end event (``data: [DONE]``, or ``message_stop`` on the
Anthropic surface) went out: a client that hangs up after it (the openai SDK does, if
the provider's end of body lags) has its answer, and the answer counts as complete.
A client that reads nothing for ``server.write_timeout`` (``sink.py``) has its response
ended (``client_stalled``, 499): the provider's slot and the limits go free with it.
Everything goes to an ``Answer`` (``answer.py``): the client's, or the cache's recording
of it; which one is not the relay's business.
Per piece the pass-through path wakes nothing: once the first event went out, each
piece the provider sends goes from its connection's callback straight to the client's
transport (``Response.push_to``, ``Sink.push``), counted and kept in the tail there; the
loop wakes only for a piece the client is not ready for (written under the write
timeout, nothing overtaking it) and for the stream's end. The body's last piece, once
the provider's response is complete, leaves with the end of the response in one write.
Usage is read once, from the last few chunks, when the stream ends.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable

import orjson
from aiohttp import web

from llmgw import sse
from llmgw.adapter import Adapter
from llmgw.answer import Answer, ClientAnswer, Head, Rest, apart, is_done
from llmgw.core import Call, RequestContext, StreamTranslator, Usage
from llmgw.errors import stream_error_event
from llmgw.sink import ClientStalled, Stream
from llmgw.translate.responses_wire import ENDS as RESPONSES_ENDS
from llmgw.upstream import TRANSPORT_ERRORS, AttemptFailure, UpstreamResponse, failure_from

FIRST_EVENT_LIMIT = 1024 * 1024  # commit anyway once this much arrived without an event
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_END_WINDOW = 4096  # the end of a stream's bytes where its end event is looked for


def is_event_stream(response: UpstreamResponse) -> bool:
    return response.headers.get("Content-Type", "").startswith("text/event-stream")


# A transcription's ``response_format`` text, srt and vtt: relayed as they are.
_TRANSCRIPTS = ("text/plain", "text/vtt", "application/x-subrip", "text/srt")


def is_binary(response: UpstreamResponse, call: Call | None = None) -> bool:
    """Audio (speech) and other bytes that are neither JSON nor SSE; for an upload's
    call (transcriptions), its text, SRT or VTT answer too."""
    kind = response.headers.get("Content-Type", "")
    if call is not None and call.upload is not None and kind.startswith(_TRANSCRIPTS):
        return True
    return kind.startswith(("audio/", "application/octet-stream"))


async def binary(
    ctx: RequestContext, upstream: UpstreamResponse, answer: Answer
) -> web.StreamResponse:
    """The provider's bytes (speech audio) to the client as they come, in its type."""
    content_type = upstream.headers.get("Content-Type", "application/octet-stream")
    chunks = upstream.chunks()
    out = await _open(ctx, answer, content_type)
    try:
        async for chunk in chunks:
            await answer.write(chunk)
    except TRANSPORT_ERRORS as exc:  # headers are out: the client sees a cut body
        ctx.error = failure_from(exc).kind
        await answer.finish(complete=False)
        return out
    except (ConnectionResetError, asyncio.CancelledError) as gone:
        _client_gone(ctx, gone, False)
        await answer.left(False, None)
        _end(answer, gone)
        return out
    await answer.finish(complete=True)
    return out


def json_response(
    ctx: RequestContext, status: int, body: bytes, usage: Usage, answer: Answer
) -> web.Response:
    if ctx.claim is not None:  # a hedged attempt: only the first to answer goes on
        ctx.claim()
    ctx.prompt_tokens, ctx.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    ctx.first_byte = time.perf_counter()
    assert ctx.provider is not None and ctx.upstream_model is not None
    head = Head(status, "application/json", False, ctx.provider, ctx.upstream_model)
    return answer.whole(head, body)


async def _open(ctx: RequestContext, answer: Answer, content_type: str) -> web.StreamResponse:
    """Commit: the headers go out."""
    if ctx.claim is not None:  # a hedged attempt: only the first to commit goes on
        ctx.claim()
    out = Stream(status=200, headers={**_STREAM_HEADERS, "Content-Type": content_type})
    assert ctx.provider is not None and ctx.upstream_model is not None
    await answer.open(out, Head(200, content_type, True, ctx.provider, ctx.upstream_model))
    ctx.first_byte = time.perf_counter()
    return out


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
    out = await _open(ctx, answer, content_type)
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
        complete, trailer = ctx.error is None, _trailer(ctx)
        if last is not None and client is not None:
            await client.finish(complete, trailer, last)
        else:
            await answer.finish(complete=complete, trailer=trailer)
    except (ConnectionResetError, asyncio.CancelledError) as gone:  # the client left or stalled
        if pushing:  # what is left is read by ``Rest``, from the queue
            upstream.push_to(None)
        written = tail if tail[-1] is sent else list(tail)[:-1]
        _client_gone(ctx, gone, ctx.error is None and saw_end(written, "openai"))
        rest = Rest(chunks, tail, None, "openai", adapter.ends_with_done)
        await answer.left(ctx.delivered, rest)
        _read_usage(ctx, adapter, b"".join(tail))
        _end(answer, gone)
    return out


def _client_gone(ctx: RequestContext, gone: BaseException, whole: bool) -> None:
    """Why a response ended early: its client stalled, or left — after its whole answer
    (``whole``: the answer is complete) or before it."""
    if isinstance(gone, ClientStalled):
        ctx.error = "client_stalled"
    elif whole:
        delivered(ctx, 200)
    else:
        ctx.error = "client_disconnected"


def _end(answer: Answer, gone: BaseException) -> None:
    """After the bookkeeping: a stalled client's connection is closed (not before, as
    closing it cancels the handler), a cancellation goes on."""
    if isinstance(gone, ClientStalled):
        answer.abort()
    elif isinstance(gone, asyncio.CancelledError):
        raise gone


def saw_end(written: Iterable[bytes], client_format: str) -> bool:
    """Whether the last of the bytes a client was sent whole (a few chunks) end with
    its stream's end event: ``data: [DONE]`` in OpenAI's format, ``message_stop`` in
    Anthropic's. Looked at only once the client has gone, never per chunk."""
    events = sse.Decoder().feed(b"".join(written)[-_END_WINDOW:])
    if not events:
        return False
    last = events[-1]
    if client_format != "anthropic":  # chat's [DONE], or the Responses API's end event
        return last.data.strip() == b"[DONE]" or last.event in RESPONSES_ENDS
    if last.event is not None:
        return last.event == "message_stop"
    try:
        data = orjson.loads(last.data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("type") == "message_stop"


def delivered(ctx: RequestContext, status: int) -> None:
    """The client left after its whole answer: that answer is complete, for the access
    log and metrics (``status``, no error) and, told so, for the answer's recording."""
    ctx.delivered = True
    ctx.status = status


async def translated_stream(
    ctx: RequestContext,
    translator: StreamTranslator,
    upstream: UpstreamResponse,
    client_format: str,
    answer: Answer,
) -> web.StreamResponse:
    """A stream whose events are rewritten into the client's format, chunk by chunk.

    Nothing is committed until the translator produced its first output: an error
    event before that falls back like an error status would.
    """
    chunks = upstream.chunks()
    clock = time.perf_counter
    pending = b""
    ended = False
    try:
        while not pending:
            began = clock()
            chunk = await anext(chunks, None)
            ctx.upstream_wait += clock() - began
            if chunk is None:
                ended = True
                pending = translator.finish()
                break
            ctx.streamed_events += chunk.count(b"data:")
            pending = translator.feed(chunk)
            if translator.error is not None and not pending:
                raise AttemptFailure("stream_error", translator.error)
    except TRANSPORT_ERRORS as exc:
        raise failure_from(exc) from None
    if translator.error is not None and ended and not translator.done:
        raise AttemptFailure("stream_error", translator.error)
    if not pending:
        raise AttemptFailure("stream_error", "the provider's stream was empty")

    out = await _open(ctx, answer, "text/event-stream; charset=utf-8")
    written: deque[bytes] = deque(maxlen=4)  # the last outputs the client was sent whole
    try:
        await answer.write(pending)
        written.append(pending)
        while not ended:
            began = clock()
            try:
                chunk = await anext(chunks, None)
            except TRANSPORT_ERRORS as exc:
                failure = failure_from(exc)
                ctx.error = failure.kind
                await answer.write_error(stream_error_event(failure.message, client_format))
                break
            ctx.upstream_wait += clock() - began
            if chunk is None:
                ended = True
                closing = translator.finish()
                if closing:
                    await answer.write(closing)
                    written.append(closing)
                break
            ctx.streamed_events += chunk.count(b"data:")
            output = translator.feed(chunk)
            if output:
                await answer.write(output)
                written.append(output)
        if ended and translator.error is not None:
            ctx.error = "stream_error"
            answer.wrote_error()  # the translator wrote it, in the client's dialect
        elif ended and not translator.done:
            ctx.error = "stream_truncated"
            message = "the provider's stream ended before it was done"
            await answer.write_error(stream_error_event(message, client_format))
        ctx.prompt_tokens = translator.usage.prompt_tokens
        ctx.completion_tokens = translator.usage.completion_tokens
        await answer.finish(complete=ctx.error is None, trailer=_trailer(ctx))
    except (ConnectionResetError, asyncio.CancelledError) as gone:  # the client left or stalled
        whole = ctx.error is None and translator.error is None and saw_end(written, client_format)
        _client_gone(ctx, gone, whole)
        rest = None if ended else Rest(chunks, deque(), translator, client_format, True)
        await answer.left(ctx.delivered, rest)
        ctx.prompt_tokens = translator.usage.prompt_tokens
        ctx.completion_tokens = translator.usage.completion_tokens
        _end(answer, gone)
    ctx.prompt_tokens = translator.usage.prompt_tokens
    ctx.completion_tokens = translator.usage.completion_tokens
    return out


def _trailer(ctx: RequestContext) -> bytes:
    """The request's own closing words (the ``: x-gateway`` comment), not recorded:
    they describe this request, not the answer a cache hit replays."""
    if ctx.trailer is not None and ctx.error is None:
        return ctx.trailer()
    return b""


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
