"""``GET /api/v1/stats/live`` and ``GET /api/v1/requests``: this process's last minutes,
per second, and its most recent requests (``observe.live``), for the dashboard.

``/api/v1/requests`` here is the in-memory ring of this replica's last access lines;
a durable ledger (SPEC §11) answering the same path replaces it: remove the route in
``app.py`` and this handler.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from llmgw.api.guard import require_admin
from llmgw.errors import InvalidRequest
from llmgw.observe.live import RECENT, SECONDS
from llmgw.server.appkeys import ACCOUNTING, LIVE


async def stats_live(request: web.Request) -> web.Response:
    require_admin(request)
    request.app[ACCOUNTING].drain()  # requests that ended in this turn of the loop
    span = _number(request, "seconds", 300, SECONDS)
    body = request.app[LIVE].window(span)
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def requests(request: web.Request) -> web.Response:
    require_admin(request)
    request.app[ACCOUNTING].drain()
    query = request.query
    limit = _number(request, "limit", 100, RECENT)
    status = query.get("status") or None
    if status is not None and not (len(status) == 3 and status[0].isdigit()):
        raise InvalidRequest(
            "'status' must be a status such as 429 or a class such as 5xx", param="status"
        )
    data = request.app[LIVE].requests(limit, query.get("key"), query.get("model"), status)
    body = {"object": "list", "source": "memory", "data": data}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _number(request: web.Request, name: str, default: int, most: int) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise InvalidRequest(f"'{name}' must be a whole number from 1 to {most}", param=name)
    return int(text)
