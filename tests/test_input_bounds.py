"""Hostile input, in process: compressed bodies, body memory, model names, escaped keys."""

from __future__ import annotations

import asyncio
import gzip
import io
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from aiohttp import web

from llmgw.config import ConfigError, parse
from llmgw.server.appkeys import BODIES
from tests.conftest import CLIENT_KEY, one_provider
from tests.fakes import FakeOpenAI, chat_completion, reply_json, wait_for
from tests.provider_fakes import anthropic_client

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
MOCK = "providers:\n  demo: {type: mock, models: [echo]}\n"


# Compressed request bodies -------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP, identity"])
async def test_compressed_body_with_content_length_is_415(
    fake: FakeOpenAI, gateway: Any, encoding: str
) -> None:
    gw = await gateway(one_provider(fake.url))
    body = gzip.compress(orjson.dumps(CHAT))
    response = await gw.post(
        "/v1/chat/completions",
        data=body,
        headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
    )
    assert response.status == 415
    error = (await response.json())["error"]
    assert error["code"] == "unsupported_content_encoding"
    assert error["type"] == "invalid_request_error"
    assert encoding.lower() in error["message"]
    assert fake.seen == []


async def test_chunked_compressed_body_is_415_before_it_is_read(
    fake: FakeOpenAI, gateway: Any
) -> None:
    """A body inflating to 64 MiB, sent chunked: refused, never inflated or cut short."""
    gw = await gateway(one_provider(fake.url))
    packed = zlib.compress(b"0" * 64 * 1024**2)

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(packed), 4096):
            yield packed[at : at + 4096]

    response = await gw.post(
        "/v1/embeddings", data=chunks(), headers={"Content-Encoding": "deflate"}
    )
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_content_encoding"
    assert gw.app[BODIES].held == 0


async def test_compressed_body_on_messages_is_415_in_anthropic_shape(gateway: Any) -> None:
    gw = await gateway(MOCK)
    body = {"model": "echo", "max_tokens": 10, "messages": MESSAGES}
    response = await gw.post(
        "/v1/messages", data=gzip.compress(orjson.dumps(body)), headers={"Content-Encoding": "gzip"}
    )
    assert response.status == 415
    answer = await response.json()
    assert answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"
    assert "gzip" in answer["error"]["message"]


async def test_identity_encoding_is_read_as_usual(gateway: Any) -> None:
    gw = await gateway(MOCK)
    response = await gw.post(
        "/v1/chat/completions",
        data=orjson.dumps({"model": "echo", "messages": MESSAGES}),
        headers={"Content-Encoding": "identity"},
    )
    assert response.status == 200


# The bytes held by unfinished bodies ----------------------------------------------------


