"""``GET /api/v1/budget``: this month's spend, limit, remaining and alerts fired, for
every budgeted key (configured and managed), every ``x-budget-key`` seen and the
gateway as a whole. With ``limits.backend: redis`` the spend of every scope Redis
holds is Redis's (every replica's), and its alerts are added to the database's; while
Redis cannot be reached, or for a scope it does not hold, the database answers, plus
this process's spend not written yet (so the answer is exact right after a request)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from llmgw.api.guard import require_admin
from llmgw.budgets.scopes import period_end, period_of
from llmgw.config.store import BudgetSpec
from llmgw.errors import NotFound
from llmgw.observe.usage import NANO
from llmgw.server.appkeys import BUDGETS, DATABASE, KEYRING, STORE
from llmgw.store import budgets as queries


def _entry(
    scope: str, spec: BudgetSpec | None, used: tuple[int, int], fired: list[float], end: str
) -> dict[str, Any]:
    spent, tokens = used
    limit_usd = spec.monthly_usd if spec else None
    limit_tokens = spec.monthly_tokens if spec else None
    return {
        "scope": scope,
        "spent_usd": round(spent / NANO, 9),
        "limit_usd": limit_usd,
        "remaining_usd": (
            None if limit_usd is None else round(max(0.0, limit_usd - spent / NANO), 9)
        ),
        "tokens": tokens,
        "limit_tokens": limit_tokens,
        "remaining_tokens": None if limit_tokens is None else max(0, limit_tokens - tokens),
        "period_end": end,
        "alerts_fired": fired,
    }


async def budget(request: web.Request) -> web.Response:
    require_admin(request)
    db = request.app[DATABASE]
    if db is None:
        raise NotFound("Budgets need a database (database.url)")
    config = request.app[STORE].current.config
    specs: dict[str, BudgetSpec | None] = {}
    for key in config.auth.keys:
        if key.budget is not None:
            specs[f"key:{key.name}"] = key.budget
    for managed in request.app[KEYRING].managed.by_digest.values():
        if managed.principal.budget is not None:
            specs[f"key:{managed.principal.name}"] = managed.principal.budget
    if config.budgets.global_ is not None:
        specs["global"] = config.budgets.global_
    period = period_of()
    end = period_end(period)
    spend = await request.app[BUDGETS].spend(period)  # this process's unwritten spend too
    fired = await queries.alerts(db, period)
    for scope in spend:
        if scope.startswith("budget_key:"):
            specs.setdefault(scope, config.budgets.per_budget_key)
    shared = await request.app[BUDGETS].shared_report(
        config.limits, period, sorted(specs), config.budgets.alerts
    )
    if shared is not None:
        spend.update(shared[0])
        for scope, levels in shared[1].items():
            fired[scope] = sorted({*fired.get(scope, []), *levels})
    entries = [
        _entry(scope, spec, spend.get(scope, (0, 0)), fired.get(scope, []), end)
        for scope, spec in sorted(specs.items())
    ]
    document = {"period": period, "period_end": end, "budgets": entries}
    return web.Response(body=orjson.dumps(document), content_type="application/json")
