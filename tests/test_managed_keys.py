"""Managed keys over the admin API, on two replicas sharing one database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event

from llmgw.server.appkeys import DATABASE, KEYRING
from tests.conftest import CLIENT_KEY, PROVIDER_KEY, GatewayFactory
from tests.fakes import FakeOpenAI

ADMIN = {"Authorization": "Bearer admin-secret-1"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def config(url: str, db: Path) -> str:
    return f"""
providers:
  up: {{type: openai, base_url: {url}, api_key: {PROVIDER_KEY}, models: [gpt-4o-mini]}}
database: {{url: "sqlite:///{db}"}}
auth:
  admin_key: admin-secret-1
  keys: [{{name: team-a, key: {CLIENT_KEY}}}]
"""


async def _status_within(gw: Any, key: str, wanted: int, seconds: float) -> int:
    status = 0
    for _ in range(int(seconds / 0.05)):
        response = await gw.post("/v1/chat/completions", json=CHAT, headers={"X-API-Key": key})
        status = response.status
        if status == wanted:
            break
        await asyncio.sleep(0.05)
    return status


async def test_a_created_key_works_at_once_and_is_refused_within_a_second_of_deletion(
    gateway: GatewayFactory, fake: FakeOpenAI, tmp_path: Path
) -> None:
    db = tmp_path / "keys.db"
    one = await gateway(config(fake.url, db))
    two = await gateway(config(fake.url, db))  # another replica on the same database
    created = await one.post(
        "/api/v1/keys",
        json={"name": "svc-1", "models": ["gpt-4o-mini"], "limits": {"rpm": 100}},
        headers=ADMIN,
    )
    assert created.status == 201
    body = await created.json()
    key = body["key"]
    assert key.startswith("sk-llmgw-") and body["name"] == "svc-1"
    response = await one.post("/v1/chat/completions", json=CHAT, headers={"X-API-Key": key})
    assert response.status == 200  # at once, on the replica that created it
    assert await _status_within(two, key, 200, 1.0) == 200
    listed = await (await one.get("/api/v1/keys", headers=ADMIN)).json()
    assert [k["name"] for k in listed["data"]] == ["team-a", "svc-1"]
    assert all("key" not in k for k in listed["data"])  # shown once only
    shown = await (await two.get("/api/v1/keys/svc-1", headers=ADMIN)).json()
    assert shown["models"] == ["gpt-4o-mini"] and shown["limits"] == {"rpm": 100}

    assert (await one.delete("/api/v1/keys/svc-1", headers=ADMIN)).status == 204
    refused = await one.post("/v1/chat/completions", json=CHAT, headers={"X-API-Key": key})
    assert refused.status == 401
    assert await _status_within(two, key, 401, 1.0) == 401
    assert (await one.get("/api/v1/keys/svc-1", headers=ADMIN)).status == 404


async def test_taken_names_and_bad_bodies(
    gateway: GatewayFactory, fake: FakeOpenAI, tmp_path: Path
) -> None:
    gw = await gateway(config(fake.url, tmp_path / "keys.db"))
    assert (await gw.post("/api/v1/keys", json={"name": "x"}, headers=ADMIN)).status == 201
    again = await gw.post("/api/v1/keys", json={"name": "x"}, headers=ADMIN)
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "conflict"
    clash = await gw.post("/api/v1/keys", json={"name": "team-a"}, headers=ADMIN)
    assert clash.status == 409  # a name cannot be both a config key and a managed key
    bad = await gw.post(
        "/api/v1/keys", json={"name": "y", "budget": {"monthly_usd": -1}}, headers=ADMIN
    )
    assert bad.status == 400 and (await bad.json())["error"]["param"] == "budget.monthly_usd"
    assert (await gw.post("/api/v1/keys", data=b"{", headers=ADMIN)).status == 400
    assert (await gw.post("/api/v1/keys", json={"name": "z"})).status in (401, 403)


async def test_expired_and_patched_keys(
    gateway: GatewayFactory, fake: FakeOpenAI, tmp_path: Path
) -> None:
    gw = await gateway(config(fake.url, tmp_path / "keys.db"))
    created = await gw.post(
        "/api/v1/keys", json={"name": "old", "expires_at": "2001-01-01T00:00:00Z"}, headers=ADMIN
    )
    key = (await created.json())["key"]
    expired = await gw.post("/v1/chat/completions", json=CHAT, headers={"X-API-Key": key})
    assert expired.status == 401 and "expired" in (await expired.json())["error"]["message"]
    patched = await gw.patch(
        "/api/v1/keys/old", json={"expires_at": None, "models": ["other"]}, headers=ADMIN
    )
    assert patched.status == 200
    forbidden = await gw.post("/v1/chat/completions", json=CHAT, headers={"X-API-Key": key})
    assert forbidden.status == 403  # usable again, with its new allowlist


async def test_the_version_poll_holds_one_connection_instead_of_a_checkout_per_read(
    gateway: GatewayFactory, fake: FakeOpenAI, tmp_path: Path
) -> None:
    """Twice a second on every replica, idle or not: each read is one statement on a
    connection held for it, not a pooled read (a checkout and four more hops), and a
    change made meanwhile by another replica is still seen."""
    db = tmp_path / "keys.db"
    one = await gateway(config(fake.url, db))
    two = await gateway(config(fake.url, db))
    managed, database = two.server.app[KEYRING].managed, two.server.app[DATABASE]
    assert database is not None
    checkouts: list[object] = []
    event.listen(database.engine.sync_engine, "checkout", lambda *_: checkouts.append(1))
    for _ in range(100):  # bounded: the first read opens the held connection
        if managed.probe is not None and managed.probe.reads >= 1:
            break
        await asyncio.sleep(0.05)
    checkouts.clear()
    assert managed.probe is not None
    first = managed.probe.reads
    for _ in range(100):  # bounded: three more reads, about 1.5 s
        if managed.probe.reads >= first + 3:
            break
        await asyncio.sleep(0.05)
    assert managed.probe.reads >= first + 3
    assert checkouts == []

    created = await one.post("/api/v1/keys", json={"name": "svc-2"}, headers=ADMIN)
    key = (await created.json())["key"]
    assert await _status_within(two, key, 200, 1.0) == 200
    assert (await one.delete("/api/v1/keys/svc-2", headers=ADMIN)).status == 204
    assert await _status_within(two, key, 401, 1.0) == 401


async def test_a_broken_poll_connection_is_replaced(
    gateway: GatewayFactory, fake: FakeOpenAI, tmp_path: Path
) -> None:
    db = tmp_path / "keys.db"
    one = await gateway(config(fake.url, db))
    two = await gateway(config(fake.url, db))
    managed = two.server.app[KEYRING].managed
    for _ in range(100):  # bounded: until the held connection is open
        if managed.probe is not None and managed.probe._driver is not None:
            break
        await asyncio.sleep(0.05)
    assert managed.probe is not None
    await managed.probe._driver.close()  # the connection dies under the probe
    created = await one.post("/api/v1/keys", json={"name": "svc-3"}, headers=ADMIN)
    key = (await created.json())["key"]
    assert await _status_within(two, key, 200, 2.0) == 200  # a failed read, then a new one
