"""Per-provider network settings through the real gateway: ``proxy``, ``ca_file``,
``client_cert``/``client_key`` validated at parse time, a call through a proxy,
which way a connection failed as the attempt's outcome (still a ``connect_error``
for fallback), and the pool's connections on ``/metrics``."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import trustme

from llmgw.config import ConfigError, parse
from tests.conftest import CLIENT_KEY
from tests.fakes import FakeOpenAI
from tests.test_http_network import ConnectProxy, no_proxy_environment

__all__ = ["no_proxy_environment"]  # the fixture: no proxy from this machine's environment

MESSAGES = [{"role": "user", "content": "hi"}]


def errors_of(provider: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(f"providers:\n  up: {{type: openai, api_key: k, {provider}}}\n", "gw.yaml", {})
    return caught.value.errors


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("proxy: 'https://proxy:3128'", "providers.up.proxy: must be an http:// proxy URL"),
        ("proxy: 'socks5://proxy:1080'", "providers.up.proxy: must be an http:// proxy URL"),
        ("ca_file: /nowhere/ca.pem", "providers.up.ca_file: no such file: /nowhere/ca.pem"),
        ("client_cert: /nowhere/c.pem", "providers.up.client_cert: no such file"),
        ("headers: {Host: evil.example}", "providers.up.headers: Host: set by llmgw itself"),
        ("headers: {content-length: '5'}", "providers.up.headers: content-length: set by llmgw"),
        ("headers: {Transfer-Encoding: chunked}", "Transfer-Encoding: set by llmgw itself"),
    ],
)
def test_network_settings_are_checked_at_parse_time(setting: str, expected: str) -> None:
    [error] = errors_of(setting)
    assert error.startswith("gw.yaml:") and expected in error


def test_tls_files_must_load(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert "ca_file: not a PEM CA bundle" in errors_of(f"ca_file: '{junk}'")[0]
    assert "client_cert/client_key: not a PEM" in errors_of(f"client_cert: '{junk}'")[0]
    ca = trustme.CA()
    leaf = ca.issue_cert("client")
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    text = (
        f"providers:\n  up: {{type: openai, api_key: k, proxy: 'http://u:p@proxy:3128',"
        f" ca_file: '{tmp_path / 'ca.pem'}', client_cert: '{cert}', client_key: '{key}'}}\n"
    )
    provider = parse(text, "gw.yaml", {}).providers["up"]
    assert provider.proxy == "http://u:p@proxy:3128" and provider.client_key == str(key)


async def test_a_provider_with_a_proxy_is_called_through_it(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    async with ConnectProxy() as proxy:
        gw = await gateway(
            f'providers:\n  up: {{type: openai, api_key: sk-up, base_url: "{fake.url}",'
            f' proxy: "{proxy.url}", models: ["*"]}}\n'
            f"auth: {{keys: [{{name: app, key: {CLIENT_KEY}}}]}}\n"
        )
        answer = await sdk(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert answer.choices[0].message.content == "echo from gpt-4o-mini"
        [head] = proxy.heads
        assert head.startswith(f"POST {fake.url}/chat/completions HTTP/1.1\r\n".encode())


async def test_how_a_connection_failed_is_the_outcome_and_still_falls_back(
    fake: FakeOpenAI, gateway: Any
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens once it is closed
    gw = await gateway(
        f"providers:\n"
        f'  down: {{type: openai, api_key: k, base_url: "http://127.0.0.1:{port}/v1",'
        f" max_retries: 0}}\n"
        f'  up: {{type: openai, api_key: k, base_url: "{fake.url}"}}\n'
        f"models:\n  chain: [down/a, up/b]\n"
        f"routing: {{fallback_on: [connect_error]}}\n"
    )
    for _ in range(2):
        response = await gw.post(
            "/v1/chat/completions", json={"model": "chain", "messages": MESSAGES}
        )
        assert response.status == 200
    text = await (await gw.get("/metrics")).text()
    for line in (
        'llmgw_upstream_attempts_total{outcome="connect_refused",provider="down"} 2.0',
        'llmgw_upstream_attempts_total{outcome="success",provider="up"} 2.0',
        'llmgw_upstream_connections{provider="up",state="open"} 1.0',
        'llmgw_upstream_connections{provider="up",state="idle"} 1.0',
        'llmgw_upstream_connections_created_total{provider="up"} 1.0',
    ):
        assert line in text, line
    status = await (await gw.get("/api/v1/providers/status")).json()
    assert "connect_refused" in str(status)
