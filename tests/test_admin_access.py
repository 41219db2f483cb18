"""Who reaches the admin API (SPEC §3): a relayed, rebound or cross-site request never
passes for a local operator, and /metrics can live on a listener of its own.

Everything listens on 127.0.0.1; a mesh sidecar's source address (Istio's 127.0.0.6)
is real: the client socket is bound to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from llmgw.app import create_app, create_metrics_app
from llmgw.config import ConfigError, parse
from llmgw.server.lifecycle import listening

OPEN = "providers:\n  demo: {type: mock, models: [echo]}\n"  # no admin key, as shipped
KEYED = OPEN + "auth: {admin_key: adm-secret-1234}\n"
BEARER = {"Authorization": "Bearer adm-secret-1234"}
ADMIN_CALLS = [
    ("GET", "/api/v1/config"),
    ("GET", "/api/v1/providers/status"),
    ("GET", "/api/v1/usage"),
    ("GET", "/api/v1/cache/stats"),
    ("POST", "/api/v1/cache/clear"),
    ("POST", "/api/v1/config/reload"),
    ("GET", "/metrics"),
]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


def reverse_proxy(upstream: str) -> web.Application:
    """A reverse proxy as nginx is usually set up in front of an app on the same host:
    ``proxy_pass http://127.0.0.1:PORT`` (so Host becomes the upstream's, a loopback
    address) with ``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Real-IP``."""

    async def relay(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = request.remote or ""
        headers["X-Forwarded-Proto"] = "https"
        headers["X-Real-IP"] = request.remote or ""
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                upstream + request.path_qs,
                headers=headers,
                data=await request.read(),
            ) as answer,
        ):
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=answer.status, body=body, headers=kept)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


@pytest.fixture
async def sidecar_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose connections come from 127.0.0.6, as Istio's inbound sidecar's do."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.6", 0)))
    yield session
    await session.close()


async def assert_refused(
    response: aiohttp.ClientResponse | Any, hint: str = "auth.admin_key"
) -> None:
    assert response.status == 403
    body = await response.json()
    assert body["error"]["type"] == "permission_error"
    assert hint in body["error"]["message"]
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
async def test_through_a_reverse_proxy_without_admin_key_is_refused(
    gateway: Any, aiohttp_server: Any, aiohttp_client: Any, method: str, path: str
) -> None:
    gw = await gateway(OPEN)
    proxy = await aiohttp_client(await aiohttp_server(reverse_proxy(str(gw.make_url("")))))
    await assert_refused(await proxy.request(method, path))
    # The very same call made directly on the host is the operator's, and answers
    # (a reload with 422 here: the test gateway has no config file to re-read).
    assert (await gw.request(method, path)).status == (422 if path.endswith("reload") else 200)


async def test_through_a_reverse_proxy_the_admin_key_works(
    gateway: Any, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    gw = await gateway(KEYED)
    proxy = await aiohttp_client(await aiohttp_server(reverse_proxy(str(gw.make_url("")))))
    assert (await proxy.get("/api/v1/config", headers=BEARER)).status == 200
    assert (await proxy.get("/api/v1/config")).status == 401


async def test_from_a_sidecar_address_only_a_direct_local_request_answers(
    gateway: Any, sidecar_session: aiohttp.ClientSession
) -> None:
    gw = await gateway(OPEN)
    url = str(gw.make_url("/api/v1/config"))
    port = gw.port
    for headers in (
        {"X-Forwarded-For": "203.0.113.9"},
        {"X-Forwarded-Proto": "http"},
        {"Forwarded": "for=203.0.113.9;proto=https"},
        {"X-Real-IP": "203.0.113.9"},
        {"X-Envoy-External-Address": "203.0.113.9"},
        {"Host": f"llmgw.default.svc.cluster.local:{port}"},
        {"Host": "10.0.0.7"},
    ):
        async with sidecar_session.get(url, headers=headers) as response:
            await assert_refused(response)
    async with sidecar_session.get(url) as plain:  # a loopback peer, Host 127.0.0.1:port
        assert plain.status == 200


async def test_direct_from_127_0_0_1_is_admitted_with_any_loopback_host(gateway: Any) -> None:
    gw = await gateway(OPEN)
    for host in (None, "localhost", f"localhost:{gw.port}", "127.0.0.1", "[::1]:8080"):
        headers = {} if host is None else {"Host": host}
        response = await gw.get("/api/v1/config", headers=headers)
        assert response.status == 200, host


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil"]
)
async def test_dns_rebinding_host_is_refused(gateway: Any, host: str) -> None:
    gw = await gateway(OPEN)
    await assert_refused(await gw.get("/api/v1/config", headers={"Host": host}))


async def test_foreign_origin_is_refused_and_a_loopback_one_admitted(gateway: Any) -> None:
    gw = await gateway(OPEN)
    for origin in ("http://evil.example", "null", "https://127.0.0.1.evil.example"):
        await assert_refused(await gw.get("/api/v1/config", headers={"Origin": origin}))
    admitted = await gw.get("/api/v1/config", headers={"Origin": "http://localhost:3000"})
    assert admitted.status == 200


async def test_cross_site_text_plain_post_changes_nothing(gateway: Any) -> None:
    """What a page on another site can send without a preflight: a simple POST, from a
    browser that sends Sec-Fetch-Site and from one that does not."""
    gw = await gateway(OPEN)
    before = (await (await gw.get("/api/v1/config")).json())["last_reload"]
    simple = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
    fetch = {**simple, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    for path in ("/api/v1/config/reload", "/api/v1/cache/clear"):
        await assert_refused(await gw.post(path, data="x=1", headers=simple))
        await assert_refused(await gw.post(path, data="x=1", headers=fetch), "cross-site")
    assert (await (await gw.get("/api/v1/config")).json())["last_reload"] == before
    # The same reload made by the operator does run (and records its outcome).
    await gw.post("/api/v1/config/reload")
    assert (await (await gw.get("/api/v1/config")).json())["last_reload"] != before


async def test_sec_fetch_site_cross_site_is_refused_even_with_the_key(gateway: Any) -> None:
    gw = await gateway(KEYED)
    response = await gw.post(
        "/api/v1/cache/clear", headers={**BEARER, "Sec-Fetch-Site": "cross-site"}
    )
    await assert_refused(response, "cross-site")
    assert (await gw.post("/api/v1/cache/clear", headers=BEARER)).status == 200


async def test_with_admin_key_metrics_need_it_on_the_main_port(gateway: Any) -> None:
    gw = await gateway(KEYED)
    refused = await gw.get("/metrics")
    assert refused.status == 401
    assert (await refused.json())["error"]["type"] == "authentication_error"
    scraped = await gw.get("/metrics", headers=BEARER)
    assert scraped.status == 200
    assert "llmgw_inflight_requests" in await scraped.text()


async def test_metrics_port_serves_metrics_alone_and_the_main_port_hides_them() -> None:
    config = parse(KEYED + "server: {metrics_port: 9464}\n", environ={})
    app = create_app(config)
    async with listening(app, "127.0.0.1", 0, 5.0, (create_metrics_app(app), 0)) as bound:
        (main_host, main_port), (metrics_host, metrics_port) = bound[0][:2], bound[1][:2]
        assert metrics_port != main_port and metrics_host == main_host == "127.0.0.1"
        main = f"http://127.0.0.1:{main_port}"
        side = f"http://127.0.0.1:{metrics_port}"
        async with aiohttp.ClientSession() as session:
            chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(f"{main}/v1/chat/completions", json=chat) as answer:
                assert answer.status == 200
            # On its own port: open (no key), with the main app's series.
            async with session.get(f"{side}/metrics") as scraped:
                assert scraped.status == 200
                assert scraped.headers["Content-Type"].startswith("text/plain")
                assert 'endpoint="chat",model="echo"' in await scraped.text()
            # Nothing else is served there, the admin API least of all.
            for path in ("/api/v1/config", "/v1/models", "/health"):
                async with session.get(f"{side}{path}") as other:
                    assert other.status == 404
                    assert (await other.json())["error"]["type"] == "not_found_error"
            # The main port no longer answers /metrics, even to the admin key.
            async with session.get(f"{main}/metrics", headers=BEARER) as hidden:
                assert hidden.status == 404
            async with session.get(f"{main}/api/v1/config", headers=BEARER) as admin:
                assert admin.status == 200
                assert (await admin.json())["config"]["server"]["metrics_port"] == 9464


async def test_metrics_port_must_differ_from_port() -> None:
    with pytest.raises(ConfigError, match="metrics_port must differ from port"):
        parse(OPEN + "server: {port: 8080, metrics_port: 8080}\n", environ={})
    empty = parse(OPEN + "server: {metrics_port: '${METRICS_PORT:-}'}\n", environ={})
    assert empty.server.metrics_port is None
