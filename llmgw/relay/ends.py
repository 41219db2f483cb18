"""The edges every relayed stream shares: committing (``open_stream``: the head goes
out), the request's closing words (``trailer_of``) and the end that carries them
(``finish``), and what a client that left early means (``client_gone``, ``end``,
``saw_end``, ``delivered``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import orjson
from aiohttp import web

from llmgw import sse
from llmgw.answer import Answer, ClientAnswer, Head
from llmgw.core import RequestContext
from llmgw.sink import ClientStalled, Stream
from llmgw.translate.responses_wire import ENDS as RESPONSES_ENDS

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_END_WINDOW = 4096  # the end of a stream's bytes where its end event is looked for


async def open_stream(ctx: RequestContext, answer: Answer, content_type: str) -> web.StreamResponse:
    """Commit: the headers go out."""
    if ctx.claim is not None:  # a hedged attempt: only the first to commit goes on
        ctx.claim()
    out = Stream(status=200, headers={**STREAM_HEADERS, "Content-Type": content_type})
    assert ctx.provider is not None and ctx.upstream_model is not None
    await answer.open(out, Head(200, content_type, True, ctx.provider, ctx.upstream_model))
    ctx.first_byte = time.perf_counter()
    return out


def client_gone(ctx: RequestContext, gone: BaseException, whole: bool) -> None:
    """Why a response ended early: its client stalled, or left — after its whole answer
    (``whole``: the answer is complete) or before it."""
    if isinstance(gone, ClientStalled):
        ctx.error = "client_stalled"
    elif whole:
        delivered(ctx, 200)
    else:
        ctx.error = "client_disconnected"


def end(answer: Answer, gone: BaseException) -> None:
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


def trailer_of(ctx: RequestContext) -> bytes:
    """The request's own closing words (the ``: x-gateway`` comment), not recorded:
    they describe this request, not the answer a cache hit replays."""
    if ctx.trailer is not None and ctx.error is None:
        return ctx.trailer()
    return b""


async def finish(
    ctx: RequestContext, answer: Answer, client: ClientAnswer | None, last: bytes | None
) -> None:
    """The stream's end, with the request's closing words: ``last``, the stream's last
    chunk not written yet, leaves with it in one write where the answer is the client's."""
    complete, trailer = ctx.error is None, trailer_of(ctx)
    if last is not None and client is not None:
        await client.finish(complete, trailer, last)
    else:
        await answer.finish(complete=complete, trailer=trailer)
