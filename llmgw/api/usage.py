"""``GET /api/v1/usage`` and ``GET /api/v1/requests``.

Without query parameters ``/api/v1/usage`` answers the running totals: with the
redis limits backend every replica's, kept in Redis; with the memory backend (or
while Redis cannot be reached) this process's since it started. ``source`` says
which. With ``from``, ``to`` or ``group_by`` it answers from the usage ledger in the
database (``source: database``): ``from``/``to`` are ISO 8601 times or dates (UTC
when no offset is given) or epoch seconds, ``to`` excluded; ``group_by`` is a comma
list of ``key``, ``model``, ``provider``, ``day``, ``budget_key``, ``endpoint`` and
``tag:<name>``.

``/api/v1/requests?limit=&key=&model=&status=`` lists the newest requests first
(``limit`` 1..1000, default 100); from the ledger (``source: database``) each carries
``hedge_losers``, the spend of its hedged racers that lost after they had begun
answering (often none). Without a database the answer is ``source: memory``, this
process's last requests (``observe/live.py``), each with its ``hedge_losers`` too.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from aiohttp import web

from llmgw.api import live
from llmgw.api.guard import require_admin
from llmgw.errors import InvalidRequest, NotFound
from llmgw.server.appkeys import DATABASE, LEDGER, LIMITER, STORE, USAGE
from llmgw.store import reports
from llmgw.store.engine import Database

LEDGER_PARAMS = ("from", "to", "group_by")


async def usage(request: web.Request) -> web.Response:
    require_admin(request)
    if any(name in request.query for name in LEDGER_PARAMS):
        return await _from_ledger(request)
    limits = request.app[STORE].current.config.limits
    report = await request.app[LIMITER].shared_usage(limits)
    if report is None:
        report = request.app[USAGE].as_json()
    return web.Response(body=orjson.dumps(report), content_type="application/json")


def _database(request: web.Request) -> Database:
    db = request.app[DATABASE]
    if db is None:
        raise NotFound("The usage ledger needs a database (database.url)")
    return db


def _moment(name: str, value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"'{name}' must be an ISO 8601 time or date, or epoch seconds", param=name
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def _from_ledger(request: web.Request) -> web.Response:
    db = _database(request)
    query = request.query
    groups = [part.strip() for part in query.get("group_by", "").split(",") if part.strip()]
    for group in groups:
        tag = group[4:] if group.startswith("tag:") else None
        if (tag is None and group not in reports.GROUPS) or tag == "" or len(group) > 200:
            known = ", ".join(reports.GROUPS)
            raise InvalidRequest(
                f"'group_by' item {group[:60]!r} is not one of {known} or tag:<name>",
                param="group_by",
            )
    await _written(request)
    report = await reports.usage(
        db, _moment("from", query.get("from")), _moment("to", query.get("to")), groups
    )
    return web.Response(body=orjson.dumps(report), content_type="application/json")


async def recent_requests(request: web.Request) -> web.Response:
    """The recent requests from the ledger; without a database, from this process's
    memory of its last access lines (``api/live.py``)."""
    if request.app[DATABASE] is None:
        return await live.requests(request)
    require_admin(request)
    db = _database(request)
    query = request.query
    try:
        limit = int(query.get("limit", "100"))
        status = int(query["status"]) if query.get("status") else None
    except ValueError:
        raise InvalidRequest("'limit' and 'status' must be integers") from None
    if not 1 <= limit <= 1000:
        raise InvalidRequest("'limit' must be between 1 and 1000", param="limit")
    await _written(request)
    rows = await reports.recent(db, limit, query.get("key"), query.get("model"), status)
    return web.Response(
        body=orjson.dumps({"object": "list", "source": "database", "data": rows}),
        content_type="application/json",
    )


async def _written(request: web.Request) -> None:
    """Write what the ledger holds first, so the answer includes every ended request."""
    ledger = request.app[LEDGER]
    if ledger is not None:
        await ledger.flush()
