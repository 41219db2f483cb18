"""An exact cache hit is looked up before routing: it takes no routing decision, is
charged to the limits of the target that answered it, and still gets the 404 or 400
a routed request would."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import llmgw.api.routing as routing_api
from llmgw.app import create_app
from llmgw.config import parse
from tests.conftest import GatewayFactory
from tests.fakes import FakeOpenAI
from tests.test_routing import chat, two

Maker = Callable[[], Awaitable[FakeOpenAI]]


async def test_a_hit_takes_no_routing_decision_and_says_the_misss_score(
    gateway: GatewayFactory, make_fake: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await make_fake(), await make_fake()
    gw = await gateway(two(a, b) + "cache: {enabled: true}\n")
    miss = await chat(gw, "auto")
    assert miss.headers["X-Cache"] == "MISS"
    said = miss.headers["X-LLMGW-Routing"]
    assert said.startswith("balanced: a/m-a (score ")
    planned: list[object] = []
    real = routing_api.plan
    monkeypatch.setattr(routing_api, "plan", lambda *args: planned.append(1) or real(*args))
    for _ in range(3):
        hit = await chat(gw, "auto")
        assert hit.headers["X-Cache"] == "HIT"
        assert hit.headers["X-LLMGW-Routing"] == said.replace("balanced:", "cache:")
    assert planned == []
    metrics = await (await gw.get("/metrics")).text()
    assert 'llmgw_routing_decisions_total{strategy="balanced",target="a/m-a"} 1.0' in metrics
    assert len(a.seen) == 1


async def test_a_hit_is_charged_to_the_model_that_answered_not_the_whole_chain(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    """A chain over two limited models charges both at admission (which one will answer
    is not known); a hit's answer is known, so only its model is charged."""
    a, b = await make_fake(), await make_fake()
    extra = "models:\n  pair: [a/m-a, b/m-b]\nlimits:\n  models:\n    m-b: {rpm: 1}\n"
    gw = await gateway(two(a, b) + "cache: {enabled: true}\n" + extra)
    first = await chat(gw, "pair")
    assert (first.status, first.headers["X-Cache"]) == (200, "MISS")
    assert first.headers["X-LLMGW-Provider"] == "a"
    hit = await chat(gw, "pair")  # m-b's one request a minute is spent: a hit still passes
    assert (hit.status, hit.headers["X-Cache"]) == (200, "HIT")
    other = await chat(gw, "pair", messages=[{"role": "user", "content": "another"}])
    assert other.status == 429  # ... a request that has to be routed does not
    assert "model 'm-b'" in (await other.json())["error"]["message"]


async def test_a_hit_still_gets_the_400_for_an_unknown_preferred_provider(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    gw = await gateway(two(a, b) + "cache: {enabled: true}\n")
    assert (await chat(gw, "auto")).headers["X-Cache"] == "MISS"
    refused = await chat(gw, "auto", headers={"x-prefer-provider": "nobody"})
    assert refused.status == 400
    assert "unknown provider 'nobody'" in (await refused.json())["error"]["message"]


async def test_a_hit_for_a_model_the_reloaded_config_dropped_is_a_404(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    path = tmp_path / "gateway.yaml"
    base = "providers:\n  demo: {type: mock, models: [echo]}\ncache: {enabled: true}\n"
    path.write_text(base + "models:\n  old: demo/echo\n")
    text = path.read_text()
    gw = await aiohttp_client(
        create_app(parse(text, str(path), {}), config_path=str(path), config_text=text)
    )
    ask = {"model": "old", "messages": [{"role": "user", "content": "hi"}]}
    first = await gw.post("/v1/chat/completions", json=ask)
    assert first.headers["X-Cache"] == "MISS"
    assert (await gw.post("/v1/chat/completions", json=ask)).headers["X-Cache"] == "HIT"
    path.write_text(base + "models:\n  new: demo/echo\n")
    reloaded = await gw.post("/api/v1/config/reload")
    assert reloaded.status == 200, await reloaded.text()
    gone = await gw.post("/v1/chat/completions", json=ask)
    assert gone.status == 404
    assert (await gone.json())["error"]["code"] == "model_not_found"
