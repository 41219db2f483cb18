"""rpm / tpm / concurrency at each scope on the memory backend (SPEC §3, §5)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from llmgw.app import create_app
from llmgw.config import parse
from llmgw.config.schema import LimitSpec
from llmgw.limits.front import format_reset
from llmgw.limits.memory import MemoryCounters
from llmgw.limits.types import TICKS, Scope
from llmgw.server.appkeys import LIMITER
from tests.conftest import CLIENT_KEY, one_provider
from tests.fakes import FakeOpenAI, chat_chunks, chat_completion, reply_stream

# 40 characters: the prompt's estimate is 10 tokens; the fake's usage says 9 + 3.
PROMPT = "x" * 40
MESSAGES = [{"role": "user", "content": PROMPT}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


def limited(url: str, *, key: str = "", model: str = "", everyone: str = "") -> str:
    """One provider, one client key, and limits at the scopes given (YAML flow maps)."""
    key_limits = f", limits: {key}" if key else ""
    text = (
        one_provider(url)
        + f"auth:\n  keys:\n    - {{name: team-a, key: {CLIENT_KEY}{key_limits}}}\n"
    )
    text += "limits:\n  backend: memory\n"
    if model:
        text += f"  models:\n    gpt-4o-mini: {model}\n"
    if everyone:
        text += f"  global: {everyone}\n"
    return text


class Clock:
    """The memory limiter's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def held(gate: asyncio.Event) -> Any:
    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await gate.wait()
        return web.json_response(chat_completion(model=body["model"]))

    return behave


async def post(gw: Any, body: dict[str, Any] = CHAT) -> Any:
    response = await gw.post("/v1/chat/completions", json=body, headers=AUTH)
    await response.read()
    return response


