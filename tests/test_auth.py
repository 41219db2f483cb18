"""Client keys (SPEC §3): where they are read, how they are compared, allowlists."""

from __future__ import annotations

import hashlib
from typing import Any

import openai
import orjson
import pytest

from llmgw.auth.keys import Keyring, allow_model, authenticate
from llmgw.config import parse
from llmgw.core import ANONYMOUS
from llmgw.errors import AuthenticationFailed, ModelNotAllowed
from tests.conftest import CLIENT_KEY, PROVIDER_KEY, one_provider
from tests.fakes import FakeOpenAI, wait_for

MESSAGES = [{"role": "user", "content": "hi"}]
OTHER_KEY = "sk-other-client-key-0000000001"
HASHED_KEY = "sk-hashed-client-key-42"


def keyed(url: str, extra: str = "") -> str:
    return (
        one_provider(url)
        + f"""
models:
  fast: up/gpt-4o-mini
auth:
  keys:
    - name: team-a
      key: {CLIENT_KEY}
    - name: team-b
      key_sha256: {hashlib.sha256(HASHED_KEY.encode()).hexdigest()}
      models: [fast]
{extra}"""
    )


def chat(model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES}


async def test_missing_and_unknown_keys_are_401(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(keyed(fake.url))
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"X-API-Key": "nope"}):
        response = await gw.post("/v1/chat/completions", json=chat(), headers=headers)
        assert response.status == 401
        error = (await response.json())["error"]
        assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
        assert "sk-wrong" not in error["message"]
    assert fake.seen == []  # nothing reached the provider


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {CLIENT_KEY}"},
        {"X-API-Key": CLIENT_KEY},
        {"x-api-key": CLIENT_KEY},  # what the anthropic SDK sends
        {"x-goog-api-key": CLIENT_KEY},
        {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": CLIENT_KEY},
    ],
)
async def test_each_key_header_is_accepted(
    fake: FakeOpenAI, gateway: Any, headers: dict[str, str]
) -> None:
    gw = await gateway(keyed(fake.url))
    response = await gw.post("/v1/chat/completions", json=chat(), headers=headers)
    assert response.status == 200
    seen = repr(fake.seen[0].headers)
    assert CLIENT_KEY not in seen and PROVIDER_KEY in seen


