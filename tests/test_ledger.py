"""The usage ledger: rows survive a restart and a SIGTERM under load; usage queries."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import CLIENT_KEY, PROVIDER_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, free_port
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

    process = _start(config, port, log)  # a restart keeps what was written
    try:
        async with aiohttp.ClientSession() as session:
            assert [await _ask(session, url) for _ in range(3)] == [200, 200, 200]
            async with session.get(f"{url}/api/v1/usage?group_by=model") as response:
                report = await response.json()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert report["source"] == "database"
    assert report["total"]["requests"] == answered + 3
    assert _rows(db) == answered + 3


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
    bad = await gw.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}, headers={"X-API-Key": CLIENT_KEY})
    assert bad.status == 404
    usage = await (await gw.get("/api/v1/usage?from=2000-01-01&group_by=key,model,day", headers=ADMIN)).json()
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


async def test_requests_with_metadata_tags_are_written_and_grouped_by_tag(
    gateway: GatewayFactory, sdk: Any, tmp_path: Path
) -> None:
    gw = await gateway(f"""
providers:
  demo: {{type: mock, models: [echo]}}
database: {{url: "sqlite:///{tmp_path / 't.db'}"}}
auth: {{admin_key: admin-secret-1, keys: [{{name: team-a, key: {CLIENT_KEY}}}]}}
""")
    client = sdk(gw)
    for feature in ("search", "search", "chat"):
        await client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"x-gateway": {"metadata": {"feature": feature}}},
        )
    await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    tagged = await (await gw.get("/api/v1/usage?group_by=tag:feature", headers=ADMIN)).json()
    assert tagged["total"]["requests"] == 4  # a tagged row holds back none behind it
    counts = {g["tag:feature"]: g["requests"] for g in tagged["groups"]}
    assert counts == {None: 1, "chat": 1, "search": 2}
    recent = await (await gw.get("/api/v1/requests?limit=2", headers=ADMIN)).json()
    assert [r["tags"] for r in recent["data"]] == [None, {"feature": "chat"}]


async def test_concurrent_flushes_write_each_row_once(
    gateway: GatewayFactory, fake: FakeOpenAI, tmp_path: Path
) -> None:
    """Usage queries flush the ledger first, beside its own writer: rows queued once are
    written once, however many flushes run at the same moment."""
    db = tmp_path / "f.db"
    gw = await gateway(f"""
providers:
  up: {{type: openai, base_url: {fake.url}, api_key: {PROVIDER_KEY}, models: [gpt-4o-mini]}}
database: {{url: "sqlite:///{db}"}}
auth:
  admin_key: admin-secret-1
""")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(12):
        assert (await gw.post("/v1/chat/completions", json=body)).status == 200
    answers = await asyncio.gather(
        *(gw.get("/api/v1/usage?group_by=model", headers=ADMIN) for _ in range(6))
    )
    assert [a.status for a in answers] == [200] * 6
    totals = {(await a.json())["total"]["requests"] for a in answers}
    assert totals == {12}
    assert _rows(db) == 12
