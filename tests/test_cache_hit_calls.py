"""The memo of hit calls (cache/hits.py): a repeated exact hit is answered without
parsing and keying its body again, and the memo never answers a request that is not
the same one (another key, other headers, another snapshot) nor a miss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmgw.app import create_app
from llmgw.config import parse
from llmgw.server.appkeys import CACHE
from tests.fakes import FakeOpenAI
from tests.provider_fakes import FakeAnthropic, anthropic_client

MESSAGES = [{"role": "user", "content": "cache me"}]
CHAT = {"model": "m", "messages": MESSAGES}
KEYS = "auth:\n  keys:\n    - {name: a, key: key-a}\n    - {name: b, key: key-b}\n"


def cached(url: str, scope: str = "global") -> str:
    return f"""
providers:
  up: {{type: openai, base_url: "{url}", models: [m], max_retries: 0}}
cache: {{enabled: true, ttl: 1h, scope: {scope}}}
{KEYS}"""


async def post(gw: Any, key: str = "key-a", **headers: str) -> tuple[str, bytes]:
    headers["Authorization"] = f"Bearer {key}"
    response = await gw.post("/v1/chat/completions", json=CHAT, headers=headers)
    return response.headers["X-Cache"], await response.read()


async def test_repeated_hits_come_from_the_memo_and_a_gone_entry_goes_upstream(
    fake: FakeOpenAI, gateway: Any
) -> None:
    gw = await gateway(cached(fake.url))
    memo = gw.server.app[CACHE].hit_calls
    first = await post(gw)
    assert first[0] == "MISS" and len(memo) == 0  # a miss's call is never kept
    hits = [await post(gw) for _ in range(3)]
    assert len(memo) == 1  # the first hit's call, used by the next ones
    assert hits == [("HIT", first[1])] * 3
    assert (await (await gw.post("/api/v1/cache/clear")).json())["cleared"] == 1
    again = await post(gw)  # remembered, but its entry is gone: a miss, parsed afresh
    assert again[0] == "MISS"
    assert [seen.body for seen in fake.seen] == [CHAT, CHAT]
    assert await post(gw) == ("HIT", again[1])


async def test_another_key_under_scope_key_is_not_answered_from_the_memo(
    fake: FakeOpenAI, gateway: Any
) -> None:
    gw = await gateway(cached(fake.url, "key"))
    assert [(await post(gw))[0] for _ in range(3)] == ["MISS", "HIT", "HIT"]
    assert (await post(gw, "key-b"))[0] == "MISS"
    assert len(fake.seen) == 2


async def test_other_extension_headers_are_not_answered_from_the_memo(
    fake: FakeOpenAI, gateway: Any
) -> None:
    gw = await gateway(cached(fake.url))
    assert [(await post(gw))[0] for _ in range(3)] == ["MISS", "HIT", "HIT"]
    assert (await post(gw, **{"x-cache": "false"}))[0] == "BYPASS"
    assert (await post(gw, **{"Cache-Control": "no-cache"}))[0] == "BYPASS"
    assert len(fake.seen) == 3


async def test_a_reload_to_scope_key_is_not_answered_from_the_memo(
    tmp_path: Path, fake: FakeOpenAI, aiohttp_client: Any
) -> None:
    text = cached(fake.url)
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    app = create_app(parse(text, str(path), {}), config_path=str(path), config_text=text)
    gw = await aiohttp_client(app)
    assert [(await post(gw))[0] for _ in range(3)] == ["MISS", "HIT", "HIT"]
    path.write_text(cached(fake.url, "key"))
    assert (await (await gw.post("/api/v1/config/reload")).json())["result"] == "success"
    assert (await post(gw))[0] == "MISS"  # the key's own entry now, not the shared one
    assert len(fake.seen) == 2


async def test_another_anthropic_beta_is_not_answered_from_the_memo(
    claude: FakeAnthropic, gateway: Any
) -> None:
    gw = await gateway(f"""
providers:
  claude: {{type: anthropic, base_url: "{claude.url}", api_key: sk-ant, models: [claude-haiku-4-5], max_retries: 0}}
cache: {{enabled: true, ttl: 1h}}
{KEYS}""")
    ask: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": MESSAGES}
    async with anthropic_client(gw, "key-a") as a:
        plain = [await a.messages.with_raw_response.create(**ask) for _ in range(3)]
        beta = await a.messages.with_raw_response.create(
            **ask, extra_headers={"anthropic-beta": "x"}
        )
    assert [r.headers["X-Cache"] for r in (*plain, beta)] == ["MISS", "HIT", "HIT", "MISS"]
    assert [seen.headers.get("anthropic-beta") for seen in claude.seen] == [None, "x"]


def test_the_memo_is_bounded_by_entries_and_bytes() -> None:
    from llmgw.cache.hits import HitCalls
    from llmgw.core import Call

    call = Call("chat", "m", False, dict(CHAT), b"{}")
    memo, snapshot = HitCalls(entries=3, size=100), object()
    for mark in range(3):
        memo.keep(mark, snapshot, call, f"k{mark}", 10)
    assert len(memo) == 3 and memo.find(2, snapshot) == (call, "k2")
    memo.keep(3, snapshot, call, "k3", 10)  # a fourth: starts afresh
    assert len(memo) == 1 and memo.find(0, snapshot) is None
    memo.keep(4, snapshot, call, "k4", 95)  # past the bytes: starts afresh
    assert len(memo) == 1 and memo.find(4, snapshot) == (call, "k4")
    memo.keep(5, snapshot, call, "k5", 101)  # larger than the whole memo: not kept
    assert memo.find(5, snapshot) is None
    assert memo.find(4, object()) is None  # another snapshot's
