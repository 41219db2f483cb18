"""Upstream faults, each against a raw fake provider (SPEC §2, §3, §4).

Every fault that happens before the first byte reached the client gets the
documented error when it is the only target (502 ``upstream_error`` or 504
``upstream_timeout``) and a clean fallback when another target follows. A fault
after the first byte ends the stream with an SSE error event. In every case nothing
is cached and nothing of the provider's text, nor its key, reaches the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes import chat_chunks, chat_completion, free_port
from tests.fault_fakes import (
    LEAK,
    RawBehaviour,
    answer,
    answer_json,
    drip,
    error_status,
    hang,
    raw_upstream,
    reset_after_headers,
    reset_before_headers,
    stream,
)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}
CHAIN = {**CHAT, "model": "chain"}


def config(
    url: str, *, retries: int = 0, routing: str = "", extra: str = "", timeout: str = "250ms"
) -> str:
    """``up`` (the faulty provider) alone for gpt-4o-mini; ``chain`` falls back to the
    built-in mock ``backup``. The cache is on, so that a fault that got stored shows.
    ``timeout`` is short so that hangs end quickly; tests of other faults give it room
    (a stalled machine must not turn their 502 into a 504)."""
    return f"""
providers:
  up:
    type: openai
    base_url: {url}
    api_key: {PROVIDER_KEY}
    models: [gpt-4o-mini]
    max_retries: {retries}
    timeout: {timeout}
    read_timeout: {timeout}
    response_timeout: {timeout}{extra}
  backup:
    type: mock
models:
  chain: [up/gpt-4o-mini, backup/echo]
