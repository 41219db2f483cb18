"""Translated streams: the provider's events rewritten into the client's format, piece
by piece, by the call's ``StreamTranslator`` (``translate/``)."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from aiohttp import web

from llmgw.answer import Answer, Rest
from llmgw.core import RequestContext, StreamTranslator
from llmgw.errors import stream_error_event
from llmgw.relay.ends import client_gone, end, open_stream, saw_end, trailer_of
from llmgw.upstream import TRANSPORT_ERRORS, AttemptFailure, UpstreamResponse, failure_from


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

    out = await open_stream(ctx, answer, "text/event-stream; charset=utf-8")
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
        await answer.finish(complete=ctx.error is None, trailer=trailer_of(ctx))
    except (ConnectionResetError, asyncio.CancelledError) as gone:  # the client left or stalled
        whole = ctx.error is None and translator.error is None and saw_end(written, client_format)
        client_gone(ctx, gone, whole)
        rest = None if ended else Rest(chunks, deque(), translator, client_format, True)
        await answer.left(ctx.delivered, rest)
        ctx.prompt_tokens = translator.usage.prompt_tokens
        ctx.completion_tokens = translator.usage.completion_tokens
        end(answer, gone)
    ctx.prompt_tokens = translator.usage.prompt_tokens
    ctx.completion_tokens = translator.usage.completion_tokens
    return out
