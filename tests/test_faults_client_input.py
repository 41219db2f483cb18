"""Client faults in what is sent: slowloris heads, pipelining, oversized and malformed
requests, bytes that are not UTF-8, deep nesting, huge arrays and wrong types.

The answer is always a 4xx: JSON in the caller's dialect from the gateway, or
aiohttp's short ``400`` text for bytes that are not HTTP at all. Never a 500, never a
traceback, and the gateway keeps serving.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmgw.observe import logs
from tests.conftest import CLIENT_KEY, Serve
from tests.fakes import free_port
from tests.test_faults_client import (
    ADMIN_KEY,
    healthy,
    no_gateway_errors,
    raw_exchange,
)

__all__ = ["no_gateway_errors"]  # a fixture shared with test_faults_client

CONFIG = f"""
server: {{max_body_size: 64KiB}}
providers:
  demo: {{type: mock}}
  up: {{type: anthropic, base_url: "http://127.0.0.1:9", api_key: k, models: [claude-x]}}
auth:
  admin_key: {ADMIN_KEY}
  keys: [{{name: team, key: {CLIENT_KEY}}}]
cache: {{enabled: true}}
"""
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
CHAT = {"model": "demo/x", "messages": [{"role": "user", "content": "hi"}]}


def error_of(text: str, status: int, code: str) -> dict[str, Any]:
    body = orjson.loads(text)
    assert body["error"]["code"] == code, text
    assert "Traceback" not in text and CLIENT_KEY not in text
    return dict(body["error"])


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in ``raw`` (Content-Length bodies only)."""
    found = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(fields.get("content-length", "0"))
        found.append((int(lines[0].split()[1]), raw[:length]))
        raw = raw[length:]
    return found


# Slowloris: a request head that never ends ----------------------------------------------


def test_slowloris_head_is_cut_off_by_the_keepalive_timeout(tmp_path: Path) -> None:
    """The real command line, with its keep-alive timeout shortened for the test: a
    client dripping its head (or sending nothing) is disconnected, not kept for ever."""
    path = tmp_path / "gateway.yaml"
    path.write_text("providers:\n  demo: {type: mock}\n")
    port = free_port()
    script = (
        "import sys, llmgw.server.lifecycle as l; l.KEEPALIVE_TIMEOUT = 0.5\n"
        "from llmgw.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = [sys.executable, "-c", script, "--config", str(path), "--port", str(port)]
    argv += ["--host", "127.0.0.1"]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, start_new_session=True)
    try:
        asyncio.run(_slowloris(port))
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert b"Traceback" not in err


async def _slowloris(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            assert time.monotonic() < deadline, "the gateway did not start"
            await asyncio.sleep(0.05)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n")

    async def drip() -> None:
        for index in range(100):
            writer.write(f"X-Drip-{index}: y\r\n".encode())
            await asyncio.sleep(0.1)

    dripping = asyncio.ensure_future(drip())
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed on us
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""
    assert time.monotonic() - began < 3
    dripping.cancel()
    writer.close()
    idle_writer.close()


# Pipelining and HTTP the gateway cannot parse ----------------------------------------------


async def test_pipelined_requests_are_answered_in_order(serve: Serve) -> None:
    gw = await serve(CONFIG)
    body = orjson.dumps(CHAT)
    chat = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {CLIENT_KEY}"
        f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    health = b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n"
    last = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n" + (
        f"Authorization: Bearer {CLIENT_KEY}\r\n\r\n".encode()
    )
    answers = responses(await raw_exchange(gw, health + chat + health + last))
    assert [status for status, _ in answers] == [200, 200, 200, 200]
    assert orjson.loads(answers[1][1])["choices"][0]["message"]["content"] == "hi"
    assert orjson.loads(answers[3][1])["object"] == "list"


