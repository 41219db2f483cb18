"""The redis limits backend: exact across replicas, shared usage, and Redis outages."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web

from llmgw.config import ConfigError, LimitSpec, parse
from llmgw.limits.redis import PREFIX, RedisCounters
from llmgw.limits.types import Scope
from tests.conftest import CLIENT_KEY, one_provider
from tests.fakes import FakeOpenAI, chat_completion, free_port
from tests.redis_server import gateway_process, redis_server

MESSAGES = [{"role": "user", "content": "x" * 40}]  # estimated at 10 tokens
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


def shared(
    url: str,
    redis_url: str,
    *,
    key: str = "",
    model: str = "",
    everyone: str = "",
    on_error: str = "",
) -> str:
    key_limits = f", limits: {key}" if key else ""
    text = one_provider(url, max_retries=0)
    text += f"auth:\n  keys:\n    - {{name: team-a, key: {CLIENT_KEY}{key_limits}}}\n"
    text += f"limits:\n  backend: redis\n  redis_url: {redis_url}\n"
    if on_error:
        text += f"  on_redis_error: {on_error}\n"
    if model:
        text += f"  models:\n    gpt-4o-mini: {model}\n"
    if everyone:
        text += f"  global: {everyone}\n"
    return text


async def post(gw: Any, body: dict[str, Any] = CHAT) -> Any:
    response = await gw.post("/v1/chat/completions", json=body, headers=AUTH)
    await response.read()
    return response


def held(gate: asyncio.Event) -> Any:
    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await gate.wait()
        return web.json_response(chat_completion(model=body["model"]))

    return behave


async def test_two_gateway_processes_admit_exactly_the_limit(
    redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""
logging: {{level: warning}}
providers:
  demo: {{type: mock, models: [echo]}}
limits:
  backend: redis
  redis_url: {redis_url}
  global: {{rpm: 20}}
"""
    )
    with (
        gateway_process(config, tmp_path / "a.log") as first,
        gateway_process(config, tmp_path / "b.log") as second,
    ):
        body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as session:

            async def call(base: str) -> tuple[int, str | None]:
                async with session.post(f"{base}/v1/chat/completions", json=body) as response:
                    await response.read()
                    return response.status, response.headers.get("Retry-After")

            results = await asyncio.gather(*(call((first, second)[i % 2]) for i in range(60)))
            statuses = Counter(status for status, _ in results)
            assert statuses == {200: 20, 429: 40}
            assert all(int(after or 0) >= 1 for status, after in results if status == 429)
            async with session.get(f"{first}/api/v1/usage") as response:
                report = await response.json()
    assert report["source"] == "redis"
    assert report["total"]["requests"] == 20  # both replicas' admitted requests


@pytest.mark.parametrize("scope", ["key", "model", "everyone"])
@pytest.mark.parametrize(("limit", "refused_after"), [("{rpm: 3}", 3), ("{tpm: 30}", 2)])
async def test_limits_over_redis(
    fake: FakeOpenAI, gateway: Any, redis_url: str, scope: str, limit: str, refused_after: int
) -> None:
    gw = await gateway(shared(fake.url, redis_url, **{scope: limit}))
    statuses = [(await post(gw)).status for _ in range(refused_after + 1)]
    assert statuses == [200] * refused_after + [429]


async def test_headers_count_down_over_redis(
    fake: FakeOpenAI, gateway: Any, redis_url: str
) -> None:
    gw = await gateway(shared(fake.url, redis_url, key="{rpm: 3, tpm: 30}"))
    first, second = await post(gw), await post(gw)
    assert [r.headers["x-ratelimit-remaining-requests"] for r in (first, second)] == ["2", "1"]
    # 10 reserved, then corrected to the 9 + 3 the provider reported
    assert [r.headers["x-ratelimit-remaining-tokens"] for r in (first, second)] == ["20", "8"]
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    refused = await post(gw)
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


@pytest.mark.parametrize("scope", ["key", "model", "everyone"])
async def test_concurrency_is_shared_between_replicas(
    fake: FakeOpenAI, gateway: Any, redis_url: str, scope: str
) -> None:
    gate = asyncio.Event()
    fake.then(held(gate))
    config = shared(fake.url, redis_url, **{scope: "{concurrency: 1}"})
    one, two = await gateway(config), await gateway(config)
    busy = asyncio.create_task(post(one))
    while not fake.seen:
        await asyncio.sleep(0.005)
    refused = await post(two)
    assert (refused.status, refused.headers["Retry-After"]) == (429, "1")
    gate.set()
    assert (await busy).status == 200
    assert (await post(two)).status == 200  # released in Redis when the first ended


