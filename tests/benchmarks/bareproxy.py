"""The baseline: a bare aiohttp reverse proxy on uvloop, with no features at all.

    python -m tests.benchmarks.bareproxy --port 9002 --upstream http://127.0.0.1:9001

One pooled ClientSession; the body is read and sent on; JSON answers are relayed
whole and event streams chunk by chunk as they arrive. What any gateway has to do
at the very least, so the cost of llmgw's features is measured against it.
``POST /answer/...`` answers from memory instead: the floor under a cache hit;
``POST /duties/...`` answers from memory doing what llmgw's config asks of a hit
(``dutyfloor.py``), and ``POST /miss-duties/...`` proxies doing what it asks of a miss
(``dutymiss.py``).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
import orjson
import uvloop
from aiohttp import web

from .dutyfloor import duties_ctx, duty_hit
from .dutymiss import SESSION, UPSTREAM, duty_miss

_HOP_BY_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection"})


async def proxy(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    url = request.app[UPSTREAM] + request.path_qs
    session = request.app[SESSION]
    async with session.request(request.method, url, data=body, headers=headers) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            return web.Response(
                body=await upstream.read(),
                status=upstream.status,
                headers={"Content-Type": content_type},
            )
        response = web.StreamResponse(
            status=upstream.status,
            headers={"Content-Type": content_type, "Cache-Control": "no-cache"},
        )
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


# What a cache hit has to send back at the least: a stored chat completion.
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-floor",
        "object": "chat.completion",
        "created": 0,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "word " * 16},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 60, "completion_tokens": 16, "total_tokens": 76},
    }
)


async def answer(request: web.Request) -> web.Response:
    """The floor under any cache hit: aiohttp reads the request and answers from
    memory, with nothing else done (``POST /answer/...``, never proxied)."""
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def client_session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        app[SESSION] = session
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--upstream", default="http://127.0.0.1:9001")
    args = parser.parse_args()
    app = web.Application(client_max_size=20 * 1024**2)
    app[UPSTREAM] = args.upstream.rstrip("/")
    app.cleanup_ctx.append(client_session)
    app.cleanup_ctx.append(duties_ctx)
    app.router.add_get("/health", health)
    app.router.add_post("/answer/{tail:.*}", answer)
    app.router.add_post("/duties/{tail:.*}", duty_hit)
    app.router.add_post("/miss-duties/{tail:.*}", duty_miss)
    app.router.add_route("*", "/{tail:.*}", proxy)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        handler_cancellation=True,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
