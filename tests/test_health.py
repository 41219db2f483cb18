"""Health and discovery (SPEC §9): /v1/health/*, GET / and GET /v1, the
model_not_found details, and a reload that finds the file unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmgw import __version__
from llmgw.app import create_app
from llmgw.config import parse
from tests.fakes import FakeOpenAI, reply_error

ADMIN = {"Authorization": "Bearer adm"}


def text(url: str) -> str:
    return f"""
providers:
  up: {{type: openai, base_url: {url}, api_key: k, models: [gpt-4o-mini], max_retries: 0}}
  demo: {{type: mock, models: [echo]}}
  off: {{type: mistral, api_key: "", models: [m]}}
models:
  fast: [up/gpt-4o-mini, demo/echo]
cache: {{enabled: true}}
auth: {{admin_key: adm}}
"""


async def test_live_ready_and_discovery(gateway: Any, fake: FakeOpenAI) -> None:
    gw = await gateway(text(fake.url))
    assert (await gw.get("/v1/health/live")).status == 200
    ready = await gw.get("/v1/health/ready")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"
    for path in ("/", "/v1"):
        body = await (await gw.get(path)).json()
        assert body["name"] == "llmgw" and body["version"] == __version__
        served = {e["path"]: e["methods"] for e in body["endpoints"]}
        assert served["/api/chat/stream"] == ["GET", "POST"]
        assert "/v1/chat/completions" in served and "/v1/health/detailed" in served


async def test_detailed_and_metrics_are_admin_and_report(gateway: Any, fake: FakeOpenAI) -> None:
    gw = await gateway(text(fake.url))
    for path in ("/v1/health/detailed", "/v1/health/metrics"):
        assert (await gw.get(path)).status == 401
    fake.then(reply_error(500))
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(2):  # a fallback to the mock, then a hit
        assert (await gw.post("/v1/chat/completions", json=body)).status == 200
    await gw.post("/v1/chat/completions", json={**body, "model": "up/gpt-4o-mini"})
    detailed = await (await gw.get("/v1/health/detailed", headers=ADMIN)).json()
    up = detailed["providers"]["up"]
    assert up["enabled"] is True and up["circuit"] == "closed"
    assert up["requests"] == 2 and up["errors"] == 1 and up["error_rate"] == 0.5
    assert isinstance(up["last_error"], str) and up["last_error"]
    assert isinstance(up["last_error_at"], float)
    assert (
        up["latency_ms"]["p50"] is not None and up["latency_ms"]["p95"] >= up["latency_ms"]["p50"]
    )
    assert detailed["providers"]["off"]["enabled"] is False
    assert detailed["redis"] == {"cache": None, "limits": None}
    assert detailed["database"]["status"] == "not configured"
    totals = await (await gw.get("/v1/health/metrics", headers=ADMIN)).json()
    assert totals["requests"] == 3 and totals["errors"] == 0
    assert totals["cache"]["hits"] == 1 and totals["cache"]["hit_ratio"] == 0.3333
    assert totals["latency_ms"]["p50"] is not None
    assert (
        totals["tokens"]["total"] > 0 and totals["cost_usd"] > 0.0
    )  # gpt-4o-mini has a known price


async def test_detailed_reports_an_unreachable_redis(gateway: Any, fake: FakeOpenAI) -> None:
    config = text(fake.url) + "limits: {backend: redis, redis_url: 'redis://127.0.0.1:1'}\n"
    gw = await gateway(config)
    detailed = await (await gw.get("/v1/health/detailed", headers=ADMIN)).json()
    assert detailed["redis"]["limits"]["reachable"] is False


async def test_model_not_found_lists_available_models(gateway: Any, fake: FakeOpenAI) -> None:
    gw = await gateway(text(fake.url))
    response = await gw.post(
        "/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    error = (await response.json())["error"]
    assert response.status == 404 and error["code"] == "model_not_found"
    assert error["details"] == {
        "requested_model": "nope",
        "available_models": ["fast", "auto", "cheap", "gpt-4o-mini", "echo"],
    }


async def test_unchanged_reload_is_recorded(tmp_path: Path, aiohttp_client: Any) -> None:
    path = tmp_path / "gateway.yaml"
    source = "providers:\n  demo: {type: mock, models: [echo]}\nauth: {admin_key: adm}\n"
    path.write_text(source)
    app = create_app(parse(source, str(path), {}), config_path=str(path), config_text=source)
    gw = await aiohttp_client(app)
    answer = await (await gw.post("/api/v1/config/reload", headers=ADMIN)).json()
    assert answer["result"] == "unchanged"
    config = await (await gw.get("/api/v1/config", headers=ADMIN)).json()
    assert config["last_reload"]["result"] == "unchanged"
    assert config["last_reload"]["trigger"] == "api"
    metrics = await (await gw.get("/metrics", headers=ADMIN)).text()
    assert 'llmgw_config_reloads_total{result="unchanged"} 1.0' in metrics
