"""SPEC §3 error table: status, type, code and param, in OpenAI's shape."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from tests.conftest import one_provider
from tests.fakes import FakeOpenAI

MESSAGES = [{"role": "user", "content": "hi"}]


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert set(body) == {"error"}
    fields = {"message", "type", "param", "code"}
    assert fields <= set(body["error"]) <= fields | {"details"}  # details: SPEC §9
    assert "Traceback" not in body["error"]["message"]
    return dict(body["error"])


@pytest.mark.parametrize(
    ("raw", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"\xff\xfe{}", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"messages": []}', "model", "'model'"),
        (b'{"model": 5, "messages": []}', "model", "'model'"),
        (b'{"model": "gpt-4o-mini"}', "messages", "'messages'"),
        (b'{"model": "gpt-4o-mini", "messages": "hi"}', "messages", "'messages'"),
        (b'{"model": "gpt-4o-mini", "messages": [{"content": "x"}]}', "messages[0]", "role"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "stream": "yes"}',
            "stream",
            "",
        ),
        (
            b'{"model":"gpt-4o-mini","messages":[{"role":"user"}],"max_tokens":"9"}',
            "max_tokens",
            "",
        ),
        (b"[" * 5000 + b"]" * 5000, None, "not valid JSON"),
    ],
)
async def test_400_invalid_request(
    fake: FakeOpenAI, gateway: Any, raw: bytes, param: str | None, fragment: str
) -> None:
    gw = await gateway(one_provider(fake.url))
    response = await gw.post(
        "/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"}
    )
    error = await error_of(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_request"
    assert error["param"] == param
    assert fragment in error["message"]
    assert fake.seen == []


async def test_400_for_completions_and_embeddings_fields(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    response = await gw.post("/v1/completions", json={"model": "gpt-4o-mini"})
    assert (await error_of(response, 400))["param"] == "prompt"
    response = await gw.post("/v1/embeddings", json={"model": "gpt-4o-mini", "input": []})
    assert (await error_of(response, 400))["param"] == "input"


async def test_404_unknown_model_lists_available(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(one_provider(fake.url) + "models:\n  fast: up/gpt-4o-mini\n")
    response = await gw.post("/v1/chat/completions", json={"model": "gpt-5", "messages": MESSAGES})
    error = await error_of(response, 404)
    assert error["type"] == "not_found_error" and error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "fast" in error["message"] and "gpt-4o-mini" in error["message"]
    assert error["details"] == {
        "requested_model": "gpt-5",
        "available_models": ["fast", "auto", "cheap", "gpt-4o-mini"],
    }


async def test_404_unknown_path_and_405(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    error = await error_of(await gw.post("/v1/nothing-here", json={}), 404)
    assert error["code"] == "not_found"
    response = await gw.get("/v1/chat/completions")
    error = await error_of(response, 405)
    assert "POST" in response.headers["Allow"]


async def test_413_body_over_max_body_size(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway("server:\n  max_body_size: 1KiB\n" + one_provider(fake.url))
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 2000}]}
    error = await error_of(await gw.post("/v1/chat/completions", json=big), 413)
    assert error["type"] == "invalid_request_error" and error["code"] == "request_too_large"

    async def chunked() -> Any:  # no Content-Length: counted while read
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        yield b"y" * 2000
        yield b'"}]}'

    response = await gw.post("/v1/chat/completions", data=chunked())
    assert (await error_of(response, 413))["code"] == "request_too_large"
    assert fake.seen == []


async def test_sdk_raises_typed_errors(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    client = sdk(gw)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"content": "x"}])  # type: ignore[list-item]


async def test_unexpected_failure_is_500_with_request_id_and_no_traceback(
    fake: FakeOpenAI, gateway: Any, monkeypatch: Any, caplog: Any
) -> None:
    from llmgw import adapter

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(adapter.Adapter, "request", explode)
    gw = await gateway(one_provider(fake.url))
    response = await gw.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"X-Request-ID": "req-500"},
    )
    error = await error_of(response, 500)
    assert "req-500" in error["message"]
    assert "secret internals" not in error["message"]
    assert any("secret internals" in r.getMessage() or r.exc_info for r in caplog.records)


async def test_a_body_that_stops_arriving_is_408(
    fake: FakeOpenAI, gateway: Any, monkeypatch: Any
) -> None:
    """Like nginx's client_body_timeout: a client that stalls mid-body is answered and let
    go, not kept with its connection and task for ever."""
    from llmgw.server import body

    monkeypatch.setattr(body, "BODY_IDLE_TIMEOUT", 0.2)
    gw = await gateway(one_provider(fake.url))
    assert gw.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"model": "gpt-4o-mini", '
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408")
    assert fake.seen == []
