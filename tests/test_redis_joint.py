"""Limits and budgets both in Redis: one script call admits a request in both (or in
neither), one settles it in both; refusals, figures and outages as each alone."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import redis

from llmgw.budgets.scopes import period_of
from tests.conftest import CLIENT_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, free_port
from tests.test_budgets import budget_config

AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
BUDGET = "llmgw:{llmgw}:budget:"
RPM = "llmgw:{llmgw}:rpm:key:team-a"


def both(fake: FakeOpenAI, db: Path, redis_url: str, *, budget: str, limits: str) -> str:
    """team-a with a budget and limits, both held in Redis."""
    text = budget_config(fake.url, db, key_budget=budget)
    text = text.replace(f"budget: {budget}}}", f"budget: {budget}, limits: {limits}}}")
    return text + (
        f"limits: {{backend: redis, redis_url: '{redis_url}'}}\n"
        "cache: {enabled: true, backend: memory}\n"
    )


async def chat(gw: Any, content: str) -> Any:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    response = await gw.post("/v1/chat/completions", json=body, headers=AUTH)
    await response.read()
    return response


def scripts(client: redis.Redis) -> int:
    """Script calls Redis has run so far (not those refused as NOSCRIPT: a script's
    first call on a server is sent again after the script)."""
    stats: dict[str, Any] = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


async def until(check: Any) -> None:
    for _ in range(200):  # bounded: the background settlement lands within milliseconds
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_a_request_makes_one_script_call_to_admit_and_one_to_settle(
    gateway: GatewayFactory, fake: FakeOpenAI, redis_url: str, tmp_path: Path
) -> None:
    """A miss: limits and budgets admitted in one call, settled in one (were two and
    two); a cache hit: one call to admit, one to settle its limits (was three)."""
    gw = await gateway(
        both(
            fake,
            tmp_path / "b.db",
            redis_url,
            budget="{monthly_usd: 5}",
            limits="{rpm: 100, tpm: 100000, concurrency: 5}",
        )
    )
    client = redis.Redis.from_url(redis_url)
    key = f"{BUDGET}{period_of()}:key:team-a"
    usage = "llmgw:{llmgw}:usage"
    try:
        assert (await chat(gw, "seed the month")).status == 200
        await until(lambda: client.hget(usage, "total||requests") == b"1")
        before = scripts(client)
        miss = await chat(gw, "a new question")
        assert miss.headers["X-Cache"] == "MISS"
        await until(lambda: int(client.hget(key, "spent") or 0) == 24_000_000)
        assert scripts(client) - before == 2
        before = scripts(client)
        hit = await chat(gw, "a new question")
        assert hit.headers["X-Cache"] == "HIT"
        await until(lambda: client.hget(usage, "total||requests") == b"3")
        assert scripts(client) - before == 2
        assert miss.headers["x-ratelimit-remaining-requests"] == "98"
        assert hit.headers["x-ratelimit-remaining-requests"] == "97"
        assert int(client.hget(key, "spent") or 0) == 24_000_000  # the hit cost nothing
        assert not [k for k in client.hkeys(key) if k.startswith(b"r:")]  # nothing held
        assert client.zcard("llmgw:{llmgw}:inflight:key:team-a") == 0  # slots given back
        assert int(client.hget(key, "reserved") or 0) == 0
    finally:
        client.close()


async def test_a_limit_that_refuses_leaves_the_budget_untouched(
    gateway: GatewayFactory, fake: FakeOpenAI, redis_url: str, tmp_path: Path
) -> None:
    gw = await gateway(
        both(fake, tmp_path / "b.db", redis_url, budget="{monthly_usd: 5}", limits="{rpm: 1}")
    )
    client = redis.Redis.from_url(redis_url)
    key = f"{BUDGET}{period_of()}:key:team-a"
    try:
        assert (await chat(gw, "one")).status == 200
        await until(lambda: int(client.hget(key, "spent") or 0) == 12_000_000)
        refused = await chat(gw, "two")
        assert refused.status == 429
        assert (await refused.json())["error"]["code"] == "rate_limit_exceeded"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert int(client.hget(key, "reserved") or 0) == 0  # no estimate held for it
        assert int(client.hget(key, "rtokens") or 0) == 0
        assert not [k for k in client.hkeys(key) if k.startswith(b"r:")]
        assert client.zcard(f"{key}:held") == 0
        assert int(client.hget(key, "spent") or 0) == 12_000_000
        assert len(fake.seen) == 1
    finally:
        client.close()


async def test_a_spent_budget_refuses_before_any_limit_counts_the_request(
    gateway: GatewayFactory, fake: FakeOpenAI, redis_url: str, tmp_path: Path
) -> None:
    gw = await gateway(
        both(fake, tmp_path / "b.db", redis_url, budget="{monthly_usd: 0.01}", limits="{rpm: 50}")
    )
    client = redis.Redis.from_url(redis_url)
    try:
        first = await chat(gw, "one")  # $0.012: crosses the limit, served
        assert first.status == 200
        assert first.headers["x-ratelimit-remaining-requests"] == "49"
        for text in ("two", "three"):
            refused = await chat(gw, text)
            assert refused.status == 429
            assert (await refused.json())["error"]["code"] == "budget_exceeded"
            assert "x-ratelimit-remaining-requests" not in refused.headers
        assert client.zcard(RPM) == 1  # the refused requests were not counted
    finally:
        client.close()


async def test_scripts_flushed_from_redis_are_sent_again(
    gateway: GatewayFactory, fake: FakeOpenAI, redis_url: str, tmp_path: Path
) -> None:
    """A restarted Redis (or ``SCRIPT FLUSH``) does not know the scripts by their SHA1:
    each is sent once, and the request is served as if nothing happened."""
    gw = await gateway(
        both(fake, tmp_path / "b.db", redis_url, budget="{monthly_usd: 5}", limits="{rpm: 10}")
    )
    client = redis.Redis.from_url(redis_url)
    key = f"{BUDGET}{period_of()}:key:team-a"
    try:
        assert (await chat(gw, "one")).status == 200
        await until(lambda: int(client.hget(key, "spent") or 0) == 12_000_000)
        client.script_flush()
        second = await chat(gw, "two")
        assert second.status == 200
        assert second.headers["x-ratelimit-remaining-requests"] == "8"
        await until(lambda: int(client.hget(key, "spent") or 0) == 24_000_000)
        assert int(client.hget(key, "reserved") or 0) == 0
    finally:
        client.close()


@pytest.mark.parametrize(
    ("policy", "statuses", "code", "noted"),
    [
        ("local", [200, 200, 429], "rate_limit_exceeded", ["budgets", "limits"]),  # in memory
        ("allow", [200, 200, 200], None, ["budgets", "limits"]),  # unchecked
        ("deny", [429, 429, 429], "rate_limit_exceeded", ["budgets"]),  # the budgets refuse first
    ],
)
async def test_redis_outage_with_both_follows_on_redis_error(
    gateway: GatewayFactory,
    fake: FakeOpenAI,
    caplog: Any,
    tmp_path: Path,
    policy: str,
    statuses: list[int],
    code: str | None,
    noted: list[str],
) -> None:
    caplog.set_level(logging.WARNING)
    nowhere = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    text = both(fake, tmp_path / "b.db", nowhere, budget="{monthly_usd: 5}", limits="{rpm: 2}")
    gw = await gateway(
        text.replace("backend: redis,", f"backend: redis, on_redis_error: {policy},")
    )
    got = []
    for n in range(len(statuses)):
        response = await chat(gw, f"question {n}")
        got.append(response.status)
        if response.status == 429:
            assert (await response.json())["error"]["code"] == code
            assert response.headers["Retry-After"]
    assert got == statuses
    outages = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    # once per outage and per part that asked Redis, not per request
    assert sorted(r.getMessage().split(":")[0] for r in outages) == noted
    assert all(f"on_redis_error: {policy}" in r.getMessage() for r in outages)
    assert "hunter2" not in caplog.text
