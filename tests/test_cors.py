"""CORS from server.cors_origins: preflights and headers on actual responses."""

from __future__ import annotations

from typing import Any

CONFIG = """
server:
  cors_origins: [https://app.example.com]
providers:
  demo: {type: mock, models: [echo]}
"""
BODY = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


async def test_preflight_from_allowed_origin(gateway: Any) -> None:
    gw = await gateway(CONFIG)
    response = await gw.options(
        "/v1/chat/completions",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "authorization, content-type"


async def test_preflight_from_other_origin_is_refused(gateway: Any) -> None:
    gw = await gateway(CONFIG)
    response = await gw.options(
        "/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_actual_response_carries_cors_headers_streams_included(gateway: Any) -> None:
    gw = await gateway(CONFIG)
    origin = {"Origin": "https://app.example.com"}
    plain = await gw.post("/v1/chat/completions", json=BODY, headers=origin)
    streamed = await gw.post("/v1/chat/completions", json={**BODY, "stream": True}, headers=origin)
    await streamed.read()
    for response in (plain, streamed):
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        exposed = response.headers["Access-Control-Expose-Headers"]
        # Browser SDKs read their retry advice from these.
        for name in ("X-Request-ID", "Retry-After", "x-should-retry"):
            assert name in exposed
    other = await gw.post("/v1/chat/completions", json=BODY, headers={"Origin": "https://x.test"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_no_cors_configured_means_no_cors_headers(gateway: Any) -> None:
    gw = await gateway(CONFIG.replace("[https://app.example.com]", "[]"))
    response = await gw.post("/v1/chat/completions", json=BODY, headers={"Origin": "https://a.b"})
    assert "Access-Control-Allow-Origin" not in response.headers
