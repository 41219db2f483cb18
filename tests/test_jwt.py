"""JWT client credentials: RS256/ES256 from a JWKS served by a test server, HS256."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import PROVIDER_KEY, GatewayFactory
from tests.fakes import FakeOpenAI

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ISSUER = "https://idp.test/"


def _claims(**extra: Any) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": "llmgw",
        "sub": "svc-billing",
        "exp": int(time.time()) + 300,
        "llmgw_models": ["gpt-4o-mini"],
        **extra,
    }


def _config(url: str, jwt_section: str) -> str:
    return f"""
providers:
  up: {{type: openai, base_url: {url}, api_key: {PROVIDER_KEY}, models: ["*"]}}
auth:
  jwt:
    issuer: {ISSUER}
    audience: llmgw
    {jwt_section}
    claims: {{name: sub, models: llmgw_models}}
"""


@pytest.fixture
async def jwks(aiohttp_server: Any) -> tuple[str, dict[str, Any], list[int]]:
    """A JWKS endpoint with an RSA and an EC key; returns (url, private keys, fetches)."""
    keys = {
        "rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec-1": ec.generate_private_key(ec.SECP256R1()),
    }
    fetches: list[int] = []

    async def document(request: web.Request) -> web.Response:
        fetches.append(1)
        out = []
        for kid, private in keys.items():
            algorithm = (
                jwt.algorithms.RSAAlgorithm if kid.startswith("rsa") else jwt.algorithms.ECAlgorithm
            )
            public = json.loads(algorithm.to_jwk(private.public_key()))
            out.append({**public, "kid": kid, "use": "sig"})
        return web.json_response({"keys": out})

    app = web.Application()
    app.router.add_get("/jwks.json", document)
    server = await aiohttp_server(app)
    return str(server.make_url("/jwks.json")), keys, fetches


async def test_a_jwt_from_the_jwks_is_accepted_and_a_tampered_one_refused(
    gateway: GatewayFactory, fake: FakeOpenAI, jwks: tuple[str, dict[str, Any], list[int]]
) -> None:
    url, keys, fetches = jwks
    gw = await gateway(_config(fake.url, f"jwks_url: {url}"))
    rs = jwt.encode(_claims(), keys["rsa-1"], algorithm="RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(_claims(), keys["ec-1"], algorithm="ES256", headers={"kid": "ec-1"})
    for token in (rs, es):
        ok = await gw.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {token}"}
        )
        assert ok.status == 200
    assert len(fetches) == 1  # fetched at start, never per request

    head, payload, signature = rs.split(".")
    forged_payload = jwt.utils.base64url_encode(json.dumps(_claims(sub="admin")).encode()).decode()
    for tampered in (
        f"{head}.{forged_payload}.{signature}",
        f"{head}.{payload}.{signature[:-4]}AAAA",
    ):
        refused = await gw.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {tampered}"}
        )
        assert refused.status == 401
        text = await refused.text()
        assert "bad signature" in text and tampered not in text and signature not in text


async def test_expired_wrong_audience_malformed_and_not_allowed(
    gateway: GatewayFactory, fake: FakeOpenAI, jwks: tuple[str, dict[str, Any], list[int]]
) -> None:
    url, keys, _ = jwks
    gw = await gateway(_config(fake.url, f"jwks_url: {url}"))
    private = keys["rsa-1"]

    def sign(**claims: Any) -> str:
        return jwt.encode(_claims(**claims), private, algorithm="RS256", headers={"kid": "rsa-1"})

    cases = {
        sign(exp=int(time.time()) - 3600): "expired",
        sign(aud="someone-else"): "wrong audience",
        sign(iss="https://evil.test/"): "wrong issuer",
        "eyJhbGciOiJSUzI1NiJ9.e30.xx!": "malformed",
        jwt.encode(
            _claims(), private, algorithm="RS256", headers={"kid": "nope"}
        ): "unknown signing key",
    }
    for token, reason in cases.items():
        response = await gw.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 401, reason
        body = await response.json()
        assert reason in body["error"]["message"] and token not in json.dumps(body)
    other = {**CHAT, "model": "gpt-4o"}
    response = await gw.post(
        "/v1/chat/completions", json=other, headers={"Authorization": f"Bearer {sign()}"}
    )
    assert response.status == 403  # the models claim is the allowlist


async def test_hs256_with_a_secret(gateway: GatewayFactory, fake: FakeOpenAI) -> None:
    gw = await gateway(_config(fake.url, "secret: a-long-shared-secret-for-hs256-tests"))
    good = jwt.encode(_claims(), "a-long-shared-secret-for-hs256-tests", algorithm="HS256")
    bad = jwt.encode(_claims(), "another-secret-entirely-for-hs256-tests", algorithm="HS256")
    ok = await gw.post(
        "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {good}"}
    )
    assert ok.status == 200
    refused = await gw.post(
        "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {bad}"}
    )
    assert refused.status == 401
    no_token = await gw.post("/v1/chat/completions", json=CHAT)
    assert no_token.status == 401
