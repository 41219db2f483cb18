"""Monthly budgets: refusal after the crossing request, alerts once per fraction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from llmgw.config import ConfigError, parse
from tests.conftest import CLIENT_KEY, PROVIDER_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, webhook_receiver

ADMIN = {"Authorization": "Bearer admin-secret-1"}


def budget_config(
    url: str,
    db: Path,
    *,
    key_budget: str | None,
    extra: str = "",
    key_limits: str | None = None,
    provider_extra: str = "",
) -> str:
    # FakeOpenAI reports 9 + 3 tokens: at $1000/M each request costs $0.012.
    # The key team-a: ``key_budget``, ``key_limits`` its entries when given.
    key = f"name: team-a, key: {CLIENT_KEY}"
    if key_budget is not None:
        key += f", budget: {key_budget}"
    if key_limits is not None:
        key += f", limits: {key_limits}"
    return f"""
providers:
  up: {{type: openai, base_url: {url}, api_key: {PROVIDER_KEY}, models: [gpt-4o-mini]{provider_extra}}}
prices:
  gpt-4o-mini: {{input: 1000, output: 1000}}
database: {{url: "sqlite:///{db}"}}
auth:
  admin_key: admin-secret-1
  keys:
    - {{{key}}}
{extra}
"""


async def test_a_cent_refuses_the_request_after_the_one_that_crossed_it(
    gateway: GatewayFactory, fake: FakeOpenAI, sdk: Any, tmp_path: Path
) -> None:
    gw = await gateway(budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 0.01}"))
    client = sdk(gw)
    first = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert first.usage is not None and first.usage.total_tokens == 12  # $0.012 > $0.01
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    error = refused.value
    assert error.code == "budget_exceeded" and error.type == "insufficient_quota"
    assert error.response.headers["x-should-retry"] == "false"
    assert len(fake.seen) == 1  # nothing went upstream
    report = await (await gw.get("/api/v1/budget", headers=ADMIN)).json()
    (entry,) = [b for b in report["budgets"] if b["scope"] == "key:team-a"]
    assert entry["spent_usd"] == pytest.approx(0.012) and entry["remaining_usd"] == 0
    assert entry["limit_usd"] == 0.01


async def test_alerts_fire_once_each_at_80_and_95_percent(
    gateway: GatewayFactory, fake: FakeOpenAI, aiohttp_server: Any, sdk: Any, tmp_path: Path
) -> None:
    url, received = await webhook_receiver(aiohttp_server)
    extra = f"budgets:\n  alerts: [0.8, 0.95]\n  webhook: {url}"
    gw = await gateway(
        budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 0.1}", extra=extra)
    )
    client = sdk(gw)
    served = 0
    for _ in range(12):  # $0.012 each: 0.084 crosses 80 %, 0.096 95 %, 0.108 the limit
        try:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
            served += 1
        except openai.RateLimitError:
            break
    assert served == 9
    metrics = await (await gw.get("/metrics", headers=ADMIN)).text()
    assert 'llmgw_budget_alerts_total{fraction="0.8",scope="key"} 1.0' in metrics
    assert 'llmgw_budget_alerts_total{fraction="0.95",scope="key"} 1.0' in metrics
    for _ in range(100):  # the webhook is posted off the request path
        if len(received) >= 2:
            break
        await __import__("asyncio").sleep(0.05)
    assert [(e["scope"], e["fraction"]) for e in received] == [
        ("key:team-a", 0.8),
        ("key:team-a", 0.95),
    ]
    report = await (await gw.get("/api/v1/budget", headers=ADMIN)).json()
    (entry,) = [b for b in report["budgets"] if b["scope"] == "key:team-a"]
    assert entry["alerts_fired"] == [0.8, 0.95]


async def test_an_alert_fires_on_the_request_that_spends_exactly_its_level(
    gateway: GatewayFactory, fake: FakeOpenAI, sdk: Any, tmp_path: Path
) -> None:
    """12 tokens of a 60-token global budget is 20 % to the token: the 0.2 alert is
    due on the first request, though the key's own budget is far from any level."""
    extra = "budgets:\n  alerts: [0.2, 0.9]\n  global: {monthly_tokens: 60}"
    gw = await gateway(
        budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 100}", extra=extra)
    )
    await sdk(gw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    metrics = await (await gw.get("/metrics", headers=ADMIN)).text()
    assert 'llmgw_budget_alerts_total{fraction="0.2",scope="global"} 1.0' in metrics
    assert 'llmgw_budget_alerts_total{fraction="0.2",scope="key"}' not in metrics
    assert 'llmgw_budget_alerts_total{fraction="0.9",scope="global"}' not in metrics


async def test_x_budget_key_has_a_budget_of_its_own(
    gateway: GatewayFactory, fake: FakeOpenAI, sdk: Any, tmp_path: Path
) -> None:
    extra = "budgets:\n  per_budget_key: {monthly_tokens: 10}"
    gw = await gateway(
        budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 100}", extra=extra)
    )
    client = sdk(gw)
    ask: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    await client.chat.completions.create(**ask, extra_headers={"x-budget-key": "user-1"})
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(**ask, extra_headers={"x-budget-key": "user-1"})
    assert "budget key 'user-1'" in refused.value.message
    await client.chat.completions.create(**ask, extra_headers={"x-budget-key": "user-2"})


def test_a_negative_budget_is_a_config_error() -> None:
    text = """
providers: {demo: {type: mock}}
auth:
  keys: [{name: a, key: k, budget: {monthly_usd: -1}}]
"""
    with pytest.raises(ConfigError) as failed:
        parse(text, environ={})
    assert "auth.keys.0.budget.monthly_usd" in str(failed.value.errors)


async def test_a_cache_hit_is_checked_against_the_budget_and_costs_nothing(
    gateway: GatewayFactory, fake: FakeOpenAI, sdk: Any, tmp_path: Path
) -> None:
    """A hit reserves nothing (it is known to cost nothing), but is refused exactly
    when any request would be: once a scope is spent, a hit is refused too."""
    extra = "cache: {enabled: true, backend: memory}"
    gw = await gateway(
        budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 0.02}", extra=extra)
    )
    client = sdk(gw)
    ask: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    first = await client.chat.completions.with_raw_response.create(**ask)
    assert first.headers["x-cache"] == "MISS"  # $0.012 of $0.02
    for _ in range(3):  # hits: served, nothing spent
        hit = await client.chat.completions.with_raw_response.create(**ask)
        assert hit.headers["x-cache"] == "HIT"
    report = await (await gw.get("/api/v1/budget", headers=ADMIN)).json()
    (entry,) = [b for b in report["budgets"] if b["scope"] == "key:team-a"]
    assert entry["spent_usd"] == pytest.approx(0.012)
    await client.chat.completions.create(**{**ask, "max_tokens": 7})  # a miss: $0.024 spent
    assert len(fake.seen) == 2
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(**ask)  # in the cache, but the budget is spent
    assert refused.value.code == "budget_exceeded"
    assert len(fake.seen) == 2
