"""The simple prompt APIs (SPEC §9) through HTTP: /api/chat, /api/chat/stream and
/gateway/query, each streamed or not, missed and hit, with fallback from a failing
first provider to a translated one; presets and default_model; bad input."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llmgw.config.providers import PRESET_TYPES
from llmgw.providers.presets import PRESETS
from tests.conftest import CLIENT_KEY, PROVIDER_KEY
from tests.fakes import FakeOpenAI, chat_chunks, reply_error, reply_stream
from tests.provider_fakes import FakeAnthropic


def config(openai_url: str, claude_url: str, extra: str = "") -> str:
    return f"""
providers:
  up:
    type: openai
    base_url: {openai_url}
    api_key: {PROVIDER_KEY}
    models: [gpt-4o-mini]
    max_retries: 0
  claude:
    type: anthropic
    base_url: {claude_url}
    api_key: {PROVIDER_KEY}
    models: [claude-haiku-4-5]
    max_retries: 0
  demo: {{type: mock, models: [echo], default_model: echo}}
  off: {{type: groq, api_key: "", models: [llama]}}
models:
  fast: [up/gpt-4o-mini, claude/claude-haiku-4-5]
cache: {{enabled: true}}
simple_api: {{enabled: true, model: fast}}
{extra}"""


def events(text: str) -> list[tuple[str | None, dict[str, Any]]]:
    """An SSE body as (event name, JSON data) pairs."""
    found = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        found.append((name, orjson.loads(data)))
    return found


async def ask(gw: Any, how: str, prompt: str, **fields: Any) -> Any:
    if how == "GET /api/chat/stream":
        return await gw.get("/api/chat/stream", params={"prompt": prompt, **fields})
    method, path = how.split(" ")
    return await gw.request(method, path, json={"prompt": prompt, **fields})


SURFACES = [
    "POST /api/chat",
    "GET /api/chat/stream",
    "POST /api/chat/stream",
    "POST /gateway/query",
]


@pytest.mark.parametrize("how", SURFACES)
async def test_miss_with_fallback_then_hit(
    how: str, gateway: Any, fake: FakeOpenAI, claude: FakeAnthropic
) -> None:
    fake.then(reply_error(500))  # the first target fails: the translated one answers
    gw = await gateway(config(fake.url, claude.url))
    first = await ask(gw, how, "Hello there")
    assert first.status == 200, await first.text()
    assert first.headers["X-Cache"] == "MISS" and first.headers["X-LLMGW-Provider"] == "claude"
    again = await ask(gw, how, "Hello there")
    assert again.headers["X-Cache"] == "HIT"
    assert len(fake.seen) == 1 and len(claude.seen) == 1  # the hit went nowhere
    if "stream" in how:
        assert first.headers["Content-Type"].startswith("text/event-stream")
        for response, cached in ((first, False), (again, True)):
            got = events(await response.text())
            deltas = "".join(data["delta"] for name, data in got if name is None)
            assert deltas == "echo: Hello there"
            name, done = got[-1]
            assert name == "done" and done["cached"] is cached and done["provider"] == "claude"
            assert done["usage"]["total_tokens"] > 0 and done["model"] == "claude-haiku-4-5"
        return
    for response, cached in ((first, False), (again, True)):
        body = await response.json()
        assert body["response"] == "echo: Hello there"
        assert body["cached"] is cached and body["provider"] == "claude"
        assert body["model"] == "claude-haiku-4-5"
        if how == "POST /api/chat":
            assert body["usage"]["total_tokens"] == (
                body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
            )
            assert isinstance(body["latency_ms"], float) and body["id"]
        else:
            assert set(body) == {"cached", "response", "provider", "model"}


@pytest.mark.parametrize("stream", [False, True])
async def test_provider_picks_its_default_model_and_stays_there(
    stream: bool, gateway: Any, fake: FakeOpenAI, claude: FakeAnthropic
) -> None:
    gw = await gateway(config(fake.url, claude.url))
    path = "/api/chat/stream" if stream else "/api/chat"
    response = await gw.post(path, json={"message": "Hi", "provider": "demo"})
    assert response.status == 200 and response.headers["X-LLMGW-Provider"] == "demo"
    text = await response.text()
    answer = (
        "".join(d["delta"] for n, d in events(text) if n is None)
        if stream
        else orjson.loads(text)["response"]
    )
    assert answer == "Hi"  # the mock echoes
    # a failing provider named in the request does not fall back elsewhere
    fake.then(reply_error(500))
    failed = await gw.post(path, json={"message": "Hi", "provider": "up", "model": "gpt-4o-mini"})
    assert failed.status == 502 and not claude.seen
    assert (await failed.json())["error"]["code"] == "upstream_error"


async def test_failure_after_first_byte_is_an_error_event(
    gateway: Any, fake: FakeOpenAI, claude: FakeAnthropic
) -> None:
    fake.then(reply_stream(chat_chunks(("one", "two"))[:3]))  # no end, no [DONE]
    gw = await gateway(config(fake.url, claude.url))
    response = await gw.get("/api/chat/stream", params={"prompt": "x", "model": "up/gpt-4o-mini"})
    got = events(await response.text())
    assert [d["delta"] for n, d in got if n is None] == ["one", "two"]
    assert got[-1][0] == "error" and got[-1][1]["error"]["message"]
    again = await gw.get("/api/chat/stream", params={"prompt": "x", "model": "up/gpt-4o-mini"})
    assert again.headers["X-Cache"] == "MISS"  # a broken stream is never cached
    await again.read()


async def test_openai_upstream_streamed_with_usage(
    gateway: Any, fake: FakeOpenAI, claude: FakeAnthropic
) -> None:
    fake.then(reply_stream(chat_chunks(("Hel", "lo"))))
    gw = await gateway(config(fake.url, claude.url))
    response = await gw.post("/api/chat/stream", json={"message": "x", "model": "up/gpt-4o-mini"})
    got = events(await response.text())
    assert [d["delta"] for n, d in got if n is None] == ["Hel", "lo"]
    assert got[-1] == (
        "done",
        {
            "id": "chatcmpl-fake123",
            "model": "gpt-4o-mini",
            "provider": "up",
            "cached": False,
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
        },
    )
    assert fake.seen[0].body["stream_options"] == {"include_usage": True}


async def test_bad_input_gets_documented_errors(
    gateway: Any, fake: FakeOpenAI, claude: FakeAnthropic
) -> None:
    gw = await gateway(config(fake.url, claude.url))
    cases: list[tuple[str, str, Any, int, str | None]] = [
        ("POST", "/api/chat", {}, 400, "prompt"),
        ("POST", "/api/chat", {"message": ""}, 400, "message"),
        ("POST", "/api/chat", {"message": "  "}, 400, "message"),
        ("POST", "/api/chat", {"prompt": 5}, 400, "prompt"),
        ("POST", "/api/chat", {"prompt": ["a"]}, 400, "prompt"),
        ("POST", "/api/chat", {"message": "a", "prompt": ["a"]}, 400, "prompt"),
        ("POST", "/api/chat/stream", {"message": "a", "prompt": " "}, 400, "prompt"),
        ("POST", "/api/chat", {"prompt": "a", "max_tokens": "9"}, 400, "max_tokens"),
        ("POST", "/api/chat", [1], 400, None),
        ("POST", "/gateway/query", {"provider": "nope", "prompt": "a"}, 404, "provider"),
        ("POST", "/gateway/query", {"provider": "off", "prompt": "a"}, 503, "provider"),
        ("POST", "/api/chat/stream", {"message": "a", "model": 3}, 400, "model"),
    ]
    for method, path, body, status, param in cases:
        response = await gw.request(method, path, json=body)
        error = (await response.json())["error"]
        assert response.status == status, (path, body, error)
        assert error["param"] == param and error["message"]
    unknown = await gw.post("/gateway/query", json={"provider": "nope", "prompt": "a"})
    assert "up, claude, demo, off" in (await unknown.json())["error"]["message"]
    empty = await gw.get("/api/chat/stream", params={"prompt": ""})
    assert empty.status == 400
    assert (await empty.json())["error"]["code"] == "invalid_request"
    long = await gw.get("/api/chat/stream", params={"prompt": "x" * 20_000})
    assert long.status in (400, 414)
    await long.read()


async def test_bare_authorization_key_and_simple_metrics(
    gateway: Any, fake: FakeOpenAI, claude: FakeAnthropic
) -> None:
    extra = f"auth:\n  admin_key: adm\n  keys:\n    - {{name: app, key: {CLIENT_KEY}}}\n"
    gw = await gateway(config(fake.url, claude.url, extra))
    refused = await gw.post("/api/chat", json={"message": "Hi", "provider": "demo"})
    assert refused.status == 401
    for header in (CLIENT_KEY, f"Bearer {CLIENT_KEY}"):
        ok = await gw.post(
            "/api/chat",
            json={"message": "Hi", "provider": "demo"},
            headers={"Authorization": header},
        )
        assert ok.status == 200, await ok.text()
    wrong = await gw.post("/api/chat", json={"message": "Hi"}, headers={"Authorization": "nope"})
    assert wrong.status == 401
    # elsewhere a bare key is not a key
    bare = await gw.post(
        "/v1/chat/completions",
        json={"model": "demo/echo", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": CLIENT_KEY},
    )
    assert bare.status == 401
    metrics = await (await gw.get("/metrics", headers={"Authorization": "Bearer adm"})).text()
    counted = [line for line in metrics.splitlines() if line.startswith("llmgw_requests_total{")]
    assert any('endpoint="simple"' in line and 'status="200"' in line for line in counted)


async def test_disabled_simple_api_is_not_served(
    gateway: Any, fake: FakeOpenAI, claude: FakeAnthropic
) -> None:
    gw = await gateway(
        config(fake.url, claude.url).replace("enabled: true, model: fast", "enabled: false")
    )
    response = await gw.post("/api/chat", json={"message": "Hi"})
    assert response.status == 404


async def test_presets_default_base_url_and_keyless_local_servers(
    gateway: Any, fake: FakeOpenAI
) -> None:
    assert set(PRESETS) == set(PRESET_TYPES)
    assert PRESETS["ollama"].base_url == "http://127.0.0.1:11434/v1"
    assert PRESETS["vllm"].base_url == "http://127.0.0.1:8000/v1"
    gw = await gateway(f"""
providers:
  local: {{type: ollama, base_url: {fake.url}, models: [llama3.2], default_model: llama3.2}}
  cloud: {{type: groq, models: [llama-3.3-70b-versatile]}}
  hf: {{type: huggingface, api_key: "", models: [m]}}
""")
    served = await gw.post("/gateway/query", json={"provider": "local", "prompt": "Hi"})
    assert served.status == 200, await served.text()
    assert (await served.json())["response"] == "echo from llama3.2"
    assert "Authorization" not in fake.seen[0].headers  # no key: none sent
    for name in ("cloud", "hf"):  # a hosted preset at its own URL needs a key
        response = await gw.post("/gateway/query", json={"provider": name, "prompt": "Hi"})
        assert response.status == 503
        assert "api_key" in (await response.json())["error"]["message"]
