"""A script call whose reply is late (Redis's command timeout) leaves nothing reserved.

The gateway gives up on the reply after ``COMMAND_TIMEOUT`` and applies
``limits.on_redis_error``, but Redis may have run the script all the same: the
admission's budget estimate, ``tpm`` tokens and concurrency slot are then given back
in the background by the names the gateway made before sending; a settlement that
timed out is finished if it never ran and left alone if it did (counted once).

A relay on 127.0.0.1 in front of a real ``redis-server`` either holds the reply to the
armed script past the timeout (the script ran) or swallows the command (it never ran).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web

from llmgw.budgets import joint
from llmgw.budgets import redis as budgets_redis
from llmgw.limits import redis as limits_redis
from llmgw.limits.shared_redis import RETRY_AFTER_FAILURE
from tests.conftest import CLIENT_KEY, Serve
from tests.fakes import FakeOpenAI, chat_completion
from tests.redis_relay import ScriptRelay
from tests.test_admission_cancel import config, figures

AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
BUDGET = "llmgw:{llmgw}:budget:"
TPM_SUM = "llmgw:{llmgw}:tpm:key:team-a:sum"
INFLIGHT = "llmgw:{llmgw}:inflight:key:team-a"
COST = 12 * 1000 * 1000  # nano-USD: the fake's 12 tokens at $1000 per million


def url_for(redis_relay: ScriptRelay, mode: str) -> str:
    """The relay's URL; with options for ``redis-py`` modes: the scripts then go through
    redis-py, not the lean channel (``limits/resp.py``)."""
    return redis_relay.url + ("?health_check_interval=0" if mode.endswith("redis-py") else "")


async def until(check: Any) -> None:
    for _ in range(400):  # bounded: the undoing is sent as the timeout fires
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def chat(content: str, max_tokens: int = 5) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    }


async def warm(gw: Any, client: redis.Redis) -> dict[str, Any]:
    """A first request (the month seeded, the scripts loaded); Redis's figures after."""
    first = await gw.post("/v1/chat/completions", json=chat("a first"), headers=AUTH)
    assert first.status == 200, await first.text()
    await until(lambda: figures(client)["inflight"] == 0 and not figures(client)["held"])
    return figures(client)


async def full_concurrency(gw: Any, fake: FakeOpenAI) -> None:
    """The key's two concurrency slots both admit (and its budget is not spent), once
    Redis is asked again after the failure's pause."""
    await asyncio.sleep(RETRY_AFTER_FAILURE + 0.1)  # (on_redis_error applies till then)
    seen = len(fake.seen)
    everyone = asyncio.Event()

    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if len(fake.seen) - seen >= 2:
            everyone.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), 5)
        return web.json_response(chat_completion(model=body["model"]))

    fake.default = behave
    pair = await asyncio.gather(
        *(
            gw.post("/v1/chat/completions", json=chat(f"one of two, {n}"), headers=AUTH)
            for n in (1, 2)
        )
    )
    assert [r.status for r in pair] == [200, 200], [await r.text() for r in pair]
    assert everyone.is_set()  # both were upstream at once


# Which part is in Redis, and the script whose call times out.
SETUPS = {
    "budgets and limits": (True, True, joint.ADMIT.sha),
    "budgets": (True, False, budgets_redis.ADMIT.sha),
    "limits": (False, True, limits_redis.ADMIT.sha),
}


