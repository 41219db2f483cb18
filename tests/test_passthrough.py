"""OpenAI pass-through: the SDK gets exactly the upstream's bytes, streamed or not."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import CLIENT_KEY, PROVIDER_KEY, one_provider
from tests.fakes import FakeOpenAI, chat_chunks, chat_completion, reply_json, reply_stream

MESSAGES = [{"role": "user", "content": "Say hello"}]


async def test_sdk_gets_upstream_json_bytes(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    upstream_body = b'{"id":"chatcmpl-x",  "object":"chat.completion","created":1,' + (
        b'"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant",'
        b'"content":"Hi \\u00e9!"},"finish_reason":"stop","logprobs":null}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}'
    )
    fake.then(reply_json(upstream_body))
    gw = await gateway(one_provider(fake.url))
    raw = await sdk(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert raw.http_response.content == upstream_body
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hi é!"
    assert completion.usage is not None and completion.usage.total_tokens == 7
    assert raw.headers["X-LLMGW-Provider"] == "up"
    assert raw.headers["X-LLMGW-Model"] == "gpt-4o-mini"
    assert raw.headers["X-LLMGW-Attempts"] == "1"
    assert raw.headers["X-Request-ID"]


async def test_sdk_gets_upstream_stream_bytes(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    chunks = chat_chunks(["Hel", "lo", " world"])
    fake.then(reply_stream(chunks), reply_stream(chunks))
    gw = await gateway(one_provider(fake.url))
    client = sdk(gw)
    async with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        received = b"".join([part async for part in response.iter_bytes()])
        assert response.headers["Content-Type"].startswith("text/event-stream")
    assert received == b"".join(chunks)

    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello world"


async def test_each_chunk_is_relayed_as_it_arrives(fake: FakeOpenAI, gateway: Any) -> None:
    """The upstream holds its stream open after the first event until the client has
    seen it: only a relay that forwards chunk by chunk can let this test finish."""
    gate = asyncio.Event()
    fake.then(reply_stream(chat_chunks(["a", "b"]), gate=gate, gate_after=1))
    gw = await gateway(one_provider(fake.url))
    response = await gw.post(
        "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    )
    first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
    assert b'"role":"assistant"' in first
    gate.set()
    rest = await response.content.read()
    assert rest.endswith(b"data: [DONE]\n\n")


async def test_upstream_sees_provider_key_never_client_key(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(one_provider(fake.url, headers="{X-Team: platform}"))
    await sdk(gw).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={"X-API-Key": CLIENT_KEY, "Cookie": "session=abc"},
    )
    seen = fake.seen[0]
    assert seen.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert seen.headers["X-Team"] == "platform"
    flat = repr(seen.headers)
    assert CLIENT_KEY not in flat
    assert "session=abc" not in flat


async def test_alias_rewrites_model_and_keeps_other_fields(fake: FakeOpenAI, gateway: Any) -> None:
    config = one_provider(fake.url) + "models:\n  fast: up/gpt-4o-mini\n"
    gw = await gateway(config)
    body = {"model": "fast", "messages": MESSAGES, "temperature": 0.3, "seed": 7}
    response = await gw.post("/v1/chat/completions", json=body)
    assert response.status == 200
    assert fake.seen[0].body == {**body, "model": "gpt-4o-mini"}


async def test_unchanged_model_forwards_client_bytes(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    raw = b'{"model": "gpt-4o-mini",  "messages": [{"role": "user", "content": "x"}]}'
    response = await gw.post(
        "/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status == 200
    assert fake.seen[0].raw == raw


async def test_request_id_is_echoed(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    response = await gw.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"X-Request-ID": "trace-42"},
    )
    assert response.headers["X-Request-ID"] == "trace-42"
    odd = await gw.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"X-Request-ID": "bad id\twith spaces"},
    )
    assert odd.headers["X-Request-ID"] != "bad id\twith spaces"


async def test_completions_and_embeddings_pass_through(fake: FakeOpenAI, gateway: Any) -> None:
    embedding = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "model": "gpt-4o-mini",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    fake.then(reply_json(chat_completion()), reply_json(embedding))
    gw = await gateway(one_provider(fake.url))
    completion = await gw.post("/v1/completions", json={"model": "gpt-4o-mini", "prompt": "x"})
    assert completion.status == 200
    assert fake.seen[0].path == "/v1/completions"
    vectors = await gw.post("/v1/embeddings", json={"model": "gpt-4o-mini", "input": "x"})
    assert await vectors.json() == embedding
    assert fake.seen[1].path == "/v1/embeddings"


async def test_provider_connections_are_kept_alive(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    """Sequential calls, streamed or not, share one connection to the provider; a stream
    the client abandons takes its connection with it, and the next call opens another."""
    gw = await gateway(one_provider(fake.url))
    client = sdk(gw)
    for _ in range(2):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        assert [c async for c in stream]
    assert len({seen.peer for seen in fake.seen}) == 1

    fake.then(fake.slow_stream())
    response = await gw.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    )
    await response.content.readany()
    response.close()  # the client leaves mid-stream
    await asyncio.wait_for(fake.stream_closed.wait(), 5)
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    peers = [seen.peer for seen in fake.seen]
    assert peers[-2] == peers[0] and peers[-1] != peers[0]
