"""Answers that are not event streams: JSON bodies relayed whole, and bytes (speech
audio, transcripts) streamed through in their own type."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from llmgw.answer import Answer, Head
from llmgw.core import Call, RequestContext, Usage
from llmgw.relay.ends import client_gone, end, open_stream
from llmgw.upstream import TRANSPORT_ERRORS, UpstreamResponse, failure_from


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
    out = await open_stream(ctx, answer, content_type)
    try:
        async for chunk in chunks:
            await answer.write(chunk)
    except TRANSPORT_ERRORS as exc:  # headers are out: the client sees a cut body
        ctx.error = failure_from(exc).kind
        await answer.finish(complete=False)
        return out
    except (ConnectionResetError, asyncio.CancelledError) as gone:
        client_gone(ctx, gone, False)
        await answer.left(False, None)
        end(answer, gone)
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
