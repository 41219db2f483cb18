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
Per chunk the pass-through path does one write and one ``deque.append``: usage is
read once, from the last few chunks, when the stream ends.
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
from llmgw.cache.coalesce import Flight, Head
from llmgw.core import RequestContext, StreamTranslator, Usage
from llmgw.sink import ClientStalled, Sink
from llmgw.upstream import TRANSPORT_ERRORS, AttemptFailure, UpstreamResponse, failure_from

FIRST_EVENT_LIMIT = 1024 * 1024  # commit anyway once this much arrived without an event
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_END_WINDOW = 4096  # the end of a stream's bytes where its end event is looked for


def is_event_stream(response: UpstreamResponse) -> bool:
    return response.headers.get("Content-Type", "").startswith("text/event-stream")


def json_response(
    ctx: RequestContext, status: int, body: bytes, usage: Usage, record: Flight | None = None
) -> web.Response:
    if ctx.claim is not None:  # a hedged attempt: only the first to answer goes on
        ctx.claim()
    ctx.prompt_tokens, ctx.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    ctx.first_byte = time.perf_counter()
    if record is not None:
        assert ctx.provider is not None and ctx.upstream_model is not None
        record.commit(Head(status, "application/json", False, ctx.provider, ctx.upstream_model))
        record.append(body)
        record.finish(complete=True)
    return web.Response(body=body, status=status, content_type="application/json")


def stream_error_event(message: str, client_format: str = "openai") -> bytes:
    """The event that ends a stream that failed after its first byte, in the client's
    dialect (what the OpenAI and Anthropic SDKs raise on)."""
    if client_format == "anthropic":
        error = {"type": "error", "error": {"type": "api_error", "message": message}}
        return sse.encode(orjson.dumps(error), event="error")
    body = {"message": message, "type": "api_error", "param": None, "code": "upstream_error"}
    return sse.encode(orjson.dumps({"error": body}))


async def _open(
    request: web.Request, ctx: RequestContext, content_type: str, record: Flight | None
) -> web.StreamResponse:
    """Commit: headers go out, and followers of the recording may start."""
    if ctx.claim is not None:  # a hedged attempt: only the first to commit goes on
        ctx.claim()
    out = web.StreamResponse(status=200, headers={**_STREAM_HEADERS, "Content-Type": content_type})
    if record is not None:
        assert ctx.provider is not None and ctx.upstream_model is not None
        record.commit(Head(200, content_type, True, ctx.provider, ctx.upstream_model))
    await out.prepare(request)
    ctx.first_byte = time.perf_counter()
    return out


async def _read_first_event(
    ctx: RequestContext, adapter: Adapter, chunks: AsyncIterator[bytes]
) -> bytearray:
    """Buffer up to the first non-comment event; raise if it is an error event."""
    head = bytearray()
    start = 0
    clock = time.perf_counter
    try:
        while len(head) < FIRST_EVENT_LIMIT:
            began = clock()
            chunk = await anext(chunks, None)
            ctx.upstream_wait += clock() - began
            if chunk is None:  # over before any event: nothing worth committing to
                raise AttemptFailure("stream_error", "the provider's stream ended before an event")
            head += chunk
            while (end := sse.event_end(head, start)) != -1:
                event = sse.parse_event(head[start:end])
                start = end
                if event.is_comment:
                    continue
                message = adapter.stream_error(event)
                if message is not None:
                    raise AttemptFailure("stream_error", message)
                return head
    except TRANSPORT_ERRORS as exc:
        raise failure_from(exc) from None
    if not head.strip():
        raise AttemptFailure("stream_error", "the provider's stream was empty")
    return head