async def test_key_given_as_sha256(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(keyed(fake.url))
    ok = await gw.post("/v1/chat/completions", json=chat("fast"), headers={"X-API-Key": HASHED_KEY})
    assert ok.status == 200
    digest = hashlib.sha256(HASHED_KEY.encode()).hexdigest()
    wrong = await gw.post("/v1/chat/completions", json=chat("fast"), headers={"X-API-Key": digest})
    assert wrong.status == 401  # the digest itself is not a key


async def test_log_names_the_key_never_the_key(fake: FakeOpenAI, gateway: Any, caplog: Any) -> None:
    caplog.set_level("DEBUG")
    gw = await gateway(keyed(fake.url))
    await gw.post("/v1/chat/completions", json=chat(), headers={"X-API-Key": CLIENT_KEY})
    await gw.post("/v1/chat/completions", json=chat(), headers={"X-API-Key": OTHER_KEY})
    await wait_for(lambda: len([r for r in caplog.records if r.name == "llmgw.access"]) == 2)
    ok, refused = (r for r in caplog.records if r.name == "llmgw.access")
    assert (ok.key, ok.status) == ("team-a", 200)  # type: ignore[attr-defined]
    assert (refused.key, refused.status) == (None, 401)  # type: ignore[attr-defined]
    assert CLIENT_KEY not in caplog.text and OTHER_KEY not in caplog.text


async def test_allowlist_refuses_other_models(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(keyed(fake.url))
    headers = {"Authorization": f"Bearer {HASHED_KEY}"}
    assert (await gw.post("/v1/chat/completions", json=chat("fast"), headers=headers)).status == 200
    for model in ("gpt-4o-mini", "up/gpt-4o-mini", "no-such-model"):
        response = await gw.post("/v1/chat/completions", json=chat(model), headers=headers)
        assert response.status == 403, model
        error = (await response.json())["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "permission_error",
            "model_not_allowed",
            "model",
        )
    assert len(fake.seen) == 1


async def test_official_sdk_errors(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    gw = await gateway(keyed(fake.url))
    with pytest.raises(openai.AuthenticationError) as denied:
        await sdk(gw, api_key="sk-nobody").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert denied.value.code == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError) as forbidden:
        await sdk(gw, api_key=HASHED_KEY).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert forbidden.value.code == "model_not_allowed"
    answer = await sdk(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content == "echo from gpt-4o-mini"


async def test_messages_endpoint_reads_x_api_key(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(keyed(fake.url))
    body = {"model": "gpt-4o-mini", "max_tokens": 10, "messages": MESSAGES}
    refused = await gw.post("/v1/messages", json=body, headers={"x-api-key": "sk-bad"})
    assert refused.status == 401
    assert orjson.loads(await refused.read()) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid API key"},
    }
    accepted = await gw.post("/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY})
    assert accepted.status != 401


async def test_no_keys_means_open(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    assert (await gw.post("/v1/chat/completions", json=chat())).status == 200


def test_allowlist_patterns() -> None:
    config = parse(
        one_provider("http://127.0.0.1:9/v1")
        + f"""
auth:
  keys:
    - {{name: a, key: {CLIENT_KEY}, models: ["up/*", fast]}}
    - {{name: b, key: {OTHER_KEY}, models: ["*"]}}
""",
        environ={},
    )
    keyring = Keyring()
    a = authenticate({"X-API-Key": CLIENT_KEY}, config.auth, keyring)
    b = authenticate({"Authorization": f"bearer {OTHER_KEY}"}, config.auth, keyring)
    allow_model(a, "up/anything")
    allow_model(a, "fast")
    allow_model(b, "whatever/model")
    allow_model(ANONYMOUS, "anything")
    for model in ("gpt-4o-mini", "other/fast", "upx/model"):
        with pytest.raises(ModelNotAllowed):
            allow_model(a, model)
    with pytest.raises(AuthenticationFailed):
        authenticate({"X-API-Key": CLIENT_KEY[:-1]}, config.auth, keyring)


def test_keyring_rebuilds_only_for_a_new_auth_section() -> None:
    config = parse(
        one_provider("http://127.0.0.1:9/v1")
        + f"auth: {{keys: [{{name: a, key: {CLIENT_KEY}}}]}}\n",
        environ={},
    )
    keyring = Keyring()
    table = keyring.table(config.auth)
    assert keyring.table(config.auth) is table
    renamed = parse(
        one_provider("http://127.0.0.1:9/v1")
        + f"auth: {{keys: [{{name: z, key: {CLIENT_KEY}}}]}}\n",
        environ={},
    )
    assert authenticate({"X-API-Key": CLIENT_KEY}, renamed.auth, keyring).name == "z"


async def test_models_list_needs_a_key_and_shows_only_what_it_may_use(gateway: Any) -> None:
    config = """
providers:
  demo: {type: mock, models: [echo, other]}
models:
  fast: demo/echo
auth:
  keys:
    - {name: narrow, key: narrow-key, models: [fast]}
    - {name: wide, key: wide-key}
"""
    gw = await gateway(config)
    assert (await gw.get("/v1/models")).status == 401
    assert (await gw.get("/v1/models/fast")).status == 401
    narrow = {"Authorization": "Bearer narrow-key"}
    listed = await (await gw.get("/v1/models", headers=narrow)).json()
    assert [m["id"] for m in listed["data"]] == ["fast"]
    assert (await gw.get("/v1/models/fast", headers=narrow)).status == 200
    assert (await gw.get("/v1/models/echo", headers=narrow)).status == 404
    wide = await (await gw.get("/v1/models", headers={"Authorization": "Bearer wide-key"})).json()
    # aliases, the virtual models an alias does not shadow (SPEC §10), provider models
    assert [m["id"] for m in wide["data"]] == ["fast", "auto", "cheap", "echo", "other"]


async def test_a_key_replaced_by_a_reload_is_refused_at_once(
    fake: FakeOpenAI, aiohttp_client: Any, tmp_path: Any
) -> None:
    """A reload that replaces a client key takes effect at once: the old key is refused
    on the next request and the new one is let in (nothing remembered across snapshots)."""
    from llmgw.app import create_app

    def text(key: str) -> str:
        return one_provider(fake.url) + (
            f"auth:\n  admin_key: sk-admin-reload-0001\n  keys:\n    - {{name: team-a, key: {key}}}\n"
        )

    path = tmp_path / "gateway.yaml"
    path.write_text(text(CLIENT_KEY))
    app = create_app(parse(path.read_text(), str(path), {}), config_path=str(path))
    gw = await aiohttp_client(app)
    old = {"Authorization": f"Bearer {CLIENT_KEY}"}
    new = {"Authorization": f"Bearer {OTHER_KEY}"}
    assert (await gw.post("/v1/chat/completions", json=chat(), headers=old)).status == 200
    assert (await gw.post("/v1/chat/completions", json=chat(), headers=new)).status == 401
    path.write_text(text(OTHER_KEY))
    admin = {"Authorization": "Bearer sk-admin-reload-0001"}
    reload = await gw.post("/api/v1/config/reload", headers=admin)
    assert (await reload.json())["result"] == "success"
    assert (await gw.post("/v1/chat/completions", json=chat(), headers=old)).status == 401
    assert (await gw.post("/v1/chat/completions", json=chat(), headers=new)).status == 200