async def _stall(port: int, declared: int, sent: int) -> asyncio.StreamWriter:
    """A connection that declares a body of ``declared`` bytes, sends ``sent``, stops."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {declared}\r\n\r\n".encode()
        + b" " * sent
    )
    await writer.drain()
    return writer


async def _two_stalled(gateway: Any) -> tuple[Any, Any, asyncio.StreamWriter, asyncio.StreamWriter]:
    """A gateway (256 KiB bodies, 512 KiB pending at most) and two connections whose
    bodies, 250 KiB sent of 256, hold nearly all of the pending bytes."""
    gw = await gateway("server: {max_body_size: 256KiB, max_pending_body_bytes: 512KiB}\n" + MOCK)
    bodies = gw.app[BODIES]
    first = await _stall(gw.server.port, 256 * 1024, 250 * 1024)
    second = await _stall(gw.server.port, 256 * 1024, 250 * 1024)
    await wait_for(lambda: bodies.held >= 500 * 1024)
    return gw, bodies, first, second


async def test_bodies_past_max_pending_body_bytes_get_503_until_one_ends(gateway: Any) -> None:
    gw, bodies, first, second = await _two_stalled(gateway)
    request = {"model": "echo", "messages": [{"role": "user", "content": "x" * 20_000}]}
    refused = await gw.post("/v1/chat/completions", json=request)
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "1"
    assert (await refused.json())["error"]["code"] == "overloaded"
    first.close()  # the client gives up: its bytes are given back
    await wait_for(lambda: bodies.held <= 256 * 1024)
    accepted = await gw.post("/v1/chat/completions", json=request)
    assert accepted.status == 200
    second.close()
    await wait_for(lambda: bodies.held == 0)


# Bodies heavy to parse ------------------------------------------------------------------


async def test_a_20_mib_body_of_tiny_objects_is_handled(gateway: Any) -> None:
    gw = await gateway(MOCK)
    filler = b"{}," * (20 * 1024**2 // 3 - 100)
    raw = (
        b'{"model":"echo","messages":[{"role":"user","content":"hi"}],"metadata":['
        + filler
        + b"{}]}"
    )
    response = await gw.post("/v1/chat/completions", data=io.BytesIO(raw))
    assert response.status == 200
    assert gw.app[BODIES].heavy_in_use == 0


async def test_heavy_bodies_take_one_of_two_slots_for_their_request(
    fake: FakeOpenAI, gateway: Any
) -> None:
    gw = await gateway(one_provider(fake.url))
    release = asyncio.Event()
    inside = 0
    most = 0

    async def hold(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await release.wait()
        inside -= 1
        return web.json_response(chat_completion())

    fake.default = hold
    heavy = (
        orjson.dumps({**CHAT, "seed": 1})[:-1] + b',"logit_bias":[' + b"1," * 400_000 + b"1]}"
    )  # 800 KB, heavy
    light = orjson.dumps(CHAT)
    sends = [
        asyncio.create_task(gw.post("/v1/chat/completions", data=io.BytesIO(heavy)))
        for _ in range(4)
    ]
    await wait_for(lambda: len(fake.seen) == 2 and gw.app[BODIES].held == 2 * len(heavy), 30)
    quick = asyncio.create_task(gw.post("/v1/chat/completions", data=light))
    await wait_for(lambda: len(fake.seen) == 3)  # a light body needs no slot
    assert gw.app[BODIES].heavy_in_use == 2
    release.set()
    responses = await asyncio.gather(*sends, quick)
    assert [r.status for r in responses] == [200] * 5
    assert most == 3  # two heavy, one light
    assert len(fake.seen) == 5
    assert gw.app[BODIES].held == 0


# Model names ----------------------------------------------------------------------------

BAD_NAMES = [
    "gpt-4o-mini\nlevel=INFO status=200 key=admin",
    "gpt-4o-mini\r\nX-Injected: 1",
    "gpt\x00",
    "gpt\x7f",
    "gpt\x85",
    "gpt\u2028x",
    "gpt\u2029x",
    "m" * 200_000,
    "m" * 257,
]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_bad_model_names_are_400_before_anything_else(
    fake: FakeOpenAI, gateway: Any, sdk: Any, name: str
) -> None:
    gw = await gateway(one_provider(fake.url).replace("[gpt-4o-mini]", '["*"]'))
    client = sdk(gw)
    with pytest.raises(openai.BadRequestError) as chat:
        await client.chat.completions.create(model=name, messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as embed:
        await client.embeddings.create(model=name, input="hi")
    for caught in (chat.value, embed.value):
        error = caught.body
        assert isinstance(error, dict)
        assert error["param"] == "model"
        assert error["type"] == "invalid_request_error"
        assert name not in error["message"]
    assert fake.seen == []


@pytest.mark.parametrize("name", ["echo\r\nX-Injected: 1", "e" * 300, "echo\u2028"])
async def test_bad_model_names_on_messages_are_400_in_anthropic_shape(
    gateway: Any, name: str
) -> None:
    gw = await gateway(MOCK)
    async with anthropic_client(gw) as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(model=name, max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "model" in body["error"]["message"]


async def test_the_404_echoes_at_most_256_characters_of_a_name(gateway: Any) -> None:
    gw = await gateway(MOCK)
    longest = "n" * 256
    response = await gw.post("/v1/chat/completions", json={"model": longest, "messages": MESSAGES})
    assert response.status == 404
    assert longest in (await response.json())["error"]["message"]
    answer = await gw.get("/v1/models/" + "n" * 300)
    assert answer.status == 400
    error = (await answer.json())["error"]
    assert error["param"] == "model"
    assert "n" * 257 not in error["message"]
    answer = await gw.get("/v1/models/a\u2028b")
    assert answer.status == 400
    assert (await answer.json())["error"]["param"] == "model"


def test_config_refuses_control_characters_in_alias_targets() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(MOCK + 'models:\n  fast: "demo/echo\\r\\nX-Injected: 1"\n')
    assert "control character" in str(caught.value.errors)


# Provider error bodies ------------------------------------------------------------------

ODD_KEY = 'sk-pro/vid"er-secret-5555'


@pytest.mark.parametrize(
    "echoed",
    [
        b'sk-pro\\/vid\\"er-secret-5555',  # JSON-escaped '/' and '"'
        b"\\u0073k-pro\\u002fvid\\u0022er-secret-5555",  # unicode escapes
        b'sk-pro/vid\\"er-secret-5555',
    ],
)
async def test_an_escaped_key_in_a_provider_error_is_struck_out(
    fake: FakeOpenAI, gateway: Any, sdk: Any, echoed: bytes
) -> None:
    body = (
        b'{"error":{"message":"Incorrect API key provided: '
        + echoed
        + b'","type":"invalid_request_error","param":null,"code":"bad_key"}}'
    )
    fake.then(reply_json(body, status=400))
    gw = await gateway(
        one_provider(fake.url).replace("sk-provider-secret-0123456789", f"'{ODD_KEY}'")
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.make_url("/v1/chat/completions"), json=CHAT, headers=AUTH) as response,
    ):
        assert response.status == 400
        text = await response.text()
    decoded = orjson.loads(text)
    assert ODD_KEY not in decoded["error"]["message"]
    assert "[redacted]" in decoded["error"]["message"]
    assert decoded["error"]["code"] == "bad_key"
    assert ODD_KEY not in text and echoed.decode() not in text