async def stream(
    request: web.Request,
    ctx: RequestContext,
    adapter: Adapter,
    upstream: UpstreamResponse,
    write_timeout: float,
    record: Flight | None = None,
) -> web.StreamResponse:
    chunks = upstream.chunks()
    head = await _read_first_event(ctx, adapter, chunks)
    ctx.streamed_events = head.count(b"data:")  # per chunk: one C-level count, no parse

    content_type = upstream.headers.get("Content-Type", "text/event-stream")
    out = await _open(request, ctx, content_type, record)
    sink = Sink(request, out, write_timeout)
    tail: deque[bytes] = deque((bytes(head),), maxlen=4)
    if record is not None:
        record.append(tail[0])

    clock = time.perf_counter
    next_chunk = chunks.__anext__
    sent: bytes | None = None  # the last chunk the client was sent whole
    try:
        await sink.write(tail[0])
        sent = tail[0]
        while True:
            began = clock()
            try:
                chunk = await next_chunk()
            except StopAsyncIteration:
                break
            except TRANSPORT_ERRORS as exc:
                failure = failure_from(exc)
                ctx.error = failure.kind
                await _write_error(sink, record, apart(tail) + stream_error_event(failure.message))
                break
            ctx.upstream_wait += clock() - began
            ctx.streamed_events += chunk.count(b"data:")
            tail.append(chunk)
            if record is not None:  # before the write: a follower must not miss it
                record.append(chunk)
            await sink.write(chunk)
            sent = chunk
        if ctx.error is None and adapter.ends_with_done and not _is_done(tail):
            ctx.error = "stream_truncated"
            message = "the provider's stream ended before it was done"
            await _write_error(sink, record, apart(tail) + stream_error_event(message))
        _read_usage(ctx, adapter, b"".join(tail))
        await _trailer(sink, ctx)
        await sink.write_eof()
        if record is not None:
            record.finish(complete=ctx.error is None)
    except (ConnectionResetError, asyncio.CancelledError) as gone:  # the client left or stalled
        written = tail if tail[-1] is sent else list(tail)[:-1]
        _client_gone(ctx, gone, ctx.error is None and saw_end(written, "openai"), record)
        if not ctx.delivered and record is not None and record.followed:
            await _finish_for_followers(
                chunks, record, adapter.ends_with_done, tail, None, "openai"
            )
        _read_usage(ctx, adapter, b"".join(tail))
        _end(sink, gone)
    return out


def _client_gone(
    ctx: RequestContext, gone: BaseException, whole: bool, record: Flight | None
) -> None:
    """Why a response ended early: its client stalled, or left — after its whole answer
    (``whole``: the answer is complete) or before it."""
    if isinstance(gone, ClientStalled):
        ctx.error = "client_stalled"
    elif whole:
        delivered(ctx, 200, record)
    else:
        ctx.error = "client_disconnected"


