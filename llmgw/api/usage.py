"""``GET /api/v1/usage``: requests, tokens and cost — totals and per key, model, provider.

With the redis limits backend the totals are every replica's, kept in Redis; with
the memory backend (or while Redis cannot be reached) they are this process's since
it started. ``source`` says which.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from llmgw.api.guard import require_admin
from llmgw.server.appkeys import LIMITER, STORE, USAGE


async def usage(request: web.Request) -> web.Response:
    require_admin(request)
    limits = request.app[STORE].current.config.limits
    report = await request.app[LIMITER].shared_usage(limits)
    if report is None:
        report = request.app[USAGE].as_json()
    return web.Response(body=orjson.dumps(report), content_type="application/json")
