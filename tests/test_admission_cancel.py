"""A client that leaves while its admission awaits Redis leaves nothing reserved.

The gateway runs as in production (``handler_cancellation=True``): the client's going
away cancels the handler while the admission script's reply is on its way. The script
ran in Redis all the same (the budget estimate reserved, the concurrency slot and the
``tpm`` tokens taken); the gateway gives them back once the reply has come, so the key
is not refused early (the budget) nor one request short (the concurrency limit).

A relay on 127.0.0.1 in front of a real ``redis-server`` holds the reply to the admit
script until the gateway has cancelled the handler (its ``llmgw_inflight_requests``
back to 0), well within the client's one-second command timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiohttp import web

from llmgw.budgets import joint
from llmgw.budgets import redis as budgets_redis
from llmgw.budgets.scopes import period_of
from llmgw.limits import redis as limits_redis
from tests.conftest import CLIENT_KEY, Serve
from tests.fakes import FakeOpenAI, chat_completion
from tests.redis_relay import ScriptRelay
from tests.test_budgets import budget_config

AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
ADMIN = {"Authorization": "Bearer admin-secret-1"}
BUDGET = "llmgw:{llmgw}:budget:"
TPM_SUM = "llmgw:{llmgw}:tpm:key:team-a:sum"
INFLIGHT = "llmgw:{llmgw}:inflight:key:team-a"


def together(arrivals: int) -> tuple[Any, list[int]]:
    """An answer sent only once ``arrivals`` requests are upstream at once (bounded)."""
    seen: list[int] = []
    everyone = asyncio.Event()

    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        seen.append(1)
        if len(seen) >= arrivals:
            everyone.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), 5)
        return web.json_response(chat_completion(model=body["model"]))

    return behave, seen


# Which part is held in Redis, the script whose reply is held, and whether a first
# request came before (the month seeded, the scripts loaded). Without one, the joint
# script asks for the month's seed, the budgets reserve in a call of their own, and
# the limits' call comes last: the client leaves while it is awaited.
SETUPS = {
    "budgets and limits": (True, True, joint.ADMIT.sha, True),
    "budgets": (True, False, budgets_redis.ADMIT.sha, True),
    "limits": (False, True, limits_redis.ADMIT.sha, True),
    "limits after the budgets' seeding": (True, True, limits_redis.ADMIT.sha, False),
}


def config(
    fake: FakeOpenAI, db: Path, redis_url: str, budget: bool, limits: bool, policy: str = ""
) -> str:
    # $1000 per million tokens: a request asking for 100 000 tokens is estimated at
    # $100, past the $50 budget that the leaked estimate would then leave spent.
    # ``policy``: limits.on_redis_error, when not the default.
    on_error = f", on_redis_error: {policy}" if policy else ""
    return budget_config(
        fake.url,
        db,
        key_budget="{monthly_usd: 50}" if budget else None,
        key_limits="{tpm: 1000000, concurrency: 2}" if limits else None,
        provider_extra=", max_retries: 0",
        extra=f"limits: {{backend: redis, redis_url: '{redis_url}'{on_error}}}",
    )


def figures(client: redis.Redis) -> dict[str, Any]:
    """What Redis holds for team-a: the budget's spend and reservations, the tokens in
    the ``tpm`` window and the requests in flight."""
    key = f"{BUDGET}{period_of()}:key:team-a"
    return {
        "reserved": int(client.hget(key, "reserved") or 0),
        "rtokens": int(client.hget(key, "rtokens") or 0),
        "members": sorted(k for k in client.hkeys(key) if k.startswith(b"r:")),
        "held": client.zcard(f"{key}:held"),
        "spent": int(client.hget(key, "spent") or 0),
        "tokens": int(client.hget(key, "tokens") or 0),
        "tpm": int(client.get(TPM_SUM) or 0),
        "inflight": client.zcard(INFLIGHT),
    }


async def until(check: Any) -> None:
    for _ in range(300):  # bounded: the settlement lands within milliseconds
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def inflight(gw: Any) -> float:
    text = await (await gw.get("/metrics", headers=ADMIN)).text()
    (line,) = [x for x in text.splitlines() if x.startswith("llmgw_inflight_requests ")]
    return float(line.split()[1])


def chat(content: str, max_tokens: int = 5) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    }


@pytest.mark.parametrize("setup", list(SETUPS))
async def test_a_client_leaving_mid_admission_leaves_nothing_reserved(
    serve: Serve,
    fake: FakeOpenAI,
    redis_relay: ScriptRelay,
    redis_url: str,
    tmp_path: Path,
    setup: str,
) -> None:
    budget, limits, script, warm = SETUPS[setup]
    gw = await serve(config(fake, tmp_path / "b.db", redis_relay.url, budget, limits))
    client = redis.Redis.from_url(redis_url)
    try:
        if warm:
            first = await gw.post("/v1/chat/completions", json=chat("a first"), headers=AUTH)
            assert first.status == 200, await first.text()
            await until(lambda: figures(client)["inflight"] == 0 and not figures(client)["held"])
        else:  # known to Redis: the held reply is the script's, not a NOSCRIPT
            for lua in (joint.ADMIT, budgets_redis.ADMIT, limits_redis.ADMIT):
                client.script_load(lua.text)
        before = figures(client)

        redis_relay.armed = script.encode()
        body = orjson.dumps(chat("an estimate of $100", max_tokens=100_000))
        assert gw.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
            f"Authorization: Bearer {CLIENT_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await asyncio.wait_for(redis_relay.holding.wait(), 10)  # the script ran; its reply waits
        writer.close()  # the client leaves: the handler is cancelled mid-admission
        await writer.wait_closed()
        for _ in range(200):  # bounded
            if await inflight(gw) == 0:
                break
        else:
            raise AssertionError("the handler was never cancelled")
        redis_relay.release.set()
        assert await reader.read() == b""  # nothing was answered

        await until(lambda: figures(client) == before)  # given back once the reply came
        assert len(fake.seen) == int(warm)  # the cancelled request never went upstream

        # The key is neither spent (the $100 estimate) nor a concurrency slot short.
        behave, arrived = together(2)
        fake.default = behave
        pair = await asyncio.gather(
            *(
                gw.post("/v1/chat/completions", json=chat(f"one of two, {n}"), headers=AUTH)
                for n in range(2)
            )
        )
        assert [r.status for r in pair] == [200, 200], [await r.text() for r in pair]
        assert len(arrived) == 2
    finally:
        client.close()
