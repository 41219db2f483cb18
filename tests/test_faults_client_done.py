"""Clients that hang up right at the stream's end event (issue 14, item 1).

The openai SDK closes its connection shortly after ``data: [DONE]`` when the rest of
the body does not follow; when the provider's end of body lags its end event, the
gateway finds its client gone. That client had its whole answer: 200 in the access
log and metrics, no error, usage counted, the answer cached, followers served whole.
A client leaving before the end event is still a 499 (``test_faults_client.py``).

The gateway runs with ``handler_cancellation=True``, as in production.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from llmgw.app import create_app
from llmgw.config import parse
from tests.conftest import CLIENT_KEY, PROVIDER_KEY
from tests.fakes import chat_chunks, wait_for
from tests.fault_fakes import RawUpstream, raw_upstream, stream
from tests.provider_fakes import fixture
from tests.test_faults_client import AUTH, post_head

LINGER = 0.2  # the provider's end of body, this long after its end event
ANTHROPIC_EVENTS = [
    event + b"\n\n" for event in fixture("anthropic/stream_text.sse").split(b"\n\n")
]
ANTHROPIC_EVENTS = [event for event in ANTHROPIC_EVENTS if event.strip()]
OPENAI_EVENTS = chat_chunks(["Hel", "lo", "!"])
Serve = Callable[..., Awaitable[TestClient[Any, Any]]]
ASK = [{"role": "user", "content": "hi"}]
# per provider type: its stream, and the completion tokens it reports
PROVIDERS = {"openai": (OPENAI_EVENTS, 3), "anthropic": (ANTHROPIC_EVENTS, 15)}


@pytest.fixture(autouse=True)
def access_lines(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Access lines are captured; no test here may make the gateway log an error."""
    caplog.set_level(logging.INFO, logger="llmgw")
    yield
    bad = [r for r in caplog.records if r.name.startswith("llmgw") and r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


class NotCancellingServer(TestServer):
    """aiohttp's test server always cancels a handler whose client left; this one does
    not, so the gateway learns of it from a write that fails instead."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return await super()._make_runner(**{**kwargs, "handler_cancellation": False})


@pytest.fixture
async def serve(aiohttp_client: Any) -> Serve:
    async def start(text: str, cancelling: bool = True) -> TestClient[Any, Any]:
        app = create_app(parse(text, environ={}))
        server = TestServer(app) if cancelling else NotCancellingServer(app)
        client: TestClient[Any, Any] = await aiohttp_client(server)
        return client

    return start


def config(url: str, kind: str) -> str:
    return f"""
providers:
  up:
    type: {kind}
    base_url: {url}
    api_key: {PROVIDER_KEY}
    models: [m]
    max_retries: 0
auth:
  keys:
    - {{name: team, key: {CLIENT_KEY}}}
cache: {{enabled: true}}
"""


def access_line(caplog: pytest.LogCaptureFixture, request_id: str) -> logging.LogRecord:
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert len(lines) == 1, lines
    return lines[0]


async def access_logged(caplog: pytest.LogCaptureFixture, *request_ids: str) -> None:
    def logged() -> bool:
        seen = {getattr(r, "request_id", None) for r in caplog.records}
        return all(request_id in seen for request_id in request_ids)

    await wait_for(logged)


async def assert_complete(
    gw: TestClient[Any, Any], up: RawUpstream, path: str, body: dict[str, Any], tokens: int
) -> None:
    """What a complete answer leaves behind: metrics say 200, never 499; usage counted;
    the provider not blamed; the same request again is a hit with its ``Age``."""
    metrics = await (await gw.get("/metrics")).text()
    requests = [line for line in metrics.splitlines() if line.startswith("llmgw_requests_total{")]
    assert any('status="200"' in line and 'cache="miss"' in line for line in requests), requests
    assert not any('status="499"' in line for line in requests), requests
    assert 'llmgw_upstream_attempts_total{outcome="success",provider="up"} 1.0' in metrics
    usage = await (await gw.get("/api/v1/usage")).json()
    assert usage["keys"]["team"]["completion_tokens"] == tokens
    status = await (await gw.get("/api/v1/providers/status")).json()
    assert status["providers"]["up"]["errors"] == 0
    again = await gw.post(path, json=body, headers=AUTH)
    assert again.status == 200
    assert again.headers["X-Cache"] == "HIT" and "Age" in again.headers
    end = b'data: {"type":"message_stop"}\n\n' if path == "/v1/messages" else b"data: [DONE]\n\n"
    assert (await again.read()).endswith(end)  # the whole stream was stored
    assert len(up.requests) == 1


def sdk_client(gw: TestClient[Any, Any]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(gw.make_url("/v1")), api_key=CLIENT_KEY, max_retries=0)


async def sdk_chat(client: openai.AsyncOpenAI, request_id: str) -> str:
    """A streamed chat read the common way, to its end: the SDK hangs up after [DONE]."""
    chunks = await client.chat.completions.create(
        model="m",
        messages=ASK,  # type: ignore[arg-type]
        stream=True,
        extra_headers={"X-Request-ID": request_id},
    )
    return "".join(
        [chunk.choices[0].delta.content or "" async for chunk in chunks if chunk.choices]
    )


@pytest.mark.parametrize("cancelling", [True, False], ids=["handler-cancelled", "write-fails"])
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_openai_sdk_leaving_after_done_is_a_complete_answer(
    serve: Serve, caplog: pytest.LogCaptureFixture, kind: str, cancelling: bool
) -> None:
    """Relayed byte for byte (an OpenAI provider) and translated (Anthropic's); the
    client's leaving cancels the handler, or (without handler cancellation) the
    gateway finds out when it writes the end of its body."""
    events, tokens = PROVIDERS[kind]
    async with raw_upstream(stream(events, linger=LINGER)) as up:
        gw = await serve(config(up.url, kind), cancelling)
        client = sdk_client(gw)
        try:
            text = await sdk_chat(client, "sdk-done")
        finally:
            await client.close()
        assert text == ("Hello!" if kind == "openai" else "Hello, wörld!")
        if cancelling:  # the gateway hung up on the provider before its end of body
            await asyncio.wait_for(up.gone.wait(), 5)
        await access_logged(caplog, "sdk-done")
        line = access_line(caplog, "sdk-done")
        assert (line.status, line.error, line.cache) == (200, None, "MISS")
        assert line.completion_tokens == tokens
        body = {"model": "m", "messages": ASK, "stream": True}
        await assert_complete(gw, up, "/v1/chat/completions", body, tokens)


async def raw_messages(gw: TestClient[Any, Any], request_id: str) -> bytes:
    """``POST /v1/messages`` on a socket read up to ``message_stop``, then closed."""
    assert gw.port is not None
    body = orjson.dumps({"model": "m", "max_tokens": 64, "messages": ASK, "stream": True})
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    headers = (
        f"Authorization: Bearer {CLIENT_KEY}",
        "Content-Type: application/json",
        f"X-Request-ID: {request_id}",
    )
    writer.write(post_head("/v1/messages", len(body), *headers) + body)
    received = b""
    try:
        while b'{"type":"message_stop"}\n\n' not in received:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, received
            received += chunk
    finally:
        writer.transport.abort()  # at once, as a client done with its answer would
    return received


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_messages_client_leaving_after_message_stop_is_a_complete_answer(
    serve: Serve, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """Relayed unchanged (an Anthropic provider) and translated (OpenAI's)."""
    events, tokens = PROVIDERS[kind]
    async with raw_upstream(stream(events, linger=LINGER)) as up:
        gw = await serve(config(up.url, kind))
        received = await raw_messages(gw, "raw-stop")
        assert received.startswith(b"HTTP/1.1 200") and b"event: message_stop" in received
        await asyncio.wait_for(up.gone.wait(), 5)
        await access_logged(caplog, "raw-stop")
        line = access_line(caplog, "raw-stop")
        assert (line.status, line.error, line.cache) == (200, None, "MISS")
        assert line.completion_tokens == tokens
        body = {"model": "m", "max_tokens": 64, "messages": ASK, "stream": True}
        await assert_complete(gw, up, "/v1/messages", body, tokens)


async def test_follower_leaving_after_done_is_a_complete_answer(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """The leader's client reads to the end of body; a coalesced follower's client (the
    SDK) hangs up after [DONE] while the leader still waits on the provider."""
    async with raw_upstream(stream(OPENAI_EVENTS, delay=0.05, linger=LINGER)) as up:
        gw = await serve(config(up.url, "openai"))
        body = {"model": "m", "messages": ASK, "stream": True}
        headers = {**AUTH, "X-Request-ID": "leader"}
        leader = asyncio.ensure_future(gw.post("/v1/chat/completions", json=body, headers=headers))
        await wait_for(lambda: len(up.requests) == 1)
        client = sdk_client(gw)
        try:
            assert await sdk_chat(client, "follower") == "Hello!"
        finally:
            await client.close()
        response = await leader
        assert await response.read() == b"".join(OPENAI_EVENTS)
        await access_logged(caplog, "leader", "follower")
        lines = {name: access_line(caplog, name) for name in ("leader", "follower")}
        assert (lines["leader"].status, lines["leader"].error) == (200, None)
        assert (lines["follower"].status, lines["follower"].error) == (200, None)
        assert (lines["leader"].cache, lines["follower"].cache) == ("MISS", "HIT")
        metrics = await (await gw.get("/metrics")).text()
        assert 'status="499"' not in metrics
        assert len(up.requests) == 1


async def test_leaving_before_done_is_499_without_handler_cancellation(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """Without handler cancellation the gateway learns of the leaving client from a write
    that fails: still a 499 with client_disconnected, and nothing cached."""
    events = chat_chunks([f"w{i} " for i in range(40)], usage=False)
    async with raw_upstream(stream(events, delay=0.02)) as up:
        gw = await serve(config(up.url, "openai"), False)
        body = {"model": "m", "messages": ASK, "stream": True}
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                gw.make_url("/v1/chat/completions"),
                json=body,
                headers={**AUTH, "X-Request-ID": "early"},
            )
            await response.content.readuntil(b"\n\n")
            response.close()
        await access_logged(caplog, "early")
        line = access_line(caplog, "early")
        assert (line.status, line.error) == (499, "client_disconnected")
        again = await gw.post("/v1/chat/completions", json=body, headers=AUTH)
        assert again.headers["X-Cache"] == "MISS"
        await again.read()
