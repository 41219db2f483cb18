"""The usage ledger: rows survive a restart and a SIGTERM under load; usage queries."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import orjson

from llmgw.core import RequestContext
from llmgw.observe.metrics import Metrics
from llmgw.store.engine import Database
from llmgw.store.ledger import COLUMNS, Ledger
from tests.conftest import CLIENT_KEY, PROVIDER_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, free_port, reply_error
from tests.redis_server import ROOT, _wait_for_port

ADMIN = {"Authorization": "Bearer admin-secret-1"}


def _start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmgw", "--config", str(config), "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _wait_for_port(port, process, 30)
    return process


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])


def _ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return sorted(row[0] for row in conn.execute("SELECT request_id FROM requests"))


def _logged(log: Path) -> list[str]:
    """The request ids of the client API requests the gateway logged an access line for."""
    lines = (orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return sorted(
        line["request_id"]
        for line in lines
        if line.get("logger") == "llmgw.access" and line.get("endpoint") is not None
    )


async def _ask(session: aiohttp.ClientSession, url: str) -> int:
    body = {"model": "demo/echo", "messages": [{"role": "user", "content": "count me"}]}
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body) as response:
            await response.read()
            return response.status
    except aiohttp.ClientError:
        return 0  # refused: the gateway had stopped accepting


async def test_no_row_lost_on_sigterm_under_load_and_across_a_restart(tmp_path: Path) -> None:
    # No database section: the default SQLite file beside the config file.
    config = tmp_path / "gateway.yaml"
    config.write_text("providers:\n  demo: {type: mock, latency: 200ms}\nserver: {shutdown_timeout: 20s}\n")
    db, log = tmp_path / "llmgw.db", tmp_path / "gateway.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(config, port, log)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/health") as ready:  # signal handlers are set
                assert ready.status == 200
            load = [asyncio.ensure_future(_ask(session, url)) for _ in range(150)]
            await asyncio.sleep(0.15)  # requests in flight, mid-answer
            process.send_signal(signal.SIGTERM)
            statuses = await asyncio.gather(*load)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    answered = sum(1 for status in statuses if status)
    assert answered > 0 and all(status in (0, 200) for status in statuses)
    assert _rows(db) == answered, log.read_text()[-2000:]
    assert _ids(db) == _logged(log)  # the very requests the gateway answered, each once

    process = _start(config, port, log)  # a restart keeps what was written
    try:
        async with aiohttp.ClientSession() as session:
            assert [await _ask(session, url) for _ in range(3)] == [200, 200, 200]
            async with session.get(f"{url}/api/v1/usage?group_by=model") as response:
                report = await response.json()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert report.get("source") == "database", report  # not an error body
    assert report["total"]["requests"] == answered + 3
    assert _rows(db) == answered + 3
    assert _ids(db) == _logged(log)


async def test_concurrent_usage_reports_write_each_row_once(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    # Every ledger report first writes what the ledger holds; several at once (and the
    # background writer) must not each write the same held rows, nor fail.
    db = tmp_path / "c.db"
    gw = await gateway(f"""
providers:
  demo: {{type: mock}}
database: {{url: "sqlite:///{db}"}}
""")
    body = {"model": "demo/echo", "messages": [{"role": "user", "content": "count me"}]}
    asked = 0
    for _ in range(3):  # a few rounds: rows held each time the reports arrive
        chats = await asyncio.gather(
            *(gw.post("/v1/chat/completions", json=body) for _ in range(20))
        )
        assert [chat.status for chat in chats] == [200] * 20
        asked += 20
        reports = await asyncio.gather(*(gw.get("/api/v1/usage?group_by=model") for _ in range(8)))
        assert [report.status for report in reports] == [200] * 8
        for report in reports:
            assert (await report.json())["total"]["requests"] == asked
        recent = await gw.get("/api/v1/requests?limit=1000")
        ids = [row["request_id"] for row in (await recent.json())["data"]]
        assert len(ids) == len(set(ids)) == asked


async def test_usage_and_recent_requests_from_the_ledger(
    gateway: GatewayFactory, fake: FakeOpenAI, sdk: Any, tmp_path: Path
) -> None:
    gw = await gateway(f"""
providers:
  up: {{type: openai, base_url: {fake.url}, api_key: {PROVIDER_KEY}, models: [gpt-4o-mini]}}
database: {{url: "sqlite:///{tmp_path / 'u.db'}"}}
auth:
  admin_key: admin-secret-1
  keys: [{{name: team-a, key: {CLIENT_KEY}}}]