async def test_cancelled_stream_is_charged_in_redis(
    fake: FakeOpenAI, gateway: Any, redis_url: str
) -> None:
    fake.then(fake.slow_stream(chunks=500, delay=0.01))
    gw = await gateway(shared(fake.url, redis_url, key="{tpm: 100000}"))
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            gw.make_url("/v1/chat/completions"), json={**CHAT, "stream": True}, headers=AUTH
        )
        for _ in range(5):
            await response.content.readuntil(b"\n\n")
        response.close()
    await asyncio.wait_for(fake.stream_closed.wait(), 3)
    total: dict[str, Any] = {}
    for _ in range(300):
        report = await (await gw.get("/api/v1/usage")).json()
        total = report["total"]
        if total["requests"]:
            break
        await asyncio.sleep(0.01)
    assert report["source"] == "redis"
    assert total["prompt_tokens"] == 10 and total["completion_tokens"] >= 4
    client = redis.Redis.from_url(redis_url)
    try:
        counted = int(client.get(f"{PREFIX}tpm:key:team-a:sum") or 0)
    finally:
        client.close()
    assert counted == total["prompt_tokens"] + total["completion_tokens"]


async def test_lease_of_a_dead_replica_expires(redis_url: str) -> None:
    counters = RedisCounters(redis_url)
    scope = Scope("global", "global", LimitSpec(concurrency=1))
    try:
        client = redis.Redis.from_url(redis_url)
        inflight = f"{PREFIX}inflight:global"
        client.zadd(inflight, {"crashed-replica-request": 1})  # its lease ended long ago
        verdict = await counters.admit((scope,), "r1", 0, "local")
        assert verdict is not None and verdict.binding == -1
        score = client.zscore(inflight, "r1")
        refused = await counters.admit((scope,), "r2", 0, "local")
        assert refused is not None and refused.binding == 0
        client.zadd(inflight, {"r1": 0}, xx=True)  # as if time had passed
        await counters.renew()  # this replica still runs r1: its lease is renewed
        assert client.zscore(inflight, "r1") == pytest.approx(score, abs=5000)
        client.close()
    finally:
        await counters.close()


@pytest.mark.parametrize(
    ("policy", "statuses"),
    [
        ("local", [200, 200, 429]),
        ("allow", [200, 200, 200]),
        ("deny", [429, 429, 429]),
    ],
)
async def test_redis_outage_policy(
    fake: FakeOpenAI, gateway: Any, caplog: Any, policy: str, statuses: list[int]
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgw.limits.redis")
    nowhere = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    gw = await gateway(shared(fake.url, nowhere, key="{rpm: 2}", on_error=policy))
    assert [(await post(gw)).status for _ in statuses] == statuses
    outages = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(outages) == 1  # once per outage, not per request
    assert f"on_redis_error: {policy}" in outages[0].getMessage()
    assert "hunter2" not in caplog.text


async def test_redis_recovery_is_logged(
    fake: FakeOpenAI, gateway: Any, caplog: Any, tmp_path: Path
) -> None:
    caplog.set_level(logging.WARNING, logger="llmgw.limits.redis")
    port = free_port()
    gw = await gateway(shared(fake.url, f"redis://127.0.0.1:{port}/0", key="{rpm: 100}"))
    assert (await post(gw)).status == 200  # admitted locally while Redis is down
    with redis_server(tmp_path, port):
        await asyncio.sleep(1.05)  # Redis is left alone for a second after a failure
        assert (await post(gw)).status == 200
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_parse_accepts_on_redis_error_and_rejects_typos() -> None:
    base = one_provider("http://127.0.0.1:9/v1") + "limits:\n  backend: redis\n"
    base += "  redis_url: redis://127.0.0.1:6379/0\n"
    assert parse(base, environ={}).limits.on_redis_error == "local"
    assert parse(base + "  on_redis_error: deny\n", environ={}).limits.on_redis_error == "deny"
    with pytest.raises(ConfigError, match=r"limits\.on_redis_error"):
        parse(base + "  on_redis_error: maybe\n", environ={})
