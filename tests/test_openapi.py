"""The gateway's OpenAPI document (``/openapi.json``), fuzzed with schemathesis.

The real gateway runs on 127.0.0.1 in a thread of its own (schemathesis calls it
synchronously) with the built-in mock provider. Every operation of the served
document gets bounded positive and negative examples; every answer must be documented,
conform to its schema, carry no traceback and never be a 5xx.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from llmgw.app import create_app
from llmgw.config import parse

KEY = "sk-openapi-fuzz-key-3141"
CONFIG = f"""
providers:
  demo: {{type: mock, models: [echo, echo-embedding]}}
models:
  fast: demo/echo
cache: {{enabled: true}}
auth:
  admin_key: {KEY}
  keys: [{{name: fuzz, key: {KEY}}}]
"""
EXAMPLES = int(os.environ.get("LLMGW_FUZZ_EXAMPLES", "25"))
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class BackgroundGateway:
    """The gateway app on 127.0.0.1:<free port>, served by a thread's own event loop."""

    def __init__(self, text: str) -> None:
        self.config = parse(text, environ={})
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(10), "the gateway did not start"
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        runner = web.AppRunner(create_app(self.config), handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with BackgroundGateway(CONFIG) as url:
        yield url


@pytest.fixture(scope="module")
def schema(base_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


def test_document_is_valid_openapi_31(base_url: str) -> None:
    response = requests.get(f"{base_url}/openapi.json", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document = orjson.loads(response.content)
    assert document["openapi"] == "3.1.0"
    assert not list(unresolved(document, document)), list(unresolved(document, document))
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (method, path)
    routes = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages"}
    routes |= {"/v1/models", "/v1/models/{model}", "/health", "/ready", "/metrics"}
    routes |= {"/api/v1/config", "/api/v1/config/reload", "/api/v1/usage"}
    routes |= {"/api/v1/cache/stats", "/api/v1/cache/clear", "/api/v1/providers/status"}
    routes |= {"/api/chat", "/api/chat/stream", "/gateway/query", "/", "/v1"}
    routes |= {f"/v1/health/{name}" for name in ("live", "ready", "detailed", "metrics")}
    routes |= {"/v1/responses", "/v1/moderations", "/v1/images/generations"}
    routes |= {"/v1/audio/speech", "/v1/audio/transcriptions", "/v1/audio/translations"}
    routes |= {"/v1/messages/count_tokens"}
    assert routes <= set(document["paths"])


def unresolved(node: Any, document: dict[str, Any]) -> Iterator[str]:
    """Every ``$ref`` in ``node`` that names nothing in ``document``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target: Any = document
            for part in ref.removeprefix("#/").split("/"):
                target = target.get(part) if isinstance(target, dict) else None
            if target is None:
                yield ref
        for value in node.values():
            yield from unresolved(value, document)
    elif isinstance(node, list):
        for value in node:
            yield from unresolved(value, document)


OPERATIONS = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/moderations"),
    ("POST", "/v1/images/generations"),
    ("POST", "/v1/audio/speech"),
    ("POST", "/v1/audio/transcriptions"),
    ("POST", "/v1/audio/translations"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/providers/status"),
    ("GET", "/api/v1/usage"),
    ("GET", "/api/v1/cache/stats"),
    ("POST", "/api/v1/cache/clear"),
    ("GET", "/api/v1/config"),
    ("POST", "/api/v1/config/reload"),
    ("POST", "/api/chat"),
    ("GET", "/api/chat/stream"),
    ("POST", "/api/chat/stream"),
    ("POST", "/gateway/query"),
    ("GET", "/v1/health/live"),
    ("GET", "/v1/health/ready"),
    ("GET", "/v1/health/detailed"),
    ("GET", "/v1/health/metrics"),
    ("GET", "/"),
    ("GET", "/v1"),
]


def fuzz(schema: Any, base_url: str, method: str, path: str, mode: GenerationMode) -> int:
    operation = schema[path][method]
    seen: list[int] = []
    checks = [*CHECKS, negative_data_rejection] if mode == GenerationMode.NEGATIVE else CHECKS

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=AUTH, timeout=10)
        seen.append(response.status_code)
        assert response.status_code < 500, response.text
        assert b"Traceback" not in response.content
        case.validate_response(response, checks=checks, headers=AUTH)
        if 400 <= response.status_code < 500 and response.status_code != 422:
            assert "error" in orjson.loads(response.content)  # the gateway's own error

    run()
    return len(seen)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_positive_examples_conform(schema: Any, base_url: str, method: str, path: str) -> None:
    assert fuzz(schema, base_url, method, path, GenerationMode.POSITIVE) > 0


SIMPLE = {"/api/chat", "/api/chat/stream", "/gateway/query"}
BODIES = [
    op for op in OPERATIONS if (op[1].startswith("/v1/") or op[1] in SIMPLE) and op[0] == "POST"
]


@pytest.mark.parametrize(("method", "path"), BODIES, ids=[f"{m} {p}" for m, p in BODIES])
def test_negative_examples_are_rejected_cleanly(
    schema: Any, base_url: str, method: str, path: str
) -> None:
    assert fuzz(schema, base_url, method, path, GenerationMode.NEGATIVE) > 0


def test_uploads_are_documented_as_multipart(base_url: str) -> None:
    document = requests.get(f"{base_url}/openapi.json", timeout=5).json()
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
        body = document["paths"][path]["post"]["requestBody"]["content"]
        assert list(body) == ["multipart/form-data"]
        name = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
        form = document["components"]["schemas"][name]
        assert form["required"] == ["file", "model"]
        assert form["properties"]["file"]["format"] == "binary"
    speech = document["paths"]["/v1/audio/speech"]["post"]["responses"]["200"]["content"]
    assert "audio/*" in speech
