"""Secrets never leak (SPEC §3, §7): one real gateway process, logging at debug, run
through every kind of failure; then every log line, response, error body, metric and
admin answer is searched for every key the run knew.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes import chat_chunks, free_port
from tests.fault_fakes import (
    Conn,
    RawRequest,
    RawUpstream,
    answer,
    answer_json,
    error_status,
    hang,
    raw_upstream,
    reset_after_headers,
    reset_before_headers,
    stream,
)

PROVIDER = "sk-provider-leakcheck-4c9d1e77"
CLIENT = "sk-client-leakcheck-a81f03b2"
OTHER = "sk-client-leakcheck-second-77e2"
ADMIN = "adm-leakcheck-0f5e9c21d3"
HEADER = "tok-header-leakcheck-5521aa"
WRONG = "sk-presented-but-wrong-9d0c3b"
SECRETS = {
    "provider key": PROVIDER,
    "client key": CLIENT,
    "second client key": OTHER,
    "admin key": ADMIN,
    "secret header": HEADER,
    "wrong key a client presented": WRONG,
}
ENVIRON = {"P_KEY": PROVIDER, "C_KEY": CLIENT, "O_KEY": OTHER, "A_KEY": ADMIN, "H_TOK": HEADER}


def config(url: str, log_format: str) -> str:
    return f"""
logging: {{level: debug, format: {log_format}, log_prompts: true}}
providers:
  up:
    type: openai
    base_url: {url}
    api_key: ${{P_KEY}}
    models: [gpt-4o-mini]
    max_retries: 0
    timeout: 300ms
    read_timeout: 300ms
    response_timeout: 300ms
    headers: {{X-Custom-Token: "${{H_TOK}}"}}
  claude:
    type: anthropic
    base_url: {url}
    api_key: ${{P_KEY}}
    models: [claude-x]
    max_retries: 0
    timeout: 300ms
    response_timeout: 300ms
models:
  chain: [up/gpt-4o-mini, claude/claude-x]
cache: {{enabled: true}}
routing:
  circuit_breaker: {{failures: 0}}
auth:
  admin_key: ${{A_KEY}}
  keys:
    - {{name: team-a, key: "${{C_KEY}}"}}
    - {{name: team-b, key: "${{O_KEY}}", limits: {{rpm: 1}}}}
