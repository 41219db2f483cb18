"""Hot reload (SPEC §6): watched file, admin API, consistency under load."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from llmgw.app import create_app
from llmgw.config import parse
from tests.fakes import FakeOpenAI, chat_chunks, reply_error, reply_stream

MESSAGES = [{"role": "user", "content": "hi"}]

BASE = """
providers:
  demo: {type: mock, models: [echo]}
"""

Starter = Callable[[Path], Awaitable[Any]]


@pytest.fixture
async def start_watched(aiohttp_client: Any) -> Starter:
    async def start(path: Path) -> Any:
        text = path.read_text()
        app = create_app(parse(text, str(path), {}), config_path=str(path), config_text=text)
        return await aiohttp_client(app)

    return start


async def served(gw: Any, model: str) -> bool:
    response = await gw.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})
    await response.read()
    return bool(response.status == 200)


async def eventually_served(gw: Any, model: str, within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await served(gw, model):
        assert asyncio.get_running_loop().time() < deadline, f"{model} not served in {within}s"
        await asyncio.sleep(0.05)


def with_alias(name: str) -> str:
    return BASE + f"models:\n  {name}: demo/echo\n"


async def test_plain_write_is_picked_up(tmp_path: Path, start_watched: Starter) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(BASE)
    gw = await start_watched(path)
    assert not await served(gw, "fresh")
    await asyncio.sleep(0.2)  # let the watcher start
    path.write_text(with_alias("fresh"))
    await eventually_served(gw, "fresh")


async def test_atomic_rename_over_is_picked_up(tmp_path: Path, start_watched: Starter) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(BASE)
    gw = await start_watched(path)
    await asyncio.sleep(0.2)
    temp = tmp_path / ".gateway.yaml.swp"
    temp.write_text(with_alias("renamed"))
    os.replace(temp, path)
    await eventually_served(gw, "renamed")


async def test_configmap_symlink_swap_is_picked_up(tmp_path: Path, start_watched: Starter) -> None:
    """The layout kubelet gives a mounted ConfigMap, and its atomic update."""
    first = tmp_path / "..2026_11_23_10_00_00.1"
    first.mkdir()
    (first / "gateway.yaml").write_text(BASE)
    (tmp_path / "..data").symlink_to(first.name)
    path = tmp_path / "gateway.yaml"
    path.symlink_to("..data/gateway.yaml")
    gw = await start_watched(path)
    await asyncio.sleep(0.2)

    second = tmp_path / "..2026_11_23_10_05_00.2"
    second.mkdir()
    (second / "gateway.yaml").write_text(with_alias("from-configmap"))
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    for child in first.iterdir():
        child.unlink()
    first.rmdir()
    await eventually_served(gw, "from-configmap")


async def test_other_files_in_the_folder_never_wake_a_reload(
    tmp_path: Path, start_watched: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite ledger next to the config writes all the time: those writes must not
    make the gateway read (let alone parse) its config again."""
    import llmgw.server.reload as reload_module

    reads: list[str] = []
    parses: list[str] = []
    real_read, real_parse = reload_module.read_text, reload_module.parse
    monkeypatch.setattr(reload_module, "read_text", lambda p: reads.append(p) or real_read(p))
    monkeypatch.setattr(reload_module, "parse", lambda t, p: parses.append(p) or real_parse(t, p))
    path = tmp_path / "gateway.yaml"
    path.write_text(BASE)
    gw = await start_watched(path)
    await asyncio.sleep(0.2)
    for n in range(4):
        (tmp_path / "llmgw.db-journal").write_text(f"row {n}")
        await asyncio.sleep(0.25)  # past the watcher's debounce, each its own wake-up
    assert reads == [] and parses == []
    path.write_text(BASE)  # touched, text unchanged: read, never parsed
    await asyncio.sleep(0.5)
    assert len(reads) >= 1 and parses == []
    path.write_text(with_alias("after-db-writes"))
    await eventually_served(gw, "after-db-writes")
    assert len(parses) == 1