@pytest.mark.parametrize("scope", ["key", "model", "everyone"])
async def test_rpm_at_each_scope(fake: FakeOpenAI, gateway: Any, scope: str) -> None:
    gw = await gateway(limited(fake.url, **{scope: "{rpm: 3}"}))
    remaining = []
    for _ in range(3):
        response = await post(gw)
        assert response.status == 200
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        assert "x-ratelimit-limit-tokens" not in response.headers
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    refused = await post(gw)
    assert refused.status == 429
    error = (await refused.json())["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert len(fake.seen) == 3
    metrics = await (await gw.get("/metrics")).text()
    label = "global" if scope == "everyone" else scope
    assert f'llmgw_ratelimit_rejections_total{{scope="{label}"}} 1.0' in metrics


async def test_model_limit_applies_to_that_model_only(fake: FakeOpenAI, gateway: Any) -> None:
    config = limited(fake.url, model="{rpm: 1}").replace(
        "models: [gpt-4o-mini]", "models: [gpt-4o-mini, gpt-4o]"
    )
    gw = await gateway(config)
    assert (await post(gw)).status == 200
    assert (await post(gw)).status == 429
    other = await post(gw, {"model": "gpt-4o", "messages": MESSAGES})
    assert other.status == 200
    assert "x-ratelimit-limit-requests" not in other.headers


async def test_rpm_window_slides(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(limited(fake.url, key="{rpm: 2}"))
    clock = gw.app[LIMITER].memory.clock = Clock()
    assert (await post(gw)).status == 200  # t = 0
    clock.now += 30
    assert (await post(gw)).status == 200  # t = 30
    clock.now += 15
    refused = await post(gw)  # t = 45: the first leaves the window at t = 60
    assert (refused.status, refused.headers["Retry-After"]) == (429, "15")
    assert refused.headers["x-ratelimit-reset-requests"] == "15s"
    clock.now += 15.001
    admitted = await post(gw)  # t = 60.001: one slot, not a fresh minute
    assert admitted.status == 200
    assert admitted.headers["x-ratelimit-remaining-requests"] == "0"
    assert admitted.headers["x-ratelimit-reset-requests"] == "29.999s"
    assert (await post(gw)).status == 429  # refusals were not counted: still 2 in window


@pytest.mark.parametrize("scope", ["key", "model", "everyone"])
async def test_tpm_reserves_prompt_then_counts_usage(
    fake: FakeOpenAI, gateway: Any, scope: str
) -> None:
    gw = await gateway(limited(fake.url, **{scope: "{tpm: 30}"}))
    first = await post(gw)  # reserves 10, then counts 9 + 3
    assert first.status == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "30"
    assert first.headers["x-ratelimit-remaining-tokens"] == "20"
    assert "x-ratelimit-limit-requests" not in first.headers
    second = await post(gw)  # 12 counted + 10 reserved
    assert second.headers["x-ratelimit-remaining-tokens"] == "8"
    refused = await post(gw)  # 24 + 10 > 30
    assert refused.status == 429
    assert "tokens per minute" in (await refused.json())["error"]["message"]
    assert refused.headers["x-ratelimit-remaining-tokens"] == "6"


async def test_tpm_counts_streamed_usage(fake: FakeOpenAI, gateway: Any) -> None:
    fake.then(reply_stream(chat_chunks(["a", "b"])))
    gw = await gateway(limited(fake.url, key="{tpm: 100}"))
    stream = await post(gw, {**CHAT, "stream": True})
    assert stream.headers["x-ratelimit-remaining-tokens"] == "90"  # set before the stream began
    after = await post(gw)
    assert after.headers["x-ratelimit-remaining-tokens"] == str(100 - 12 - 10)


@pytest.mark.parametrize("scope", ["key", "model", "everyone"])
async def test_concurrency_at_each_scope(fake: FakeOpenAI, gateway: Any, scope: str) -> None:
    gate = asyncio.Event()
    fake.then(held(gate))
    gw = await gateway(limited(fake.url, **{scope: "{concurrency: 1}"}))
    first = asyncio.create_task(post(gw))
    while not fake.seen:
        await asyncio.sleep(0.005)
    refused = await post(gw)
    assert (refused.status, refused.headers["Retry-After"]) == (429, "1")
    assert "in flight" in (await refused.json())["error"]["message"]
    gate.set()
    assert (await first).status == 200
    assert (await post(gw)).status == 200  # the slot was given back


async def test_failed_request_gives_back_its_slot(gateway: Any) -> None:
    # Nothing listens there: every attempt fails, the request answers 502.
    config = limited("http://127.0.0.1:9/v1", key="{concurrency: 1, tpm: 15}")
    gw = await gateway(
        config.replace("models: [gpt-4o-mini]", "models: [gpt-4o-mini]\n    max_retries: 0")
    )
    for _ in range(3):
        assert (await post(gw)).status == 502  # no slot or token left behind


async def test_most_constrained_scope_is_reported(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(
        limited(
            fake.url,
            key="{rpm: 100, tpm: 1000}",
            model="{rpm: 5, tpm: 100000}",
            everyone="{rpm: 50, tpm: 25}",
        )
    )
    response = await post(gw)
    assert response.headers["x-ratelimit-limit-requests"] == "5"
    assert response.headers["x-ratelimit-remaining-requests"] == "4"
    assert response.headers["x-ratelimit-limit-tokens"] == "25"
    assert response.headers["x-ratelimit-remaining-tokens"] == "15"


async def test_on_a_tie_the_scope_that_resets_later_is_reported(
    fake: FakeOpenAI, gateway: Any
) -> None:
    """Two scopes with as many requests left: the headers show the one whose oldest
    request leaves later (and a later tie-breaker replaces an earlier one)."""
    config = limited(fake.url, key="{rpm: 4}", model="{rpm: 3}").replace(
        "models: [gpt-4o-mini]", "models: [gpt-4o-mini, gpt-4o]"
    )
    gw = await gateway(config)
    clock = gw.app[LIMITER].memory.clock = Clock()
    first = await post(gw, {"model": "gpt-4o", "messages": MESSAGES})  # the key's only
    assert first.headers["x-ratelimit-limit-requests"] == "4"
    clock.now += 10
    tied = await post(gw)  # key: 2 of 4 (oldest 10 s ago); model: 1 of 3 (oldest now)
    assert tied.headers["x-ratelimit-remaining-requests"] == "2"
    assert tied.headers["x-ratelimit-limit-requests"] == "3"
    assert tied.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert tied.headers["X-RateLimit-Limit"] == "3"


async def test_a_tokens_only_limit_fills_the_plain_headers(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(limited(fake.url, key="{tpm: 30}"))
    gw.app[LIMITER].memory.clock = Clock()  # on a tick: the window resets in 60 s exactly
    before = time.time()
    response = await post(gw)
    assert response.headers["X-RateLimit-Limit"] == "30"
    assert response.headers["X-RateLimit-Remaining"] == "20"
    assert before + 59 <= int(response.headers["X-RateLimit-Reset"]) <= time.time() + 61
    assert response.headers["x-ratelimit-reset-tokens"] == "1m0s"
    assert "x-ratelimit-remaining-requests" not in response.headers


async def test_limits_headers_on_error_answers_of_the_limited(gateway: Any) -> None:
    config = limited("http://127.0.0.1:9/v1", key="{rpm: 4}")
    gw = await gateway(
        config.replace("models: [gpt-4o-mini]", "models: [gpt-4o-mini]\n    max_retries: 0")
    )
    response = await post(gw)
    assert response.status == 502
    assert response.headers["x-ratelimit-remaining-requests"] == "3"


async def test_sdk_raises_rate_limit_error(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    gw = await gateway(limited(fake.url, key="{rpm: 1}"))
    client = sdk(gw)
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["x-ratelimit-limit-requests"] == "1"
    assert int(caught.value.response.headers["retry-after"]) >= 59


async def test_sdk_retry_waits_for_retry_after(fake: FakeOpenAI, gateway: Any) -> None:
    """The SDK's own backoff would be under 0.5 s; the limit's Retry-After says 1 s."""
    arrivals: list[float] = []

    async def timed(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        arrivals.append(time.monotonic())
        return await fake.echo(request, body)

    fake.default = timed
    gw = await gateway(limited(fake.url, key="{rpm: 1}"))  # the limiter's clock is monotonic
    client = openai.AsyncOpenAI(base_url=str(gw.make_url("/v1")), api_key=CLIENT_KEY, max_retries=1)
    try:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        # Let 59.5 s of the window pass at once: the next slot opens 0.5 s from now.
        offset = 59.5
        gw.app[LIMITER].memory.clock = lambda: time.monotonic() + offset
        window_ends = arrivals[0] + 60 - offset
        asked = time.monotonic()
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    finally:
        await client.close()
    assert raw.http_response.status_code == 200
    assert raw.retries_taken == 1
    assert len(arrivals) == 2
    assert arrivals[1] >= window_ends  # the retry came after the slot opened
    assert arrivals[1] - asked >= 0.9  # and after the Retry-After of 1 s, not the SDK's backoff


async def test_changed_limit_applies_at_once_and_counts_survive(
    fake: FakeOpenAI, aiohttp_client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    text = limited(fake.url, key="{rpm: 5}")
    path.write_text(text)
    gw = await aiohttp_client(
        create_app(parse(text, environ={}), config_path=str(path), config_text=text)
    )
    for _ in range(2):
        assert (await post(gw)).status == 200
    path.write_text(limited(fake.url, key="{rpm: 3}"))
    reload = await gw.post("/api/v1/config/reload")
    assert (await reload.json())["result"] == "success"
    last = await post(gw)
    assert (last.status, last.headers["x-ratelimit-remaining-requests"]) == (200, "0")
    assert (await post(gw)).status == 429


def test_reset_format() -> None:
    assert [format_reset(s) for s in (0, 0.0004, 0.02, 1, 8.64, 59.9995, 60, 360, 3725.5)] == [
        "0ms",
        "1ms",
        "20ms",
        "1s",
        "8.64s",
        "1m0s",
        "1m0s",
        "6m0s",
        "1h2m5.5s",
    ]


def test_busy_window_stays_small_and_exact_to_a_tick() -> None:
    """A scope's counters do not grow with its traffic: 20,000 requests over two
    minutes keep at most one entry per tenth of a second, and count exactly."""
    clock = Clock()
    counters = MemoryCounters(clock)
    scopes = (Scope("global", "global", LimitSpec(rpm=1_000_000, tpm=10**9)),)
    for _ in range(20_000):
        verdict = counters.admit(scopes, 5)
        counters.settle(scopes, verdict.tick, 5, 7)
        clock.now += 0.006  # 166 requests a second
    window = counters.scopes["global"].requests
    assert len(window.ticks) <= TICKS
    assert window.total == 10_000  # the last 60 s: 60 / 0.006
    assert verdict.rate is not None and verdict.rate.requests is not None
    assert verdict.rate.requests[0] == 1_000_000 - 10_000
    assert counters.scopes["global"].tokens.total == 7 * 10_000


def test_usage_settled_after_its_tick_left_counts_from_now() -> None:
    clock = Clock()
    counters = MemoryCounters(clock)
    scopes = (Scope("key", "key:a", LimitSpec(tpm=1000)),)
    early = counters.admit(scopes, 10)
    clock.now += 61  # a stream that outlived the window
    counters.settle(scopes, early.tick, 10, 25)
    assert counters.scopes["key:a"].tokens.total == 15  # the reservation left; the rest is new
    assert counters.admit(scopes, 986).binding == 0  # 15 + 986 > 1000


def test_settling_corrects_the_tick_reserved_in_whether_or_not_it_is_the_last() -> None:
    """A reservation is corrected in its own tick: the last one (the request ended
    within it), or an earlier one (later requests opened newer ticks); usage beyond
    it never lands in the tick of the settlement while its own tick is in the window."""
    clock = Clock()
    counters = MemoryCounters(clock)
    scopes = (Scope("key", "key:a", LimitSpec(tpm=10_000)),)
    first = counters.admit(scopes, 10)
    counters.settle(scopes, first.tick, 10, 30)  # still its tick: the last one
    window = counters.scopes["key:a"].tokens
    assert [list(entry) for entry in window.ticks] == [[first.tick, 30]]
    clock.now += 0.5
    second = counters.admit(scopes, 5)
    clock.now += 0.5
    third = counters.admit(scopes, 7)
    counters.settle(scopes, second.tick, 5, 12)  # a middle tick
    counters.settle(scopes, first.tick, 30, 30)  # nothing to correct
    counters.settle(scopes, third.tick, 7, 1)
    assert [list(entry) for entry in window.ticks] == [
        [first.tick, 30],
        [second.tick, 12],
        [third.tick, 1],
    ]
    assert window.total == 43