"""


def echo_key(status: int) -> Any:
    """A provider error that quotes the key it was sent, as some servers do."""

    async def behave(conn: Conn, request: RawRequest) -> None:
        sent = request.header("Authorization") or request.header("x-api-key") or ""
        body = {"error": {"message": f"bad key {sent} (header {request.header('X-Custom-Token')})"}}
        await answer_json(body, status)(conn, request)

    return behave


async def broken_stream(conn: Conn, request: RawRequest) -> None:
    """Cut off after the first byte. (What a provider streams in a 200 is its answer and
    is relayed byte for byte: the gateway does not search a stream's bytes.)"""
    await stream(chat_chunks(["ok"])[:2], end="reset")(conn, request)


SCRIPT = [
    echo_key(401),  # the gateway's own credential problem: 502, provider text dropped
    echo_key(400),  # the client's: relayed, with the key struck out
    echo_key(404),
    echo_key(500),
    error_status(429, **{"Retry-After": "0"}),
    reset_before_headers(),
    reset_after_headers(),
    hang(2),
    answer(200, f"<html>{PROVIDER}</html>".encode(), "text/html"),
    stream([f'data: {{"error": {{"message": "{PROVIDER}"}}}}\n\n'.encode()]),
    broken_stream,
]


@contextlib.asynccontextmanager
async def gateway_process(tmp_path: Path, url: str, log_format: str) -> AsyncIterator[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(config(url, log_format))
    port = free_port()
    log = (tmp_path / "stderr.log").open("wb")
    argv = [sys.executable, "-m", "llmgw", "--config", str(path), "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*argv, "--port", str(port)],
        stdout=log,
        stderr=log,
        env={**os.environ, **ENVIRON},
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{base}/health") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.05)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 15)
        log.close()


async def run_full_of_failures(base: str, up: RawUpstream, tmp_path: Path) -> list[bytes]:
    """Every failure we can think of; returns everything the gateway sent back."""
    seen: list[bytes] = []
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
    client = {"Authorization": f"Bearer {CLIENT}"}
    admin = {"Authorization": f"Bearer {ADMIN}"}

    async with aiohttp.ClientSession() as session:

        async def call(method: str, path: str, **kwargs: Any) -> None:
            async with session.request(method, base + path, **kwargs) as response:
                seen.append(str(response.raw_headers).encode() + await response.read())

        for index in range(len(SCRIPT)):
            streamed = index >= len(SCRIPT) - 2
            body = {**chat, "stream": streamed, "n": index}  # distinct: no cache hits
            await call("POST", "/v1/chat/completions", json=body, headers=client)
        await call("POST", "/v1/chat/completions", json={**chat, "model": "chain"}, headers=client)
        messages = {**chat, "model": "claude-x", "max_tokens": 5}
        await call("POST", "/v1/messages", json=messages, headers={"x-api-key": CLIENT})
        for headers in ({}, {"Authorization": f"Bearer {WRONG}"}, {"X-API-Key": WRONG}):
            await call("POST", "/v1/chat/completions", json=chat, headers=headers)
        for _ in range(2):  # team-b: rpm 1, then 429
            await call("POST", "/v1/chat/completions", json=chat, headers={"X-API-Key": OTHER})
        await call("POST", "/v1/chat/completions", data=b"{not json", headers=client)
        await call("GET", "/api/v1/config", headers={"Authorization": f"Bearer {WRONG}"})
        for path in ("/api/v1/config", "/api/v1/providers/status", "/api/v1/usage"):
            await call("GET", path, headers=admin)
        await call("GET", "/api/v1/cache/stats", headers=admin)
        await call("GET", "/metrics", headers=admin)
        # A config with a key in the wrong place: the reload fails and says why.
        path = tmp_path / "gateway.yaml"
        good = path.read_text()
        path.write_text(good.replace("base_url: http", "base_url: ${P_KEY}http", 1))
        await call("POST", "/api/v1/config/reload", headers=admin)
        await call("GET", "/api/v1/config", headers=admin)
        path.write_text(good)
        # A client that leaves mid-stream.
        up.then(stream(chat_chunks([f"w{i}" for i in range(30)]), delay=0.05))
        async with session.post(
            base + "/v1/chat/completions", json={**chat, "stream": True, "n": 99}, headers=client
        ) as response:
            await response.content.readuntil(b"\n\n")
    # Bytes that are not HTTP, with a key in them: aiohttp answers 400 quoting the bad
    # line to its sender (nobody else sees it), and the log must not quote it.
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /health HTTP/1.1\r\nAuthorization: Bearer {CLIENT}\x01\r\n\r\n".encode())
    assert (await reader.read()).startswith(b"HTTP/1.0 400 Bad Request")
    writer.close()
    await asyncio.sleep(0.3)
    return seen


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_anywhere_after_a_run_full_of_failures(
    tmp_path: Path, log_format: str
) -> None:
    async with raw_upstream(*SCRIPT) as up, gateway_process(tmp_path, up.url, log_format) as base:
        answers = await run_full_of_failures(base, up, tmp_path)
    logs = (tmp_path / "stderr.log").read_bytes()
    assert b"DEBUG" in logs or b'"level": "DEBUG"' in logs  # debug lines were written
    assert b"config reload failed" in logs and b"malformed HTTP request" in logs
    assert logs.count(b"watchfiles") == 0  # its debug lines about this very log file
    everything = {"logs": logs, **{f"answer {i}": a for i, a in enumerate(answers)}}
    for where, text in everything.items():
        for name, secret in SECRETS.items():
            assert secret.encode() not in text, f"{name} in {where}"
        assert b"Traceback" not in text, where
    # The provider was sent its key, and only it.
    for request in up.requests:
        assert CLIENT.encode() not in request.head and OTHER.encode() not in request.head
        assert WRONG.encode() not in request.head
    assert any(PROVIDER.encode() in r.head for r in up.requests)


async def test_config_api_redacts_every_secret(aiohttp_client: Any) -> None:
    from llmgw.app import create_app
    from llmgw.config import parse

    app = create_app(parse(config("http://127.0.0.1:9/v1", "json"), environ=ENVIRON))
    gw = await aiohttp_client(app)
    response = await gw.get("/api/v1/config", headers={"Authorization": f"Bearer {ADMIN}"})
    body = await response.read()
    for name, secret in SECRETS.items():
        assert secret.encode() not in body, name
    config_ = orjson.loads(body)["config"]
    assert config_["providers"]["up"]["api_key"] == "[redacted]"
    assert config_["providers"]["up"]["headers"]["X-Custom-Token"] == "[redacted]"
    assert config_["auth"]["admin_key"] == "[redacted]"
    assert {k["key"] for k in config_["auth"]["keys"]} == {"[redacted]"}