def _end(sink: Sink, gone: BaseException) -> None:
    """After the bookkeeping: a stalled client's connection is closed (not before, as
    closing it cancels the handler), a cancellation goes on."""
    if isinstance(gone, ClientStalled):
        sink.abort()
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
    if client_format != "anthropic":
        return last.data.strip() == b"[DONE]"
    if last.event is not None:
        return last.event == "message_stop"
    try:
        data = orjson.loads(last.data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("type") == "message_stop"


def delivered(ctx: RequestContext, status: int, record: Flight | None = None) -> None:
    """The client left after its whole answer: that answer is complete, for the access
    log and metrics (``status``, no error), the cache and the followers of ``record``."""
    ctx.delivered = True
    ctx.status = status
    if record is not None:
        record.finish(complete=True)


async def _finish_for_followers(
    chunks: AsyncIterator[bytes],
    record: Flight,
    ends_with_done: bool,
    tail: deque[bytes],
    translator: StreamTranslator | None,
    client_format: str,
) -> None:
    """The leader's client left but identical requests follow its recording: read the
    provider's stream to its end for them (and for the cache), as if nothing happened."""
    try:
        async for chunk in chunks:
            tail.append(chunk)
            output = chunk if translator is None else translator.feed(chunk)
            if output:
                record.append(output)
    except TRANSPORT_ERRORS as exc:
        message = failure_from(exc).message
        record.append_error(apart(tail) + stream_error_event(message, client_format))
        record.finish(complete=False)
        return
    if translator is not None:
        closing = translator.finish()
        if closing:
            record.append(closing)
        record.finish(complete=translator.done and translator.error is None)
    else:
        record.finish(complete=not ends_with_done or _is_done(tail))


async def translated_stream(
    request: web.Request,
    ctx: RequestContext,
    translator: StreamTranslator,
    upstream: UpstreamResponse,
    client_format: str,
    write_timeout: float,
    record: Flight | None = None,
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

    out = await _open(request, ctx, "text/event-stream; charset=utf-8", record)
    sink = Sink(request, out, write_timeout)
    written: deque[bytes] = deque(maxlen=4)  # the last outputs the client was sent whole
    try:
        await _write(sink, record, pending)
        written.append(pending)
        while not ended:
            began = clock()
            try:
                chunk = await anext(chunks, None)
            except TRANSPORT_ERRORS as exc:
                failure = failure_from(exc)
                ctx.error = failure.kind
                await _write_error(sink, record, stream_error_event(failure.message, client_format))
                break
            ctx.upstream_wait += clock() - began
            if chunk is None:
                ended = True
                closing = translator.finish()
                if closing:
                    await _write(sink, record, closing)
                    written.append(closing)
                break
            ctx.streamed_events += chunk.count(b"data:")
            output = translator.feed(chunk)
            if output:
                await _write(sink, record, output)
                written.append(output)
        if ended and translator.error is not None:
            ctx.error = "stream_error"
            if record is not None:
                record.error_sent = True  # the translator wrote it in the client's dialect
        elif ended and not translator.done:
            ctx.error = "stream_truncated"
            message = "the provider's stream ended before it was done"
            await _write_error(sink, record, stream_error_event(message, client_format))
        ctx.prompt_tokens = translator.usage.prompt_tokens
        ctx.completion_tokens = translator.usage.completion_tokens
        await _trailer(sink, ctx)
        await sink.write_eof()
        if record is not None:
            record.finish(complete=ctx.error is None)
    except (ConnectionResetError, asyncio.CancelledError) as gone:  # the client left or stalled
        whole = ctx.error is None and translator.error is None and saw_end(written, client_format)
        _client_gone(ctx, gone, whole, record)
        if not ctx.delivered and record is not None and record.followed and not ended:
            await _finish_for_followers(chunks, record, True, deque(), translator, client_format)
        ctx.prompt_tokens = translator.usage.prompt_tokens
        ctx.completion_tokens = translator.usage.completion_tokens
        _end(sink, gone)
    ctx.prompt_tokens = translator.usage.prompt_tokens
    ctx.completion_tokens = translator.usage.completion_tokens
    return out


async def _trailer(sink: Sink, ctx: RequestContext) -> None:
    """The request's own closing words (the ``: x-gateway`` comment), not recorded:
    they describe this request, not the answer a cache hit replays."""
    if ctx.trailer is not None and ctx.error is None:
        await sink.write(ctx.trailer())


async def _write(sink: Sink, record: Flight | None, data: bytes) -> None:
    if record is not None:  # before the write: a follower must not miss it
        record.append(data)
    await sink.write(data)


async def _write_error(sink: Sink, record: Flight | None, event: bytes) -> None:
    if record is not None:
        record.append_error(event)
    await sink.write(event)


def apart(tail: deque[bytes]) -> bytes:
    """A blank line when the relayed bytes stop mid-event, so that the error event that
    follows is read as an event of its own (extra blank lines are harmless in SSE)."""
    return b"" if tail[-1].endswith((b"\n\n", b"\r\n\r\n", b"\r\r")) else b"\n\n"


def _is_done(tail: deque[bytes]) -> bool:
    ending = tail[-1] if len(tail[-1]) >= 12 else b"".join(tail)
    return ending.rstrip(b"\r\n").endswith(b"[DONE]")


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
