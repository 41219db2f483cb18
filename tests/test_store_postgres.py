"""Two gateway processes on one PostgreSQL and one Redis spending one budget; replicas
migrating a fresh database together, and an older database upgraded with its rows."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from llmgw.store.engine import Database, resolve_url
from tests.conftest import GatewayFactory
from tests.fakes import free_port
from tests.postgres_server import postgres_server
from tests.test_hedge_ledger import upgraded_keeps_its_rows
from tests.test_ledger import _start
from tests.test_ledger_rows import (
    held_while_refused_then_written_once,
    written_as_sqlalchemy_writes,
)

ADMIN = {"Authorization": "Bearer admin-secret-1"}
BODY = {"model": "demo/echo", "messages": [{"role": "user", "content": "spend"}], "max_tokens": 8}


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


async def _new_database(postgres_url: str, name: str) -> str:
    """A fresh database on the cluster; its ``database.url``."""
    admin = create_async_engine(resolve_url(postgres_url, "."), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {name}"))
    await admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + "/" + name


async def _spend_until_refused(session: aiohttp.ClientSession, url: str) -> list[int]:
    statuses: list[int] = []
    for _ in range(200):  # bounded: the budget ends it long before
        async with session.post(f"{url}/v1/chat/completions", json=BODY) as response:
            await response.read()
            statuses.append(response.status)
            if response.status == 429:
                assert response.headers["x-should-retry"] == "false"
                break
    return statuses


async def test_two_gateways_share_one_budget_without_overshooting(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""
providers:
  demo: {{type: mock}}
prices:
  echo: {{input: 100, output: 100}}
database: {{url: "{postgres_url}"}}
limits: {{backend: redis, redis_url: "{redis_url}"}}
budgets:
  global: {{monthly_usd: 0.05}}
auth: {{admin_key: admin-secret-1}}
""")
    log = tmp_path / "gateways.log"
    ports = [free_port(), free_port()]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            processes.append(_start(config, port, log))
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        async with aiohttp.ClientSession() as session:
            runs = await asyncio.gather(*(_spend_until_refused(session, u) for u in urls))
            async with session.get(
                f"{urls[0]}/api/v1/requests?limit=1&status=200", headers=ADMIN
            ) as r:
                one = (await r.json())["data"][0]["cost_usd"]
            async with session.get(f"{urls[1]}/api/v1/budget", headers=ADMIN) as r:
                (entry,) = (await r.json())["budgets"]
            async with session.get(f"{urls[1]}/api/v1/usage?group_by=provider", headers=ADMIN) as r:
                usage = await r.json()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(30)
    served = sum(run.count(200) for run in runs)
    assert all(run[-1] == 429 for run in runs) and served >= 2
    assert one > 0
    assert entry["scope"] == "global" and entry["limit_usd"] == 0.05
    assert 0.05 <= entry["spent_usd"] <= 0.05 + one + 1e-9  # one request's cost at most
    assert entry["spent_usd"] == pytest.approx(served * one)
    assert usage["total"]["requests"] == served + 2  # every row, from both replicas


async def test_replicas_starting_together_on_a_fresh_database_all_come_up(
    postgres_url: str,
) -> None:
    url = resolve_url(await _new_database(postgres_url, "fresh_replicas"), ".")
    replicas = [Database(url) for _ in range(6)]
    try:
        await asyncio.gather(*(replica.start() for replica in replicas))
        async with replicas[0].engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            requests = (await conn.execute(text("SELECT count(*) FROM requests"))).scalar()
    finally:
        for replica in replicas:
            await replica.close()
    assert [tuple(row) for row in versions] == [("0003",)] and requests == 0


async def test_an_older_postgresql_ledger_is_upgraded_with_its_rows_kept(
    postgres_url: str, gateway: GatewayFactory
) -> None:
    config_url = await _new_database(postgres_url, "upgraded_ledger")
    await upgraded_keeps_its_rows(gateway, resolve_url(config_url, "."), config_url)


async def test_the_ledgers_rows_are_stored_as_sqlalchemys_insert_stores_them_postgresql(
    postgres_url: str,
) -> None:
    ours = await _new_database(postgres_url, "ledger_rows_ours")
    reference = await _new_database(postgres_url, "ledger_rows_reference")
    await written_as_sqlalchemy_writes(resolve_url(ours, "."), resolve_url(reference, "."))


async def test_ledger_rows_held_while_postgresql_refuses_are_written_once_it_is_back(
    postgres_url: str,
) -> None:
    url = await _new_database(postgres_url, "ledger_refused")
    await held_while_refused_then_written_once(resolve_url(url, "."))
