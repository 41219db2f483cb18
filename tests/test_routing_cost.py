"""What a routing decision costs a request (issue 17's 0.02 ms): an ordered alias or a
plain name pays no smart routing, the prompt estimate is worked out once, the
snapshot's precomputed candidates follow reloads, and the fast rounding of scores is
``round`` itself. (The CPU figures: ``python -m tests.benchmarks.routing_decision``.)"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import llmgw.api.routing
import llmgw.core
import llmgw.plan
from llmgw.app import create_app
from llmgw.config import parse
from llmgw.routing.scoring import round4
from tests.conftest import GatewayFactory
from tests.test_routing import Maker, chat, two


def counting(
    monkeypatch: pytest.MonkeyPatch, target: Any, name: str, calls: list[int] | None = None
) -> list[int]:
    """Count the calls of ``target.name`` (still called) in ``calls``."""
    calls = [] if calls is None else calls
    real = getattr(target, name)

    def counted(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(target, name, counted)
    return calls


async def test_an_ordered_alias_classifies_only_for_its_header(
    gateway: GatewayFactory, make_fake: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await make_fake(), await make_fake()
    config = two(a, b) + "models:\n  chain: [a/m-a, b/m-b]\n"
    gw = await gateway(config + "limits:\n  backend: memory\n  global: {rpm: 1}\n")
    calls = counting(monkeypatch, llmgw.api.routing, "classify")
    counting(monkeypatch, llmgw.plan, "classify", calls)  # where scoring classifies
    answered = await chat(gw, "chain")
    assert answered.headers["X-LLMGW-Routing"] == "ordered: a/m-a (complexity simple)"
    assert len(calls) == 1  # for the header, once
    refused = await chat(gw, "chain")  # routed, then over the limit: no header, no classifier
    assert refused.status == 429
    assert "X-LLMGW-Routing" not in refused.headers
    assert len(calls) == 1
    scored = await chat(gw, "a/m-a", headers={"x-routing-strategy": "cost"})  # asks to score
    assert scored.status == 429 and len(calls) == 2


async def test_the_prompt_estimate_is_worked_out_once_per_request(
    gateway: GatewayFactory, make_fake: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await make_fake(), await make_fake()
    gw = await gateway(two(a, b) + "limits:\n  backend: memory\n  global: {tpm: 100000}\n")
    estimates = counting(monkeypatch, llmgw.core, "_prompt_tokens")
    response = await chat(gw, "auto", stream=True)  # scoring and tpm both read it
    assert response.status == 200
    await response.read()
    assert len(estimates) == 1


async def test_precomputed_candidates_follow_a_reload(
    tmp_path: Path, make_fake: Maker, aiohttp_client: Any
) -> None:
    a, b = await make_fake(), await make_fake()
    text = two(a, b) + "prices:\n  m-a: {input: 5, output: 20}\n  m-b: {input: 0.1, output: 0.2}"
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    app = create_app(parse(text, str(path), {}), config_path=str(path), config_text=text)
    gw = await aiohttp_client(app)
    assert (await chat(gw, "cheap")).headers["X-LLMGW-Provider"] == "b"
    path.write_text(text.replace("m-a: {input: 5, output: 20}", "m-a: {input: 0.01, output: 0.01}"))
    assert (await (await gw.post("/api/v1/config/reload")).json())["result"] == "success"
    assert (await chat(gw, "cheap")).headers["X-LLMGW-Provider"] == "a"


def test_round4_is_round_to_four_places() -> None:
    rng = random.Random(17)
    samples = [rng.random() for _ in range(100_000)]
    samples += [k / 10_000 + 0.00005 for k in range(10_000)]  # halves, as near as floats go
    samples += [k / 10_000 for k in range(10_001)] + [0.0, 1.0, 0.12345, 0.99995, 0.00005]
    for value in samples:
        assert round4(value) == round(value, 4), value