MALFORMED = {
    "header line over 8 KiB": b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    "URL over 8 KiB": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
    "too many headers": b"GET /health HTTP/1.1\r\n" + b"X-H: y\r\n" * 200 + b"\r\n",
    "both lengths": (
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "negative length": b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "key with a control byte": b"GET /health HTTP/1.1\r\nAuthorization: Bearer "
    + CLIENT_KEY.encode()
    + b"\x01\r\n\r\n",
    "TLS on the HTTP port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_malformed_http_is_a_400_and_logs_one_line_without_the_bytes(
    serve: Serve, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await serve(CONFIG)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("debug", "text")
    err = ""
    try:
        answer = await raw_exchange(gw, MALFORMED[case])
        for _ in range(40):  # info lines are written in batches
            err += capsys.readouterr().err
            if "malformed HTTP request" in err:
                break
            await asyncio.sleep(0.05)
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    err += capsys.readouterr().err
    [(status, body)] = responses(answer)
    assert status == 400 and b"Traceback" not in body
    assert "malformed HTTP request from 127.0.0.1" in err
    assert "Traceback" not in err and CLIENT_KEY not in err and "aaaa" not in err
    await healthy(gw)


# Oversized -------------------------------------------------------------------------------


async def test_declared_body_over_the_limit_is_refused_before_it_is_sent(serve: Serve) -> None:
    gw = await serve(CONFIG)
    assert gw.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 30000000\r\n"
        f"Authorization: Bearer {CLIENT_KEY}\r\n\r\n"
    )
    writer.write(head.encode())  # and no body at all: the answer comes anyway
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    [(status, _)] = responses(answer)
    length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = await asyncio.wait_for(reader.readexactly(length), 2)
    writer.close()
    assert status == 413
    error_of(body.decode(), 413, "request_too_large")


async def test_chunked_body_over_the_limit_is_413(serve: Serve) -> None:
    gw = await serve(CONFIG)

    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 4096

    response = await gw.post("/v1/chat/completions", data=chunks(), headers=AUTH)
    error_of(await response.text(), 413, "request_too_large")
    await healthy(gw)


async def test_huge_arrays_are_served_or_refused_cleanly(serve: Serve) -> None:
    gw = await serve(CONFIG.replace("64KiB", "20MiB"))
    messages = [{"role": "user", "content": "x"}] * 200_000
    body = io.BytesIO(orjson.dumps({**CHAT, "messages": messages}))
    response = await gw.post("/v1/chat/completions", data=body, headers=AUTH)
    assert response.status == 200
    body = io.BytesIO(orjson.dumps({"model": "demo/e", "input": list(range(1_000_000))}))
    response = await gw.post("/v1/embeddings", data=body, headers=AUTH)
    assert response.status == 200


# Bytes that are not UTF-8, and nesting ------------------------------------------------------


@pytest.mark.parametrize("header", ["Authorization: Bearer ", "X-API-Key: ", "x-goog-api-key: "])
async def test_client_key_that_is_not_utf8_is_401(serve: Serve, header: str) -> None:
    gw = await serve(CONFIG)
    body = orjson.dumps(CHAT)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
        + header.encode()
        + b"\xff\xfe\xc3\x28\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    [(status, text)] = responses(await raw_exchange(gw, head + body))
    assert status == 401
    error_of(text.decode(), 401, "invalid_api_key")


async def test_admin_key_that_is_not_utf8_is_401(serve: Serve) -> None:
    gw = await serve(CONFIG)
    request = b"GET /api/v1/config HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
    request += b"Authorization: Bearer \xff" + ADMIN_KEY.encode() + b"\r\n\r\n"
    [(status, text)] = responses(await raw_exchange(gw, request))
    assert status == 401 and ADMIN_KEY.encode() not in text


async def test_anthropic_header_that_is_not_ascii_is_400(serve: Serve) -> None:
    gw = await serve(CONFIG)
    body = orjson.dumps({**CHAT, "model": "claude-x", "max_tokens": 5})
    request = (
        b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nanthropic-version: \xff\r\n"
        + f"x-api-key: {CLIENT_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    [(status, text)] = responses(await raw_exchange(gw, request))
    assert status == 400
    assert orjson.loads(text)["error"]["type"] == "invalid_request_error"  # Anthropic's shape


@pytest.mark.parametrize("raw", [b'{"model": "demo/x\xff"}', b"\xef\xbb\xbf{}", b"\x00" * 10])
async def test_body_that_is_not_utf8_json_is_400(serve: Serve, raw: bytes) -> None:
    gw = await serve(CONFIG)
    response = await gw.post("/v1/chat/completions", data=raw, headers=AUTH)
    error_of(await response.text(), 400, "invalid_request")


@pytest.mark.parametrize("depth", [201, 300, 1023, 5000])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_deeply_nested_json_is_400(serve: Serve, depth: int, path: str) -> None:
    gw = await serve(CONFIG)
    nested = b"[" * depth + b"]" * depth
    raw = b'{"model": "demo/x", "max_tokens": 5, "messages": [{"role": "user"}], "x": ' + nested
    response = await gw.post(path, data=raw + b"}", headers=AUTH)
    assert response.status == 400, await response.text()
    await healthy(gw)


async def test_nesting_at_the_limit_is_served(serve: Serve) -> None:
    gw = await serve(CONFIG)
    nested = b"[" * 199 + b"]" * 199
    raw = b'{"model": "demo/x", "messages": [{"role": "user", "content": "hi"}], "x": ' + nested
    response = await gw.post("/v1/chat/completions", data=raw + b"}", headers=AUTH)
    assert response.status == 200, await response.text()


# Wrong types in every field the gateway reads ------------------------------------------------

WRONG = [None, True, 7, 1.5, "text", [], [1], {}, {"a": 1}]
FIELDS = {
    ("chat", "model"): lambda v: not (isinstance(v, str) and v.strip()),
    ("chat", "stream"): lambda v: v is not None and not isinstance(v, bool),
    ("chat", "stream_options"): lambda v: v is not None and not isinstance(v, dict),
    ("chat", "user"): lambda v: v is not None and not isinstance(v, str),
    ("chat", "messages"): lambda v: v != [1] and not (isinstance(v, list) and v),
    ("chat", "max_tokens"): lambda v: v is not None and type(v) is not int,
    ("chat", "max_completion_tokens"): lambda v: v is not None and type(v) is not int,
    ("chat", "n"): lambda v: v is not None and type(v) is not int,
    ("completions", "prompt"): lambda v: not isinstance(v, str | list),
    ("embeddings", "input"): lambda v: not isinstance(v, str | list) or v == [],
    ("messages", "max_tokens"): lambda v: type(v) is not int or v < 1,
    ("messages", "system"): lambda v: v is not None and not isinstance(v, str | list),
}
PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "messages": "/v1/messages",
}
VALID = {
    "chat": CHAT,
    "completions": {"model": "demo/x", "prompt": "hi"},
    "embeddings": {"model": "demo/x", "input": "hi"},
    "messages": {**CHAT, "max_tokens": 5},
}


@pytest.mark.parametrize(("endpoint", "field"), FIELDS)
async def test_wrong_types_are_400_naming_the_field(
    serve: Serve, endpoint: str, field: str
) -> None:
    gw = await serve(CONFIG)
    for value in WRONG:
        body = {**VALID[endpoint], field: value}
        response = await gw.post(PATHS[endpoint], json=body, headers=AUTH)
        text = await response.text()
        assert response.status < 500 and "Traceback" not in text, text
        if FIELDS[endpoint, field](value):
            assert response.status == 400, (field, value, text)
            parsed = orjson.loads(text)
            if endpoint == "messages":
                assert parsed["type"] == "error"
            else:
                assert parsed["error"]["param"] == field, (field, value, text)


async def test_message_entries_of_the_wrong_type_are_400(serve: Serve) -> None:
    gw = await serve(CONFIG)
    for entry in [*WRONG, {"role": 5}, {"content": "x"}]:
        body = {**CHAT, "messages": [{"role": "user", "content": "ok"}, entry]}
        response = await gw.post("/v1/chat/completions", json=body, headers=AUTH)
        assert response.status == 400, entry
        assert (await response.json())["error"]["param"] == "messages[1]"


async def test_headers_the_gateway_reads_cannot_break_it(serve: Serve) -> None:
    gw = await serve(CONFIG)
    weird = {
        "X-Request-ID": "x" * 500 + "\t",
        "Cache-Control": "max-age=99999999999999999999999999, no-cache=, =,,",
        "Origin": "null",
        "Content-Type": "text/plain; charset=klingon",
    }
    for name, value in weird.items():
        response = await gw.post("/v1/chat/completions", json=CHAT, headers={**AUTH, name: value})
        assert response.status == 200, (name, await response.text())
        assert len(response.headers["X-Request-ID"]) <= 128
