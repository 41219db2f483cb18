"""Budgets held in Redis (``limits.backend: redis``): shared by replicas whose
databases are separate, alerts once across them, seeded from the database, outages."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import redis

from llmgw.budgets.redis import RedisBudgets
from llmgw.budgets.scopes import expire_at, period_of
from llmgw.store.budgets import Ask
from tests.conftest import CLIENT_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, free_port, webhook_receiver
from tests.test_budgets import budget_config

ADMIN = {"Authorization": "Bearer admin-secret-1"}
ECHO = {"model": "demo/echo", "messages": [{"role": "user", "content": "spend"}], "max_tokens": 8}


def echo_config(db: Path, redis_url: str, webhook: str) -> str:
    return f"""
providers:
  demo: {{type: mock}}
prices:
  echo: {{input: 100, output: 100}}
database: {{url: "sqlite:///{db}"}}
limits: {{backend: redis, redis_url: "{redis_url}"}}
budgets:
  alerts: [0.5, 0.9]
  webhook: {webhook}
  global: {{monthly_usd: 0.05}}
auth: {{admin_key: admin-secret-1}}
"""


async def _spend_until_refused(gw: Any) -> list[int]:
    statuses: list[int] = []
    for _ in range(200):  # bounded: the budget ends it long before
        response = await gw.post("/v1/chat/completions", json=ECHO)
        await response.read()
        statuses.append(response.status)
        if response.status == 429:
            assert response.headers["x-should-retry"] == "false"
            assert (await response.json())["error"]["code"] == "budget_exceeded"
            break
    return statuses


async def test_two_gateways_with_their_own_databases_share_one_budget_in_redis(
    gateway: GatewayFactory, aiohttp_server: Any, redis_url: str, tmp_path: Path
) -> None:
    url, received = await webhook_receiver(aiohttp_server)
    gateways = [
        await gateway(echo_config(tmp_path / f"replica{i}.db", redis_url, url)) for i in (0, 1)
    ]
    runs = await asyncio.gather(*(_spend_until_refused(gw) for gw in gateways))
    served = [run.count(200) for run in runs]
    assert all(run[-1] == 429 for run in runs) and all(n >= 1 for n in served)
    rows = await (
        await gateways[0].get("/api/v1/requests?limit=1&status=200", headers=ADMIN)
    ).json()
    one = rows["data"][0]["cost_usd"]
    assert one > 0
    for gw, mine in zip(gateways, served, strict=True):
        # Each database holds only its own replica's requests...
        usage = await (await gw.get("/api/v1/usage?group_by=provider", headers=ADMIN)).json()
        assert usage["total"]["requests"] == mine + 1  # and its refusal
        # ... yet each reports the spend of both: Redis holds the budget.
        (entry,) = (await (await gw.get("/api/v1/budget", headers=ADMIN)).json())["budgets"]
        assert entry["scope"] == "global" and entry["limit_usd"] == 0.05
        assert 0.05 <= entry["spent_usd"] <= 0.05 + one + 1e-9  # one request's cost at most
        assert entry["spent_usd"] == pytest.approx(sum(served) * one)
        assert entry["alerts_fired"] == [0.5, 0.9]
    for _ in range(100):  # the webhook is posted off the request path
        if len(received) >= 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # a duplicate would have been posted by now
    assert sorted((e["scope"], e["fraction"]) for e in received) == [
        ("global", 0.5),
        ("global", 0.9),
    ]
    fired = 0
    for gw in gateways:
        metrics = await (await gw.get("/metrics", headers=ADMIN)).text()
        for line in metrics.splitlines():
            if line.startswith("llmgw_budget_alerts_total{"):
                fired += int(float(line.rsplit(" ", 1)[1]))
    assert fired == 2  # once each across both replicas


async def test_a_flushed_redis_is_seeded_from_the_database(
    gateway: GatewayFactory, fake: FakeOpenAI, sdk: Any, redis_url: str, tmp_path: Path
) -> None:
    text = budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 0.03}")
    gw = await gateway(text + f"limits: {{backend: redis, redis_url: '{redis_url}'}}\n")
    statuses = await _chat(gw, 4)  # $0.012 each: 0.036 crosses $0.03 on the third
    assert statuses == [200, 200, 200, 429]
    client = redis.Redis.from_url(redis_url)
    try:
        key = f"llmgw:{{llmgw}}:budget:{period_of()}:key:team-a"
        assert int(client.hget(key, "spent") or 0) == 36_000_000  # nano-USD
        ttl = client.ttl(key)
        assert 86400 < ttl <= 32 * 86400 + 86400  # gone a day after the month ends
        client.flushall()  # Redis forgets the month...
        assert await _chat(gw, 1) == [429]  # ... the database does not
        assert int(client.hget(key, "spent") or 0) == 36_000_000
    finally:
        client.close()
    assert len(fake.seen) == 3


async def _chat(gw: Any, n: int) -> list[int]:
    statuses = []
    for _ in range(n):
        response = await gw.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                  "max_tokens": 5},
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        )  # fmt: skip
        await response.read()
        statuses.append(response.status)
    return statuses


@pytest.mark.parametrize(
    ("policy", "statuses"),
    [
        ("local", [200, 429, 429]),  # the database holds the budget meanwhile
        ("allow", [200, 200, 200]),  # unchecked
        ("deny", [429, 429, 429]),  # nothing served
    ],
)
async def test_redis_outage_follows_on_redis_error(
    gateway: GatewayFactory,
    fake: FakeOpenAI,
    caplog: Any,
    tmp_path: Path,
    policy: str,
    statuses: list[int],
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgw.budgets")
    nowhere = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    text = budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 0.01}")
    text += f"limits: {{backend: redis, redis_url: '{nowhere}', on_redis_error: {policy}}}\n"
    gw = await gateway(text)
    got = []
    for _ in statuses:
        response = await gw.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        )
        body = await response.json()
        got.append(response.status)
        if policy == "deny":
            assert body["error"]["code"] == "rate_limit_exceeded"
            assert "Budgets cannot be checked" in body["error"]["message"]
            assert response.headers["Retry-After"] == "1"
        elif response.status == 429:
            assert body["error"]["code"] == "budget_exceeded"
    assert got == statuses
    outages = [
        r
        for r in caplog.records
        if r.name.startswith("llmgw.budgets") and "cannot be reached" in r.getMessage()
    ]
    assert len(outages) == 1  # once per outage, not per request
    assert f"on_redis_error: {policy}" in outages[0].getMessage()
    assert "hunter2" not in caplog.text


async def test_the_reservation_of_a_dead_replica_frees_itself(redis_url: str) -> None:
    dead, alive = RedisBudgets(redis_url, hold=0.2), RedisBudgets(redis_url)
    period = period_of()
    ask = Ask("global", 50, None, 60, 0)  # a $50-nano limit; 60 reserved
    try:
        assert await dead.admit(period, expire_at(period), [ask], "dead-1", {}, "local") == []
        # The dead replica never settles: its reservation holds the budget...
        assert await alive.admit(period, expire_at(period), [ask], "alive-1", {}, "local") == [0]
        await asyncio.sleep(0.3)  # ... until its hold ends
        assert await alive.admit(period, expire_at(period), [ask], "alive-2", {}, "local") == []
        after = await alive.settle(period, ["global"], "alive-2", 7, 3)
        assert after == {"global": (7, 3)}
    finally:
        await dead.close()
        await alive.close()


async def test_a_request_that_reserves_nothing_leaves_nothing_in_redis(redis_url: str) -> None:
    """A cache hit's admission (nothing reserved) is checked like any other but writes
    no reservation: there is nothing to hold for it, nor to release."""
    budgets = RedisBudgets(redis_url)
    period = period_of()
    client = redis.Redis.from_url(redis_url)
    key = f"llmgw:{{llmgw}}:budget:{period}:global"
    try:
        free = Ask("global", 50, None, 0, 0)
        assert await budgets.admit(period, expire_at(period), [free], "hit-1", {}, "local") == []
        assert client.hget(key, "r:hit-1") is None
        assert client.zscore(key + ":held", "hit-1") is None
        assert int(client.hget(key, "reserved") or 0) == 0
        assert await budgets.settle(period, ["global"], "paid-1", 50, 9) == {"global": (50, 9)}
        # spent up to its limit: the free request is refused as any other would be
        assert await budgets.admit(period, expire_at(period), [free], "hit-2", {}, "local") == [0]
    finally:
        client.close()
        await budgets.close()


async def test_a_cache_hit_makes_one_budget_call_to_redis(
    gateway: GatewayFactory,
    fake: FakeOpenAI,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hit's admission is checked in Redis; with nothing reserved and nothing spent
    there is no settlement to send (it was a second script call per hit)."""
    calls: list[str] = []
    for name in ("admit", "settle"):
        real = getattr(RedisBudgets, name)

        async def counted(
            self: RedisBudgets, *args: Any, _real: Any = real, _name: str = name
        ) -> Any:
            calls.append(_name)
            return await _real(self, *args)

        monkeypatch.setattr(RedisBudgets, name, counted)
    text = budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 5}")
    gw = await gateway(
        text + f"limits: {{backend: redis, redis_url: '{redis_url}'}}\n"
        "cache: {enabled: true, backend: memory}\n"
    )
    client = redis.Redis.from_url(redis_url)
    key = f"llmgw:{{llmgw}}:budget:{period_of()}:key:team-a"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "same"}]}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    try:
        first = await gw.post("/v1/chat/completions", json=body, headers=headers)
        assert first.headers["X-Cache"] == "MISS"
        await first.read()
        for _ in range(100):  # the miss's settlement runs in the background
            if int(client.hget(key, "spent") or 0) > 0:
                break
            await asyncio.sleep(0.02)
        assert int(client.hget(key, "spent") or 0) == 12_000_000
        assert calls == ["admit", "admit"]  # the first admission seeds the month
        # (and the miss's settlement went with the limits' usage: budgets/joint.py)
        hit = await gw.post("/v1/chat/completions", json=body, headers=headers)
        assert hit.headers["X-Cache"] == "HIT"
        await hit.read()
        await asyncio.sleep(0.3)  # room for a background settlement, were one sent
        assert calls[2:] == ["admit"]
        assert int(client.hget(key, "spent") or 0) == 12_000_000
        assert client.hkeys(key) and not [k for k in client.hkeys(key) if k.startswith(b"r:")]
    finally:
        client.close()
    assert len(fake.seen) == 1
