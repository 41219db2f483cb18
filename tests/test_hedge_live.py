"""Without a database (the first-run setup) a hedged racer that lost after it had begun
answering is still charged in every view of this process (SPEC §10): the live stats'
cost today and cost per second (the Overview's figure and chart) and the request's line
in ``/api/v1/requests`` (``source: memory``), which lists it under ``hedge_losers`` in
the ledger's shape, its cost not in the request's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLIENT_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, stall_after
from tests.test_hedge_ledger import won_by_b_over_messages
from tests.test_routing import two

ADMIN = {"Authorization": "Bearer admin-secret-1"}


def hedged_config(
    a: FakeOpenAI, b: FakeOpenAI, db: Path | None = None, admin_key: str = "admin-secret-1"
) -> str:
    """``chain`` races b when a has sent nothing answerable after 100 ms; ``solo`` is b
    alone. a's price is dear and b's cheap, so a loser's cost shows at a glance. With
    ``db`` None, no database."""
    database = "" if db is None else f'database: {{url: "sqlite:///{db}"}}'
    return (
        two(a, b, extra="  hedge: {after: 100ms, max_extra: 1}")
        + f"""
models:
  chain: [a/m-a, b/m-b]
  solo: [b/m-b]
prices:
  m-a: {{input: 1000, output: 2000}}
  m-b: {{input: 3, output: 5}}
{database}
auth:
  admin_key: {admin_key}
  keys: [{{name: team-a, key: {CLIENT_KEY}}}]
"""
    )


async def race_and_solo(
    gateway: GatewayFactory, make_fake: Any, sdk: Any, db: Path | None = None, **config: str
) -> Any:
    """A gateway (``hedged_config``) that served a hedged request whose racer a lost
    after it had begun answering (b won), then one request nobody raced."""
    a, b = await make_fake(), await make_fake()
    gate = stall_after(a, b"data: {}\n\n")  # a answers (status, headers, first bytes)
    gw = await gateway(hedged_config(a, b, db, **config))
    client = sdk(gw)
    stream = await client.chat.completions.create(
        model="chain",
        messages=[{"role": "user", "content": "Which of the two answers first?"}],
        stream=True,
    )
    parts = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    gate.set()
    assert "echo from m-b" in "".join(p for p in parts if p)
    await client.chat.completions.create(
        model="solo", messages=[{"role": "user", "content": "Nobody races me."}]
    )
    return gw


async def _get(gw: Any, path: str) -> Any:
    response = await gw.get(path, headers=ADMIN)
    assert response.status == 200, await response.text()
    return await response.json()


async def _agree(gw: Any, requests: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The running totals (a's spend a loser's, no request of a's), the live stats that
    agree with them, and the recent requests from memory."""
    memory = await _get(gw, "/api/v1/usage")
    loser = memory["providers"]["a"]
    assert loser["requests"] == 0 and loser["cost_usd"] > 0
    assert memory["total"]["requests"] == requests
    total = memory["total"]["cost_usd"]
    live = await _get(gw, "/api/v1/stats/live?seconds=600")
    assert live["cost_today_usd"] == pytest.approx(total, rel=1e-6)
    seconds = live["seconds"]
    assert sum(s["requests"] for s in seconds) == requests
    assert sum(s["cost_usd"] for s in seconds) == pytest.approx(total, rel=1e-6)
    recent = await _get(gw, "/api/v1/requests")
    assert recent["source"] == "memory"
    return memory, recent["data"]


def _racer(memory: dict[str, Any]) -> dict[str, Any]:
    loser = memory["providers"]["a"]
    return {
        "provider": "a",
        "upstream_model": "m-a",
        "prompt_tokens": loser["prompt_tokens"],
        "completion_tokens": loser["completion_tokens"],
        "cost_usd": loser["cost_usd"],
    }


async def test_live_stats_and_recent_requests_charge_a_losing_racer_without_a_database(
    gateway: GatewayFactory, make_fake: Any, sdk: Any
) -> None:
    gw = await race_and_solo(gateway, make_fake, sdk)
    memory, (solo, chain) = await _agree(gw, requests=2)
    assert (solo["model"], solo["hedge_losers"]) == ("solo", [])
    assert (chain["model"], chain["provider"], chain["status"]) == ("chain", "b", 200)
    assert chain["hedge_losers"] == [_racer(memory)]
    # The request's own cost is its answer's: b's, the loser's listed beside it.
    assert chain["cost_usd"] + solo["cost_usd"] == pytest.approx(
        memory["providers"]["b"]["cost_usd"], rel=1e-6
    )
    # The filters keep a line whole, its losers with it.
    (only,) = (await _get(gw, "/api/v1/requests?model=chain&status=2xx"))["data"]
    assert only["hedge_losers"] == chain["hedge_losers"]


async def test_a_losing_racer_of_a_messages_request_is_charged_live_too(
    gateway: GatewayFactory, make_fake: Any
) -> None:
    a, b = await make_fake(), await make_fake()
    gate = stall_after(a, b": still here\n\n")  # a answers (status, headers, comments)
    gw = await gateway(hedged_config(a, b))
    await won_by_b_over_messages(gw, gate)
    memory, (request,) = await _agree(gw, requests=1)
    assert (request["endpoint"], request["provider"]) == ("messages", "b")
    assert request["hedge_losers"] == [_racer(memory)]
