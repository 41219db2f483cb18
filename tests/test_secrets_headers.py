"""What crosses the gateway: the client's credentials, cookies and hop-by-hop headers
never go upstream, the provider's never come back, and no client input chooses the
upstream host (SPEC §3 "The client's credentials are never sent upstream").
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import CLIENT_KEY, PROVIDER_KEY
from tests.fakes import chat_chunks, chat_completion
from tests.fault_fakes import LAST_CHUNK, SSE_HEAD, answer_json, chunk, head, raw_upstream

CLIENT_HEADERS = {
    "Authorization": f"Bearer {CLIENT_KEY}",
    "X-API-Key": CLIENT_KEY,
    "x-goog-api-key": CLIENT_KEY,
    "Cookie": "session=client-cookie",
    "Proxy-Authorization": "Basic Y2xpZW50OnNlY3JldA==",
    "Connection": "keep-alive, X-Hop",
    "X-Hop": "hop-by-hop-value",
    "Keep-Alive": "timeout=5",
    "TE": "trailers",
    "Upgrade": "h2c",
    "Forwarded": "for=203.0.113.9;host=evil.example",
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Host": "evil.example",
    "X-Real-IP": "203.0.113.9",
    "OpenAI-Organization": "org-client",
    "anthropic-beta": "client-beta",
    "User-Agent": "client-agent/1.0",
}
# What an upstream request may carry: aiohttp's own, the adapter's, the config's.
UPSTREAM_ALLOWED = {
    "host",
    "content-type",
    "content-length",
    "accept",
    "accept-encoding",
    "user-agent",
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "anthropic-version",
    "anthropic-beta",
    "x-custom-token",
}
UPSTREAM_HEADERS = {
    "Set-Cookie": "upstream=session; HttpOnly",
    "Keep-Alive": "timeout=99",
    "Proxy-Authenticate": "Basic realm=upstream",
    "Trailer": "X-Checksum",
    "Upgrade": "h2c",
    "Server": "upstream-server/9",
    "X-Upstream-Secret": "upstream-internal-value",
    "openai-organization": "org-upstream-private",
    "Access-Control-Allow-Origin": "*",
    "Strict-Transport-Security": "max-age=1",
    "Location": "http://evil.example/",
    "Www-Authenticate": "Bearer realm=upstream",
}


def config(url: str, kind: str = "openai") -> str:
    return f"""
providers:
  up:
    type: {kind}
    base_url: {url}
    api_key: {PROVIDER_KEY}
    models: [m]
    max_retries: 0
    headers: {{X-Custom-Token: configured}}
auth:
  keys: [{{name: team, key: {CLIENT_KEY}}}]
"""


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("kind", "path", "body", "key_header"),
    [
        ("openai", "/v1/chat/completions", BODY, "authorization"),
        ("openai", "/v1/chat/completions", {**BODY, "stream": True}, "authorization"),
        ("anthropic", "/v1/messages", {**BODY, "max_tokens": 5}, "x-api-key"),
        ("gemini", "/v1/chat/completions", BODY, "x-goog-api-key"),
    ],
)
async def test_client_credentials_and_hop_by_hop_headers_never_go_upstream(
    gateway: Any, kind: str, path: str, body: dict[str, Any], key_header: str
) -> None:
    async with raw_upstream() as up:
        up.default = answer_json(chat_completion())
        gw = await gateway(config(up.url, kind))
        await (await gw.post(path, json=body, headers=CLIENT_HEADERS)).read()
        [request] = up.requests
        assert request.header_names <= UPSTREAM_ALLOWED, request.header_names - UPSTREAM_ALLOWED
        for value in ("client-cookie", CLIENT_KEY, "evil.example", "203.0.113.9", "org-client"):
            assert value.encode() not in request.head
        assert PROVIDER_KEY in (request.header(key_header) or "")
        assert request.header("Host") == up.url.split("/")[2]
        assert request.header("X-Custom-Token") == "configured"
        assert request.header("User-Agent") != "client-agent/1.0"
        if kind == "anthropic":  # a described request header, passed on by design
            assert request.header("anthropic-beta") == "client-beta"


@pytest.mark.parametrize(
    "behaviour",
    [
        answer_json(chat_completion(), **UPSTREAM_HEADERS),
        answer_json(
            {"error": {"message": "no", "type": "invalid_request_error"}}, 400, **UPSTREAM_HEADERS
        ),
        answer_json({"error": {"message": "slow down"}}, 429, **UPSTREAM_HEADERS),
    ],
    ids=["200 JSON", "400", "429"],
)
async def test_upstream_headers_never_reach_the_client(gateway: Any, behaviour: Any) -> None:
    async with raw_upstream(behaviour) as up:
        gw = await gateway(config(up.url))
        response = await gw.post(
            "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {CLIENT_KEY}"}
        )
        await response.read()
        assert_clean_headers(response)


async def test_upstream_stream_headers_never_reach_the_client(gateway: Any) -> None:
    async with raw_upstream() as up:
        gw = await gateway(config(up.url))
        up.default = _with_headers(chat_chunks(["x"]))
        response = await gw.post(
            "/v1/chat/completions",
            json={**BODY, "stream": True},
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        )
        assert (await response.read()).endswith(b"[DONE]\n\n")
        assert_clean_headers(response)


def _with_headers(events: list[bytes]) -> Any:
    async def behave(conn: Any, _: Any) -> None:
        await conn.send(head(200, {**SSE_HEAD, **UPSTREAM_HEADERS}))
        for event in events:
            await conn.send(chunk(event))
        await conn.send(LAST_CHUNK)
        await conn.close()

    return behave


def assert_clean_headers(response: Any) -> None:
    names = {name.lower() for name in response.headers}
    for name, value in UPSTREAM_HEADERS.items():
        assert response.headers.get(name) != value, name
        if name.lower() != "server":
            assert name.lower() not in names, name
    raw = str(response.raw_headers)
    for value in UPSTREAM_HEADERS.values():
        assert value not in raw


# No client input chooses where a request goes ------------------------------------------------

STEERING = [
    ({"model": "{evil}/v1"}, {}),
    ({"model": "up/{evil}/v1"}, {}),
    ({"model": "up/../../{evil}"}, {}),
    ({"model": "m", "base_url": "{evil}/v1", "api_base": "{evil}/v1"}, {}),
    ({"model": "m"}, {"Host": "{host}", "X-Forwarded-Host": "{host}", "Forwarded": "host={host}"}),
    ({"model": "m"}, {"X-LLMGW-Provider": "{evil}", "X-LLMGW-Base-URL": "{evil}/v1"}),
]


@pytest.mark.parametrize(("fields", "headers"), STEERING)
async def test_no_client_input_chooses_the_upstream_host(
    gateway: Any, fields: dict[str, str], headers: dict[str, str]
) -> None:
    async with raw_upstream() as up, raw_upstream() as evil:
        gw = await gateway(config(up.url))
        host = evil.url.split("/")[2]
        fill = {"evil": evil.url.removesuffix("/v1"), "host": host}
        body = {**BODY, **{k: v.format(**fill) for k, v in fields.items()}}
        sent = {"Authorization": f"Bearer {CLIENT_KEY}"}
        sent |= {k: v.format(**fill) for k, v in headers.items()}
        response = await gw.post("/v1/chat/completions", json=body, headers=sent)
        await response.read()
        assert response.status in (200, 403, 404), response.status
        assert evil.requests == []
        for request in up.requests:
            assert request.request_line.startswith("POST /v1/chat/completions ")
            assert request.header("Host") == up.url.split("/")[2]
