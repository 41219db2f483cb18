"""Translated streams: the provider's events rewritten into the client's format, piece
by piece, by the call's ``StreamTranslator`` (``translate/``).

Nothing is committed until the translator produced its first output: an error event
before that falls back like an error status would. After that, as on the pass-through
path (``passthrough``), a piece wakes nothing: the translator is pure and synchronous,
so it runs in the provider connection's callback (``Response.push_to``) and its output
goes straight to the client's transport (``Sink.push``), counted, recorded and kept for
the end there. When the client is not ready for an output (the write may have to wait)
it is held: the loop is woken to write it under the write timeout, and no piece is
taken meanwhile, so nothing overtakes it. A piece that translates to nothing is
simply taken. The body's last piece, once the provider's response is complete, is
translated with the translator's closing bytes and leaves with the end of the response
in one write.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator

from aiohttp import web

from llmgw.answer import Answer, ClientAnswer, Rest
from llmgw.core import RequestContext, StreamTranslator
from llmgw.errors import stream_error_event
from llmgw.relay.ends import client_gone, end, finish, open_stream, saw_end
from llmgw.upstream import TRANSPORT_ERRORS, AttemptFailure, UpstreamResponse, failure_from


async def _first_output(
    ctx: RequestContext, translator: StreamTranslator, chunks: AsyncIterator[bytes]
) -> tuple[bytes, bool]:
    """The translator's first output, and whether the provider's stream ended with it;
    a stream that fails before it (an error event, nothing at all) is the attempt's
    failure."""
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
    return pending, ended


async def translated_stream(
    ctx: RequestContext,
    translator: StreamTranslator,
    upstream: UpstreamResponse,
    client_format: str,
    answer: Answer,
) -> web.StreamResponse:
    """A stream whose events are rewritten into the client's format, piece by piece
    (see the module)."""
    chunks = upstream.chunks()
    pending, ended = await _first_output(ctx, translator, chunks)
    out = await open_stream(ctx, answer, "text/event-stream; charset=utf-8")

    clock = time.perf_counter
    next_chunk = chunks.__anext__
    feed = translator.feed
    written: deque[bytes] = deque(maxlen=4)  # the last outputs the client was sent whole
    client = answer if isinstance(answer, ClientAnswer) else None
    push = client.push if client is not None else None
    held = b""  # an output taken in the callback that the client was not ready for
    mark = 0.0  # when the relay was last ready for the provider's next piece
    # The stream's last output, when the provider's response is known to be complete:
    # written with the response's end, in one system call (``finish``).
    last: bytes | None = None

    def take(chunk: bytes) -> bool | None:
        """A piece, translated in the provider connection's callback and its output
        sent to the client's transport: what the loop below does for it, without
        waking the loop. None: the client was not ready; the output is ``held`` for
        the loop, which is woken to write it."""
        nonlocal mark, held
        arrived = clock()
        ctx.streamed_events += chunk.count(b"data:")
        output = feed(chunk)
        if output:
            if push is None or not push(output):
                held = output
                return None
            written.append(output)
        ctx.upstream_wait += arrived - mark
        mark = clock()
        return True

    pushing = False
    try:
        if client is not None and (ended or upstream.at_end):  # the body is whole
            last = pending if ended else pending + translator.finish()
            ended = True
        else:
            await answer.write(pending)
            written.append(pending)
            pushing = client is not None and client.pushable() and upstream.push_to(take)
        while not ended:
            mark = clock()
            try:
                chunk = await next_chunk()
            except StopAsyncIteration:
                ended = True
                chunk = b""
            except TRANSPORT_ERRORS as exc:
                failure = failure_from(exc)
                ctx.error = failure.kind
                await answer.write_error(stream_error_event(failure.message, client_format))
                break
            ctx.upstream_wait += clock() - mark
            output, held = held, b""  # a held output came before this piece
            if chunk:
                ctx.streamed_events += chunk.count(b"data:")
                output += feed(chunk)
            if not ended and client is not None and upstream.at_end:
                ended = True  # the body's last piece: written with the response's end
            if ended:
                output += translator.finish()
                if client is not None:
                    last = output
                    break
            if output:
                if pushing:  # nothing may overtake this output while it waits
                    upstream.push_to(None)
                await answer.write(output)
                written.append(output)
                if pushing and not ended:
                    upstream.push_to(take)
        if pushing:
            upstream.push_to(None)
        if ended and translator.error is not None:
            ctx.error = "stream_error"
            answer.wrote_error()  # the translator wrote it, in the client's dialect
        elif ended and not translator.done:
            if last:  # what the client has yet to get comes before the error event
                await answer.write(last)
                written.append(last)
            last = None
            ctx.error = "stream_truncated"
            message = "the provider's stream ended before it was done"
            await answer.write_error(stream_error_event(message, client_format))
        _usage(ctx, translator)
        await finish(ctx, answer, client, last)
    except (ConnectionResetError, asyncio.CancelledError) as gone:  # the client left or stalled
        if pushing:  # what is left is read by ``Rest``, from the queue
            upstream.push_to(None)
        whole = ctx.error is None and translator.error is None and saw_end(written, client_format)
        client_gone(ctx, gone, whole)
        rest = None if ended else Rest(chunks, deque(), translator, client_format, True, held)
        await answer.left(ctx.delivered, rest)
        _usage(ctx, translator)
        end(answer, gone)
    _usage(ctx, translator)
    return out


def _usage(ctx: RequestContext, translator: StreamTranslator) -> None:
    ctx.prompt_tokens = translator.usage.prompt_tokens
    ctx.completion_tokens = translator.usage.completion_tokens
