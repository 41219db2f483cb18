"""Budget alerts due together fire once each, even when the client leaves while the
first is being claimed (SPEC §11).

One request crosses three alert levels at once. The test holds SQLite's write lock,
so the first alert's claim in the database waits; the client leaves then, which
cancels the handler (``handler_cancellation=True``, as in production). Once the lock
is let go, every level is delivered to the webhook exactly once: none is lost with
the handler, none is sent twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import CLIENT_KEY, Serve
from tests.fakes import FakeOpenAI, webhook_receiver
from tests.test_budgets import budget_config

ADMIN = {"Authorization": "Bearer admin-secret-1"}
LEVELS = [0.5, 0.8, 0.95]


async def metric_lines(gw: Any, prefix: str) -> list[str]:
    text = await (await gw.get("/metrics", headers=ADMIN)).text()
    return [line for line in text.splitlines() if line.startswith(prefix)]


async def until(check: Any) -> None:
    for _ in range(500):  # bounded
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_alerts_due_together_fire_once_each_when_the_client_leaves_midway(
    serve: Serve, fake: FakeOpenAI, aiohttp_server: Any, tmp_path: Path
) -> None:
    url, received = await webhook_receiver(aiohttp_server)
    db = tmp_path / "b.db"
    # FakeOpenAI reports 12 tokens: at $1000/M, $0.012 of a $0.01 budget, past every level.
    alerts = f"budgets:\n  alerts: {LEVELS}\n  webhook: {url}"
    gw = await serve(budget_config(fake.url, db, key_budget="{monthly_usd: 0.01}", extra=alerts))
    lock = sqlite3.connect(db, timeout=10, isolation_level=None, check_same_thread=False)
    try:
        # The gateway's writes wait for it (taken off the loop: the gateway shares it).
        await asyncio.to_thread(lock.execute, "BEGIN IMMEDIATE")
        body = orjson.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert gw.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
            + f"Authorization: Bearer {CLIENT_KEY}\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

        async def settling() -> bool:  # its usage recorded: the first claim waits
            return bool(await metric_lines(gw, 'llmgw_tokens_total{key="team-a"'))

        await until(settling)
        writer.close()  # the client leaves: the handler is cancelled in the first claim
        await writer.wait_closed()

        async def cancelled() -> bool:
            (line,) = await metric_lines(gw, "llmgw_inflight_requests ")
            return float(line.split()[1]) == 0

        await until(cancelled)
        assert await reader.read() == b""  # nothing was answered
    finally:
        lock.rollback()
        lock.close()

    async def delivered() -> bool:
        return len(received) >= len(LEVELS)

    await until(delivered)
    fired = await metric_lines(gw, "llmgw_budget_alerts_total{")
    assert sorted(line.rsplit(" ", 1)[1] for line in fired) == ["1.0"] * len(LEVELS)
    await asyncio.sleep(0.5)  # (a second delivery would have come by now)
    assert sorted(e["fraction"] for e in received) == LEVELS
    assert {e["scope"] for e in received} == {"key:team-a"}
