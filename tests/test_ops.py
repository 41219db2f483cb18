"""Operations endpoints: health, readiness, metrics, provider status and admin auth."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from llmgw.api.ops import require_admin
from llmgw.config import parse
from llmgw.errors import AuthenticationFailed, Forbidden
from llmgw.server.appkeys import STORE
from llmgw.server.reload import ConfigStore
from tests.conftest import one_provider
from tests.fakes import FakeOpenAI, reply_error

MESSAGES = [{"role": "user", "content": "hi"}]


async def test_health_and_ready(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    assert await (await gw.get("/health")).json() == {"status": "ok"}
    ready = await gw.get("/ready")
    assert ready.status == 200


async def test_metrics_after_traffic(make_fake: Any, gateway: Any) -> None:
    first, second = await make_fake(), await make_fake()
    first.then(reply_error(503))
    config = f"""
providers:
  first: {{type: openai, base_url: "{first.url}", max_retries: 0}}
  second: {{type: openai, base_url: "{second.url}", models: [gpt-4o-mini]}}
models:
  chain: [first/a, second/b]
"""
    gw = await gateway(config)
    assert (
        await gw.post("/v1/chat/completions", json={"model": "chain", "messages": MESSAGES})
    ).status == 200
    await gw.post("/v1/chat/completions", json={"model": "made-up-name", "messages": MESSAGES})
    response = await gw.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    for line in (
        'llmgw_requests_total{cache="bypass",endpoint="chat",model="chain",provider="second",status="200"} 1.0',
        'llmgw_requests_total{cache="bypass",endpoint="chat",model="other",provider="none",status="404"} 1.0',
        'llmgw_upstream_attempts_total{outcome="status_503",provider="first"} 1.0',
        'llmgw_upstream_attempts_total{outcome="success",provider="second"} 1.0',
        'llmgw_fallbacks_total{model="chain"} 1.0',
        'llmgw_circuit_state{provider="first"} 0.0',
        "llmgw_inflight_requests 0.0",
    ):
        assert line in text, line
    for name in (
        "llmgw_request_duration_seconds_bucket",
        "llmgw_time_to_first_byte_seconds_count",
        "llmgw_overhead_seconds_sum",
        "llmgw_config_info{hash=",
    ):
        assert name in text
    assert "made-up-name" not in text


async def test_provider_status_reports_each_provider(fake: FakeOpenAI, gateway: Any) -> None:
    config = one_provider(fake.url) + "  off: {type: openai, api_key: ''}\n"
    gw = await gateway(config)
    await gw.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES})
    status = (await (await gw.get("/api/v1/providers/status")).json())["providers"]
    assert status["up"]["enabled"] is True
    assert status["up"]["requests"] == 1 and status["up"]["errors"] == 0
    assert status["up"]["circuit"] == "closed" and status["up"]["in_flight"] == 0
    assert status["up"]["latency_ms"] > 0
    assert status["off"] == {
        **status["off"],
        "enabled": False,
        "disabled_reason": "api_key is empty",
    }


async def test_admin_key_is_required_when_set(fake: FakeOpenAI, gateway: Any) -> None:
    config = one_provider(fake.url) + "auth:\n  admin_key: adm-secret\n"
    gw = await gateway(config)
    denied = await gw.get("/api/v1/providers/status")
    assert denied.status == 401
    assert (await denied.json())["error"]["type"] == "authentication_error"
    wrong = await gw.get("/api/v1/providers/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    ok = await gw.get("/api/v1/providers/status", headers={"Authorization": "Bearer adm-secret"})
    assert ok.status == 200


def _request_from(remote: str, admin_key: str | None, token: str | None = None) -> Any:
    """A request as if from ``remote`` (tests only listen on loopback, so a remote peer
    is simulated at the transport)."""
    text = "providers: {demo: {type: mock}}\n"
    if admin_key:
        text += f"auth: {{admin_key: {admin_key}}}\n"
    app = web.Application()
    app[STORE] = ConfigStore(SimpleNamespace(config=parse(text, environ={})))  # type: ignore[arg-type]

    class Transport:
        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return (remote, 5555) if name == "peername" else default

    headers = {"Host": "localhost:8080"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return make_mocked_request(
        "GET", "/api/v1/providers/status", app=app, headers=headers, transport=Transport()
    )


@pytest.mark.parametrize("remote", ["127.0.0.1", "::1"])
def test_without_admin_key_loopback_is_allowed(remote: str) -> None:
    require_admin(_request_from(remote, None))


def test_without_admin_key_remote_clients_are_refused() -> None:
    with pytest.raises(Forbidden):
        require_admin(_request_from("10.1.2.3", None))


def test_with_admin_key_even_loopback_needs_it() -> None:
    with pytest.raises(AuthenticationFailed):
        require_admin(_request_from("127.0.0.1", "k"))
    require_admin(_request_from("10.1.2.3", "k", token="k"))