""")
    client = sdk(gw)
    for _ in range(3):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    bad = await gw.post(
        "/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
        headers={"X-API-Key": CLIENT_KEY},
    )
    assert bad.status == 404
    usage = await (
        await gw.get("/api/v1/usage?from=2000-01-01&group_by=key,model,day", headers=ADMIN)
    ).json()
    assert usage["total"]["requests"] == 4
    ok = [g for g in usage["groups"] if g["model"] == "gpt-4o-mini"]
    assert ok[0]["key"] == "team-a" and ok[0]["requests"] == 3 and ok[0]["prompt_tokens"] == 27
    recent = await (await gw.get("/api/v1/requests?limit=2", headers=ADMIN)).json()
    assert [r["status"] for r in recent["data"]] == [404, 200]  # newest first
    only_ok = await (await gw.get("/api/v1/requests?status=200&key=team-a", headers=ADMIN)).json()
    assert len(only_ok["data"]) == 3 and only_ok["data"][0]["upstream_model"] == "gpt-4o-mini"
    future = await (await gw.get("/api/v1/usage?from=2999-01-01", headers=ADMIN)).json()
    assert future["total"]["requests"] == 0
    tagged = await (await gw.get("/api/v1/usage?group_by=tag:team", headers=ADMIN)).json()
    assert tagged["groups"] == [{"tag:team": None, **tagged["total"]}]
    for query in ("from=yesterday", "group_by=colour", "group_by=tag:", "limit=0"):
        path = "/api/v1/requests" if query.startswith("limit") else "/api/v1/usage"
        response = await gw.get(f"{path}?{query}", headers=ADMIN)
        assert response.status == 400, query
    plain = await (await gw.get("/api/v1/usage", headers=ADMIN)).json()
    assert plain["source"] == "memory"  # no parameters: today's totals, as before


def test_a_database_that_cannot_be_opened_is_a_clear_error_at_start(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers:\n  demo: {type: mock}\ndatabase: {url: 'sqlite:///a-file/llmgw.db'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "llmgw", "--config", str(config), "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert result.returncode == 1
    assert "database: cannot" in result.stderr and "Traceback" not in result.stderr


class _SlowCommit:
    """A database whose commit is under way when the writer's caller is cancelled: the
    rows are in (as with a real commit the driver finishes in its thread)."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.committing = asyncio.Event()
        self.release = asyncio.Event()
        self.engine = self
        self.dialect = SimpleNamespace(paramstyle="qmark")

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[_SlowCommit]:
        batch: list[tuple[Any, ...]] = []
        self._batch = batch
        yield self
        self.written += [row[COLUMNS.index("request_id")] for row in batch]
        self.committing.set()
        await self.release.wait()

    async def exec_driver_sql(self, _sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._batch.extend(rows)


async def test_a_write_whose_caller_is_cancelled_mid_commit_is_not_written_again() -> None:
    # A usage report's client that goes away cancels its handler while the ledger
    # writes; the rows committed must still leave the buffer, or the next write repeats them.
    db = _SlowCommit()
    ledger = Ledger(cast(Database, db), Metrics(), 100)
    for i in range(3):
        ledger.add(RequestContext(f"req-{i}", time.perf_counter(), endpoint="chat"), 0.01)
    report = asyncio.ensure_future(ledger.flush())
    await asyncio.wait_for(db.committing.wait(), 10)
    report.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await report
    db.release.set()
    assert await ledger.flush()
    assert db.written == ["req-0", "req-1", "req-2"] and ledger.pending == 0


async def test_recent_requests_carry_attempts_with_a_database_as_without(
    gateway: GatewayFactory, make_fake: Any, sdk: Any, tmp_path: Path
) -> None:
    """A request that fell back once lists ``attempts: 2`` in /api/v1/requests, from the
    ledger (its ``attempts`` column) as from this process's memory; one that did not,
    1 (the dashboard's Attempts column reads it)."""
    first, second = await make_fake(), await make_fake()
    shown: dict[str, list[tuple[Any, Any]]] = {}
    ledger = f'database: {{url: "sqlite:///{tmp_path / "a.db"}"}}'
    for source, database in (("database", ledger), ("memory", "")):  # (no file: no database)
        first.then(reply_error(503))
        gw = await gateway(f"""
providers:
  first: {{type: openai, base_url: {first.url}, api_key: {PROVIDER_KEY}, max_retries: 0}}
  second: {{type: openai, base_url: {second.url}, api_key: {PROVIDER_KEY}, max_retries: 0}}
models:
  chain: [first/model-a, second/model-b]
{database}
auth: {{admin_key: admin-secret-1}}
""")
        client = sdk(gw)
        fell_back = await client.chat.completions.with_raw_response.create(
            model="chain", messages=[{"role": "user", "content": "fall back once"}]
        )
        assert fell_back.headers["X-LLMGW-Attempts"] == "2"
        await client.chat.completions.create(
            model="second/model-b", messages=[{"role": "user", "content": "straight through"}]
        )
        recent = await (await gw.get("/api/v1/requests", headers=ADMIN)).json()
        assert recent["source"] == source
        shown[source] = [(r["provider"], r["attempts"]) for r in recent["data"]]
        await gw.close()
    assert shown["database"] == shown["memory"] == [("second", 1), ("second", 2)]
