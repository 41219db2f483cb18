"""limits.per_ip (with server.trusted_proxies) and limits.endpoints, in memory and
across two gateway apps sharing one redis-server; the X-RateLimit-* headers."""

from __future__ import annotations

import time
from typing import Any

MESSAGES = [{"role": "user", "content": "hi"}]


def limited(trusted: str, limits: str, extra: str = "") -> str:
    return f"""
server:
  trusted_proxies: [{trusted}]
providers:
  demo: {{type: mock, models: [echo]}}
limits:
{limits}
{extra}"""


async def chat(gw: Any, address: str | None = None) -> Any:
    headers = {"X-Forwarded-For": f"198.18.0.1, {address}"} if address else {}
    response = await gw.post("/api/chat", json={"message": "Hi", "model": "echo"}, headers=headers)
    await response.read()
    return response


async def test_sixth_request_of_an_address_is_refused_while_another_is_served(
    gateway: Any,
) -> None:
    gw = await gateway(limited("127.0.0.0/8", "  per_ip: {rpm: 5}"))
    before = time.time()
    for n in range(5):
        response = await chat(gw, "203.0.113.7")
        assert response.status == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        assert response.headers["X-RateLimit-Remaining"] == str(4 - n)
        assert response.headers["x-ratelimit-remaining-requests"] == str(4 - n)
        assert before <= int(response.headers["X-RateLimit-Reset"]) <= time.time() + 61
    refused = await chat(gw, "203.0.113.7")
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert "203.0.113.7" in (await refused.json())["error"]["message"]
    other = await chat(gw, "198.51.100.2")
    assert other.status == 200 and other.headers["X-RateLimit-Remaining"] == "4"
    # the same address on the OpenAI surface shares the limit
    openai = await gw.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": MESSAGES},
        headers={"X-Forwarded-For": "203.0.113.7"},
    )
    assert openai.status == 429


async def test_an_untrusted_peers_forwarded_for_is_ignored(gateway: Any) -> None:
    gw = await gateway(limited("10.0.0.0/8", "  per_ip: {rpm: 5}"))
    statuses = [(await chat(gw, f"203.0.113.{n}")).status for n in range(6)]
    assert statuses == [200] * 5 + [429]  # all counted as the peer, 127.0.0.1


async def test_endpoint_limit_holds_one_surface_only(gateway: Any) -> None:
    gw = await gateway(limited("127.0.0.1/32", "  endpoints:\n    simple: {rpm: 2}"))
    assert [(await chat(gw)).status for _ in range(3)] == [200, 200, 429]
    other = await gw.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES})
    assert other.status == 200
    assert "X-RateLimit-Limit" not in other.headers  # no limit applies there


async def test_redis_holds_per_ip_limits_across_two_gateways(gateway: Any, redis_url: str) -> None:
    text = limited(
        "127.0.0.0/8", f"  backend: redis\n  redis_url: {redis_url}\n  per_ip: {{rpm: 5}}"
    )
    one, two = await gateway(text), await gateway(text)
    statuses = [(await chat(gw, "203.0.113.9")).status for gw in (one, two, one, two, one)]
    assert statuses == [200] * 5
    refused = await chat(two, "203.0.113.9")
    assert refused.status == 429 and "Retry-After" in refused.headers
    assert (await chat(one, "203.0.113.10")).status == 200