cache: {{enabled: true}}
{routing}
"""


def assert_clean_error(text: str, status: int, code: str) -> None:
    """The gateway's own error in OpenAI's shape: no provider text, key or traceback."""
    body = orjson.loads(text)
    assert set(body) == {"error"} and body["error"]["code"] == code, text
    assert body["error"]["type"] == ("rate_limit_error" if status == 429 else "api_error")
    for secret in (LEAK, PROVIDER_KEY, "Traceback", "127.0.0.1"):
        assert secret not in text


async def cache_entries(gw: Any) -> int:
    stats = await (await gw.get("/api/v1/cache/stats")).json()
    return int(stats["entries"])


def error_events(body: bytes) -> list[dict[str, Any]]:
    """The error events of a stream, read as an SSE client does (events end at a blank
    line; an event whose data is not JSON is skipped, as a tolerant client would)."""
    found = []
    for event in body.split(b"\n\n"):
        data = b"\n".join(line[6:] for line in event.split(b"\n") if line.startswith(b"data: "))
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and "error" in parsed:
            found.append(parsed["error"])
    return found


# Faults before the first byte: (behaviour, streamed request, status, code) -------------

ERROR_TAIL = f'or": {{"message": "{LEAK}"}}}}\r'.encode()  # an error event's end, CR-ended
BEFORE_FIRST_BYTE: dict[str, tuple[Callable[[], RawBehaviour], bool, int, str]] = {
    "reset before headers": (reset_before_headers, False, 502, "upstream_error"),
    "reset after headers (JSON)": (reset_after_headers, False, 502, "upstream_error"),
    "reset after headers (stream)": (
        lambda: reset_after_headers(True),
        True,
        502,
        "upstream_error",
    ),
    "hang before headers": (hang, False, 504, "upstream_timeout"),
    "hang before headers (stream)": (hang, True, 504, "upstream_timeout"),
    "hang mid JSON body": (
        lambda: hang(after=b"HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n{"),
        False,
        504,
        "upstream_timeout",
    ),
    "500": (lambda: error_status(500), False, 502, "upstream_error"),
    "503 (stream)": (lambda: error_status(503), True, 503, "no_provider_available"),
    "429 storm": (lambda: error_status(429), False, 429, "rate_limit_exceeded"),
    "malformed JSON": (
        lambda: answer(200, b'{"id": "x", "choices": [}'),
        False,
        502,
        "upstream_error",
    ),
    "truncated JSON": (
        lambda: answer(200, orjson.dumps(chat_completion())[:-40]),
        False,
        502,
        "upstream_error",
    ),
    "HTML instead of JSON": (
        lambda: answer(200, f"<html>{LEAK}</html>".encode(), "text/html"),
        False,
        502,
        "upstream_error",
    ),
    "empty 200": (lambda: answer(200, b""), False, 502, "upstream_error"),
    "stream answered as HTML": (
        lambda: stream([f"<html>{LEAK}</html>".encode()], content_type="text/html"),
        True,
        502,
        "upstream_error",
    ),
    "empty stream": (lambda: stream([]), True, 502, "upstream_error"),
    "stream of comments only": (lambda: stream([b": ping\n\n"] * 3), True, 502, "upstream_error"),
    "error as first event": (
        lambda: stream([f'data: {{"error": {{"message": "{LEAK}"}}}}\n\n'.encode()]),
        True,
        502,
        "upstream_error",
    ),
    "error behind a comment, CRLF, cut mid-boundary": (
        lambda: stream([b": ping\r\n", b'\r\ndata: {"err', ERROR_TAIL, b"\n\r\n"]),
        True,
        502,
        "upstream_error",
    ),
    "declared body over 64 MiB": (
        lambda: hang(after=b"HTTP/1.1 200 OK\r\nContent-Length: 209715200\r\n\r\n{"),
        False,
        502,
        "upstream_error",
    ),
    "headers dripped slower than timeout": (
        lambda: drip(200, orjson.dumps(chat_completion()), 0.02, headers_too=True),
        False,
        504,
        "upstream_timeout",
    ),
}


@pytest.mark.parametrize("fault", BEFORE_FIRST_BYTE)
async def test_fault_before_first_byte_is_a_clean_error(gateway: Any, fault: str) -> None:
    behaviour, streamed, status, code = BEFORE_FIRST_BYTE[fault]
    async with raw_upstream(behaviour()) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json={**CHAT, "stream": streamed})
        text = await response.text()
        assert response.status == status, text
        assert_clean_error(text, status, code)
        assert response.headers["X-Cache"] == "MISS"
        assert await cache_entries(gw) == 0
        # Nothing was stored: the same request goes upstream again (and now succeeds).
        again = await gw.post("/v1/chat/completions", json={**CHAT, "stream": streamed})
        assert again.status == 200 and again.headers["X-Cache"] == "MISS"
        await again.read()
        assert len(up.requests) == 2


@pytest.mark.parametrize("fault", BEFORE_FIRST_BYTE)
async def test_fault_before_first_byte_falls_back(gateway: Any, fault: str) -> None:
    behaviour, streamed, _, _ = BEFORE_FIRST_BYTE[fault]
    async with raw_upstream(behaviour()) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json={**CHAIN, "stream": streamed})
        body = await response.read()
        assert response.status == 200, body
        assert response.headers["X-LLMGW-Provider"] == "backup"
        assert response.headers["X-LLMGW-Attempts"] == "2"
        assert LEAK.encode() not in body and b"error" not in body
        if streamed:
            assert body.endswith(b"data: [DONE]\n\n")


async def test_connection_refused(gateway: Any) -> None:
    gw = await gateway(config(f"http://127.0.0.1:{free_port()}/v1"))
    response = await gw.post("/v1/chat/completions", json=CHAT)
    assert_clean_error(await response.text(), 502, "upstream_error")
    response = await gw.post("/v1/chat/completions", json=CHAIN)
    assert response.status == 200 and response.headers["X-LLMGW-Provider"] == "backup"


# Faults after the first byte: the stream ends with an error event --------------------

HEAD_EVENTS = chat_chunks(["partial"])[:2]
AFTER_FIRST_BYTE: dict[str, tuple[RawBehaviour, str]] = {
    "reset mid-stream": (stream(HEAD_EVENTS, end="reset"), "cut off"),
    "hang mid-stream": (stream(HEAD_EVENTS, end="hang"), "did not answer in time"),
    "no [DONE]": (stream(chat_chunks(["partial"])[:-1]), "ended before it was done"),
    "half an event at the end": (
        stream([*HEAD_EVENTS, b'data: {"id": "chatcmpl-fake123", "choi']),
        "ended before it was done",
    ),
}


@pytest.mark.parametrize("fault", AFTER_FIRST_BYTE)
async def test_fault_after_first_byte_ends_with_error_event(gateway: Any, fault: str) -> None:
    behaviour, message = AFTER_FIRST_BYTE[fault]
    async with raw_upstream(behaviour) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json=STREAM)
        body = await response.read()
        assert response.status == 200
        assert body.startswith(HEAD_EVENTS[0] + HEAD_EVENTS[1])
        [error] = error_events(body)
        assert message in error["message"] and error["code"] == "upstream_error"
        assert PROVIDER_KEY.encode() not in body
        assert await cache_entries(gw) == 0
        again = await gw.post("/v1/chat/completions", json=STREAM)
        assert again.headers["X-Cache"] == "MISS"
        assert (await again.read()).endswith(b"data: [DONE]\n\n")
        assert len(up.requests) == 2


# Streams that are odd but whole are relayed byte for byte -------------------------------


async def test_giant_event_is_relayed_intact(gateway: Any) -> None:
    giant = chat_chunks(["x" * (3 * 1024 * 1024)])
    async with raw_upstream(stream(giant)) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json=STREAM)
        assert await response.read() == b"".join(giant)


async def test_slow_drip_stream_is_relayed_intact(gateway: Any) -> None:
    whole = b"".join(chat_chunks(["drip", "drop"]))
    pieces = [whole[i : i + 40] for i in range(0, len(whole), 40)]
    async with raw_upstream(stream(pieces, delay=0.01)) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json=STREAM)
        assert await response.read() == whole
        assert response.headers["X-Cache"] == "MISS"
        assert await cache_entries(gw) == 1  # a complete stream is stored


async def test_slow_drip_json_within_read_timeout_is_relayed(gateway: Any) -> None:
    body = orjson.dumps(chat_completion("slow"))
    async with raw_upstream(drip(200, body, 0.01, size=25)) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json=CHAT)
        assert response.status == 200 and await response.read() == body


# Storms and the circuit breaker --------------------------------------------------------


async def test_retry_after_is_honoured_between_retries(gateway: Any) -> None:
    async with raw_upstream(error_status(429, **{"Retry-After": "0.4"})) as up:
        gw = await gateway(config(up.url, retries=1))
        began = time.monotonic()
        response = await gw.post("/v1/chat/completions", json=CHAT)
        assert response.status == 200
        assert time.monotonic() - began >= 0.4
        assert response.headers["X-LLMGW-Attempts"] == "2"


async def test_storm_without_retry_after_backs_off_then_gives_503(gateway: Any) -> None:
    async with raw_upstream() as up:
        up.default = error_status(503)
        gw = await gateway(config(up.url, retries=2))
        began = time.monotonic()
        response = await gw.post("/v1/chat/completions", json=CHAT)
        elapsed = time.monotonic() - began
        assert_clean_error(await response.text(), 503, "no_provider_available")
        assert "Retry-After" not in response.headers  # none was sent: none is invented
        assert len(up.requests) == 3
        # Backoff with full jitter: 125-250 ms, then 250-500 ms.
        assert 0.375 <= elapsed < 2.0


async def test_storm_opens_the_circuit_then_one_trial_closes_it(gateway: Any) -> None:
    async with raw_upstream() as up:
        up.default = error_status(500)
        routing = "routing:\n  circuit_breaker: {failures: 3, cooldown: 400ms}"
        gw = await gateway(config(up.url, routing=routing, timeout="10s"))
        for _ in range(3):
            assert (await gw.post("/v1/chat/completions", json=CHAT)).status == 502
        # Open: no more attempts reach the provider; the answer is 503, not 502.
        for _ in range(5):
            response = await gw.post("/v1/chat/completions", json=CHAT)
            assert_clean_error(await response.text(), 503, "no_provider_available")
        assert len(up.requests) == 3
        fallback = await gw.post("/v1/chat/completions", json=CHAIN)
        assert fallback.headers["X-LLMGW-Provider"] == "backup"
        assert fallback.headers["X-LLMGW-Attempts"] == "1"
        metrics = await (await gw.get("/metrics")).text()
        assert 'llmgw_circuit_state{provider="up"} 1.0' in metrics
        assert 'llmgw_upstream_attempts_total{outcome="status_500",provider="up"} 3.0' in metrics

        up.default = answer_json(chat_completion("healed"))
        await asyncio.sleep(0.45)
        response = await gw.post("/v1/chat/completions", json=CHAT)
        assert response.status == 200 and len(up.requests) == 4
        status = await (await gw.get("/api/v1/providers/status")).json()
        assert status["providers"]["up"]["circuit"] == "closed"


async def test_failed_trial_reopens_the_circuit(gateway: Any) -> None:
    async with raw_upstream() as up:
        up.default = reset_before_headers()
        routing = "routing:\n  circuit_breaker: {failures: 1, cooldown: 200ms}"
        gw = await gateway(config(up.url, routing=routing, timeout="10s"))
        assert (await gw.post("/v1/chat/completions", json=CHAT)).status == 502
        assert (await gw.post("/v1/chat/completions", json=CHAT)).status == 503
        await asyncio.sleep(0.25)
        assert (await gw.post("/v1/chat/completions", json=CHAT)).status == 502  # the trial
        assert (await gw.post("/v1/chat/completions", json=CHAT)).status == 503
        assert len(up.requests) == 2


# A provider's 4xx is the client's to see, but always as a JSON error ------------------


async def test_provider_4xx_that_is_not_json_becomes_a_json_error(gateway: Any) -> None:
    async with raw_upstream(
        answer(404, f"<html>{LEAK} Not Found</html>".encode(), "text/html")
    ) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json=CHAIN)
        text = await response.text()
        assert response.status == 404 and response.content_type == "application/json"
        error = orjson.loads(text)["error"]
        assert error["type"] == "invalid_request_error" and "404" in error["message"]
        assert LEAK not in text and len(up.requests) == 1  # the client's fault: no fallback


async def test_provider_4xx_json_is_relayed_as_sent(gateway: Any) -> None:
    body = {"error": {"message": "context_length_exceeded", "type": "invalid_request_error"}}
    async with raw_upstream(answer_json(body, 400)) as up:
        gw = await gateway(config(up.url))
        response = await gw.post("/v1/chat/completions", json=CHAT)
        assert response.status == 400 and await response.json() == body