@pytest.mark.parametrize(
    ("broken", "fragment"),
    [
        ("providers: [unclosed\n", "invalid YAML"),
        (BASE + "modles:\n  x: demo/echo\n", "unknown key 'modles'"),
        (BASE.replace("{type: mock", "{type: mock, latency: later"), "invalid duration 'later'"),
    ],
)
async def test_invalid_file_keeps_old_config(
    tmp_path: Path, start_watched: Starter, broken: str, fragment: str
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(with_alias("kept"))
    gw = await start_watched(path)
    before = await (await gw.get("/api/v1/config")).json()
    path.write_text(broken)
    response = await gw.post("/api/v1/config/reload")
    assert response.status == 422
    result = await response.json()
    assert result["result"] == "error"
    assert any(fragment in e and e.startswith(f"{path}:") for e in result["errors"])
    assert await served(gw, "kept")
    after = await (await gw.get("/api/v1/config")).json()
    assert after["hash"] == before["hash"]
    assert after["last_reload"]["result"] == "error"
    assert any(fragment in e for e in after["last_reload"]["errors"])
    metrics = await (await gw.get("/metrics")).text()
    assert 'llmgw_config_reloads_total{result="error"}' in metrics


async def test_api_reload_swaps_and_reports(tmp_path: Path, start_watched: Starter) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(BASE)
    gw = await start_watched(path)
    old_hash = (await (await gw.get("/api/v1/config")).json())["hash"]
    path.write_text(with_alias("via-api"))
    response = await gw.post("/api/v1/config/reload")
    body = await response.json()
    assert response.status == 200 and body["result"] == "success"
    assert body["hash"] != old_hash
    assert await served(gw, "via-api")
    metrics = await (await gw.get("/metrics")).text()
    assert f'llmgw_config_info{{hash="{body["hash"]}"}} 1.0' in metrics
    assert old_hash not in metrics
    again = await (await gw.post("/api/v1/config/reload")).json()
    assert again["result"] == "unchanged"


async def test_config_endpoint_redacts_every_secret(tmp_path: Path, start_watched: Starter) -> None:
    secrets = ["sk-prov-AAAA1111", "adm-BBBB2222", "team-CCCC3333", "redispw-DDDD", "hdr-EEEE"]
    path = tmp_path / "gateway.yaml"
    path.write_text(f"""
providers:
  openai:
    type: openai
    api_key: {secrets[0]}
    base_url: https://user:{secrets[3]}@proxy.example/v1
    headers: {{X-Api-Key: {secrets[4]}, X-Team: platform}}
  demo: {{type: mock, models: [echo]}}
cache: {{enabled: true, backend: redis, redis_url: "redis://:{secrets[3]}@127.0.0.1:6379/0"}}
auth:
  admin_key: {secrets[1]}
  keys:
    - {{name: team-a, key: {secrets[2]}}}
""")
    gw = await start_watched(path)
    response = await gw.get("/api/v1/config", headers={"Authorization": f"Bearer {secrets[1]}"})
    text = await response.text()
    assert response.status == 200
    for secret in secrets:
        assert secret not in text
    config = (await response.json())["config"]
    assert config["providers"]["openai"]["headers"]["X-Team"] == "platform"
    assert config["auth"]["keys"][0]["name"] == "team-a"
    assert config["providers"]["openai"]["base_url"].startswith("https://user:")


async def test_breaker_state_survives_reload(
    tmp_path: Path, start_watched: Starter, fake: FakeOpenAI
) -> None:
    fake.default = reply_error(500)
    text = f"""
providers:
  flaky: {{type: openai, base_url: "{fake.url}", models: [m], max_retries: 0}}
  demo: {{type: mock, models: [echo]}}
routing:
  circuit_breaker: {{failures: 1, cooldown: 60s}}
"""
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    gw = await start_watched(path)
    await gw.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
    path.write_text(text + "models:\n  extra: demo/echo\n")
    assert (await (await gw.post("/api/v1/config/reload")).json())["result"] == "success"
    status = await (await gw.get("/api/v1/providers/status")).json()
    assert status["providers"]["flaky"]["circuit"] == "open"
    assert status["providers"]["flaky"]["errors"] == 1


def versioned(n: int) -> str:
    """Config version n: alias `pick` goes to provider pN with upstream model model-N."""
    return f"""
providers:
  p{n}: {{type: mock, models: [unused-{n}], chunk_delay: 1ms}}
models:
  pick: p{n}/model-{n}
"""


async def test_load_during_50_rewrites_no_failure_no_mix(
    tmp_path: Path, start_watched: Starter
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(versioned(0))
    gw = await start_watched(path)
    failures: list[str] = []
    seen_versions: set[int] = set()
    done: list[int] = []

    async def one(i: int) -> None:
        try:
            await check(i)
        finally:
            done.append(i)

    async def check(i: int) -> None:
        stream = i % 3 == 0
        response = await gw.post(
            "/v1/chat/completions",
            json={"model": "pick", "messages": MESSAGES, "stream": stream},
        )
        body = await response.read()
        if response.status != 200:
            failures.append(f"{response.status} {body[:200]!r}")
            return
        provider = response.headers["X-LLMGW-Provider"]
        model = response.headers["X-LLMGW-Model"]
        version = int(provider[1:])
        if model != f"model-{version}" or f'"model":"model-{version}"'.encode() not in body:
            failures.append(f"mixed config: {provider} {model}")
        if stream and not body.endswith(b"data: [DONE]\n\n"):
            failures.append("stream cut short")
        seen_versions.add(version)

    async def load() -> None:
        queue = iter(range(500))

        async def worker() -> None:
            for i in queue:
                await one(i)

        await asyncio.gather(*(worker() for _ in range(8)))

    async def rewrite() -> None:
        """50 rewrites spread over the load: one every 8 finished requests."""
        for n in range(1, 51):
            while len(done) < n * 8:
                await asyncio.sleep(0.005)
            path.write_text(versioned(n))
            if n % 2:  # half through the admin API, half left to the file watcher
                await gw.post("/api/v1/config/reload")

    await asyncio.wait_for(asyncio.gather(load(), rewrite()), 60)
    assert failures == []
    assert len(seen_versions) >= 10  # the load really ran across many configs


async def test_stream_in_flight_survives_removal_of_its_provider(
    tmp_path: Path, start_watched: Starter, fake: FakeOpenAI
) -> None:
    gate = asyncio.Event()
    fake.then(reply_stream(chat_chunks(["before", "after"]), gate=gate, gate_after=2))
    path = tmp_path / "gateway.yaml"
    path.write_text(f'providers:\n  up: {{type: openai, base_url: "{fake.url}", models: [m]}}\n')
    gw = await start_watched(path)
    response = await gw.post(
        "/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}
    )
    await response.content.readuntil(b"\n\n")
    path.write_text(BASE)
    assert (await (await gw.post("/api/v1/config/reload")).json())["result"] == "success"
    assert not await served(gw, "m")
    gate.set()
    rest = await response.read()
    assert b"after" in rest and rest.endswith(b"data: [DONE]\n\n")
