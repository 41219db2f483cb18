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


ADMIN = "auth: {admin_key: adm-secret-1234}\n"
BEARER = {"Authorization": "Bearer adm-secret-1234"}


async def test_cors_never_applies_to_the_admin_api_or_metrics(gateway: Any) -> None:
    """Even with cors_origins ["*"], no page of another origin may read /api/v1/* or
    /metrics, nor be allowed by a preflight to send them the admin key."""
    gw = await gateway(CONFIG.replace("[https://app.example.com]", '["*"]') + ADMIN)
    origin = {"Origin": "https://app.example.com"}
    client = await gw.post("/v1/chat/completions", json=BODY, headers=origin)
    assert client.headers["Access-Control-Allow-Origin"] == "*"  # the client API still is
    for path in ("/api/v1/config", "/api/v1/usage", "/metrics"):
        response = await gw.get(path, headers={**origin, **BEARER})
        assert response.status == 200, path
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]
        preflight = await gw.options(
            path,
            headers={
                **origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status == 403, path
        assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]
    post = await gw.options(
        "/api/v1/config/reload",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert post.status == 403
    assert "Access-Control-Allow-Origin" not in post.headers