@pytest.mark.parametrize("mode", ["hold", "drop", "hold, redis-py"])
@pytest.mark.parametrize("setup", list(SETUPS))
async def test_a_timed_out_admission_is_given_back(
    serve: Serve,
    fake: FakeOpenAI,
    redis_relay: ScriptRelay,
    redis_url: str,
    tmp_path: Path,
    setup: str,
    mode: str,
) -> None:
    budget, limits, script = SETUPS[setup]
    gw = await serve(
        config(fake, tmp_path / "b.db", url_for(redis_relay, mode), budget, limits, "deny")
    )
    client = redis.Redis.from_url(redis_url)
    try:
        before = await warm(gw, client)
        redis_relay.armed, redis_relay.mode = script.encode(), mode.partition(",")[0]
        body = chat("an estimate of $100", max_tokens=100_000)
        refused = await gw.post("/v1/chat/completions", json=body, headers=AUTH)
        assert redis_relay.caught.is_set()
        assert refused.status == 429  # on_redis_error: deny
        assert (await refused.json())["error"]["message"].endswith("retry shortly")
        await until(lambda: figures(client) == before)
        assert len(fake.seen) == 1  # the refused request never went upstream
        await full_concurrency(gw, fake)
    finally:
        client.close()


async def test_the_limits_own_call_after_a_timed_out_joint_one_is_kept(
    serve: Serve, fake: FakeOpenAI, redis_relay: ScriptRelay, redis_url: str, tmp_path: Path
) -> None:
    """``allow``: the budgets are passed unchecked, the limits ask on their own (and
    admit); giving back what the timed-out joint script reserved leaves that call's
    tokens and slot alone, and the window counts the request's 12 tokens once."""
    gw = await serve(config(fake, tmp_path / "b.db", redis_relay.url, True, True, "allow"))
    client = redis.Redis.from_url(redis_url)
    try:
        before = await warm(gw, client)
        redis_relay.armed = joint.ADMIT.sha.encode()
        body = chat("an estimate of $100", max_tokens=100_000)
        served = await gw.post("/v1/chat/completions", json=body, headers=AUTH)
        assert served.status == 200, await served.text()
        assert redis_relay.caught.is_set() and len(fake.seen) == 2
        settled = {**before, "tpm": before["tpm"] + 12}
        # (the spend reaches Redis or not: the budgets rest a second after the failure)
        left = ("spent", "tokens")
        await until(lambda: {**figures(client), **{k: before[k] for k in left}} == settled)
        await full_concurrency(gw, fake)
    finally:
        client.close()


# The settlement's script with budgets and limits both in Redis, or either alone (the
# budgets' then still in the joint script: the limits' part adds the usage totals).
SETTLES = {
    "budgets and limits": (True, True, joint.SETTLE.sha),
    "budgets": (True, False, joint.SETTLE.sha),
    "limits": (False, True, limits_redis.SETTLE.sha),
}


@pytest.mark.parametrize("mode", ["hold", "drop", "hold, redis-py"])
@pytest.mark.parametrize("setup", list(SETTLES))
async def test_a_timed_out_settlement_counts_once(
    serve: Serve,
    fake: FakeOpenAI,
    redis_relay: ScriptRelay,
    redis_url: str,
    tmp_path: Path,
    setup: str,
    mode: str,
) -> None:
    """Ran (``hold``): counted once, not again. Never ran (``drop``): finished in the
    background, so the estimate is not held for an hour nor the slot for a lease, and
    the spend is in Redis's month all the same."""
    budget, limits, script = SETTLES[setup]
    gw = await serve(
        config(fake, tmp_path / "b.db", url_for(redis_relay, mode), budget, limits, "deny")
    )
    client = redis.Redis.from_url(redis_url)
    try:
        before = await warm(gw, client)
        redis_relay.armed, redis_relay.mode = script.encode(), mode.partition(",")[0]
        served = await gw.post("/v1/chat/completions", json=chat("settled late"), headers=AUTH)
        assert served.status == 200, await served.text()
        assert redis_relay.caught.is_set()
        after = dict(before)
        if budget:
            after.update(spent=before["spent"] + COST, tokens=before["tokens"] + 12)
        if limits:
            after.update(tpm=before["tpm"] + 12)
        await until(lambda: figures(client) == after)
        await asyncio.sleep(RETRY_AFTER_FAILURE + 0.1)  # (a second undoing would be sent)
        assert figures(client) == after
        await full_concurrency(gw, fake)
    finally:
        client.close()
