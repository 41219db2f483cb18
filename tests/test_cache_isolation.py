"""What one client key can do to the answers another is served from a shared cache
(``cache.scope: global``): forwarded headers are part of the key, and only a key
allowed to (``cache_refresh``) may replace a shared entry with ``no-cache``."""

from __future__ import annotations

from typing import Any

from llmgw.cache.keys import cache_key
from llmgw.core import Call
from tests.fakes import FakeOpenAI, chat_completion, reply_json
from tests.provider_fakes import (
    FakeAnthropic,
    anthropic_client,
    anthropic_message,
)

MESSAGES = [{"role": "user", "content": "cache me"}]
KEYS = """auth:
  keys:
    - {name: a, key: key-a}
    - {name: b, key: key-b}
    - {name: ops, key: key-ops, cache_refresh: true}
"""


def claude_cached(url: str, extra: str = "") -> str:
    return f"""
providers:
  claude: {{type: anthropic, base_url: "{url}", api_key: sk-ant, models: [claude-haiku-4-5], max_retries: 0}}
cache: {{enabled: true, ttl: 1h, scope: global}}
{KEYS}{extra}"""


def openai_cached(url: str, extra: str = "") -> str:
    return f"""
providers:
  up: {{type: openai, base_url: "{url}", models: [m], max_retries: 0}}
cache: {{enabled: true, ttl: 1h}}
{extra}"""


def test_forwarded_headers_are_in_the_key_by_lower_case_name() -> None:
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 5}

    def key(headers: dict[str, str]) -> str:
        return cache_key(Call("messages", "m", False, body, b"", headers), None)

    assert key({}) != key({"anthropic-beta": "x"})
    assert key({"anthropic-beta": "x"}) != key({"anthropic-beta": "y"})
    assert key({"anthropic-beta": "x"}) == key({"Anthropic-Beta": "x"})
    assert key({"anthropic-version": "2023-06-01"}) != key({"anthropic-beta": "2023-06-01"})
    assert key({"anthropic-version": "2023-06-01", "anthropic-beta": "x"}) == key(
        {"anthropic-beta": "x", "anthropic-version": "2023-06-01"}
    )


async def test_a_beta_answer_is_not_served_to_another_key(
    claude: FakeAnthropic, gateway: Any
) -> None:
    claude.then(
        reply_json(anthropic_message("with the beta", "claude-haiku-4-5")),
        reply_json(anthropic_message("without it", "claude-haiku-4-5")),
    )
    gw = await gateway(claude_cached(claude.url))
    ask: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": MESSAGES}
    async with anthropic_client(gw, "key-a") as a, anthropic_client(gw, "key-b") as b:
        beta = await a.messages.with_raw_response.create(
            **ask, extra_headers={"anthropic-beta": "x"}
        )
        plain = await b.messages.with_raw_response.create(**ask)
        again = await a.messages.with_raw_response.create(
            **ask, extra_headers={"anthropic-beta": "x"}
        )
        plain_again = await b.messages.with_raw_response.create(**ask)
    cache = [r.headers["X-Cache"] for r in (beta, plain, again, plain_again)]
    texts = [(await r.parse()).content[0].text for r in (beta, plain, again, plain_again)]
    assert cache == ["MISS", "MISS", "HIT", "HIT"]
    assert texts == ["with the beta", "without it", "with the beta", "without it"]
    assert [seen.headers.get("anthropic-beta") for seen in claude.seen] == ["x", None]


async def post(gw: Any, key: str, **headers: str) -> tuple[str, str]:
    body = {"model": "m", "messages": MESSAGES}
    headers["Authorization"] = f"Bearer {key}"
    response = await gw.post("/v1/chat/completions", json=body, headers=headers)
    answer = await response.json()
    return response.headers["X-Cache"], answer["choices"][0]["message"]["content"]


def answers(fake: FakeOpenAI, *texts: str) -> None:
    fake.then(*(reply_json(chat_completion(text, "m")) for text in texts))


async def test_no_cache_without_the_right_does_not_replace_a_shared_entry(
    fake: FakeOpenAI, gateway: Any
) -> None:
    answers(fake, "original", "fresh for b", "fresh for b again")
    gw = await gateway(openai_cached(fake.url, KEYS))
    assert await post(gw, "key-a") == ("MISS", "original")
    assert await post(gw, "key-b", **{"Cache-Control": "no-cache"}) == ("BYPASS", "fresh for b")
    assert await post(gw, "key-b", **{"Cache-Control": "max-age=0"}) == (
        "BYPASS",
        "fresh for b again",
    )
    assert await post(gw, "key-a") == ("HIT", "original")
    assert await post(gw, "key-b") == ("HIT", "original")
    assert len(fake.seen) == 3


async def test_no_cache_from_a_key_with_the_right_refreshes_the_entry(
    fake: FakeOpenAI, gateway: Any
) -> None:
    answers(fake, "original", "refreshed")
    gw = await gateway(openai_cached(fake.url, KEYS))
    assert await post(gw, "key-a") == ("MISS", "original")
    assert await post(gw, "key-ops", **{"Cache-Control": "no-cache"}) == ("BYPASS", "refreshed")
    assert await post(gw, "key-a") == ("HIT", "refreshed")
    assert await post(gw, "key-b") == ("HIT", "refreshed")


async def test_no_cache_under_scope_key_refreshes_the_keys_own_entry(
    fake: FakeOpenAI, gateway: Any
) -> None:
    answers(fake, "a's", "b's", "a's refreshed")
    gw = await gateway(openai_cached(fake.url, KEYS).replace("ttl: 1h", "ttl: 1h, scope: key"))
    assert await post(gw, "key-a") == ("MISS", "a's")
    assert await post(gw, "key-b") == ("MISS", "b's")
    assert await post(gw, "key-a", **{"Cache-Control": "no-cache"}) == ("BYPASS", "a's refreshed")
    assert await post(gw, "key-a") == ("HIT", "a's refreshed")
    assert await post(gw, "key-b") == ("HIT", "b's")


async def test_an_open_gateway_refreshes_on_no_cache(fake: FakeOpenAI, gateway: Any) -> None:
    answers(fake, "original", "refreshed")
    gw = await gateway(openai_cached(fake.url))
    assert await post(gw, "any") == ("MISS", "original")
    assert await post(gw, "any", **{"Cache-Control": "no-cache"}) == ("BYPASS", "refreshed")
    assert await post(gw, "any") == ("HIT", "refreshed")
