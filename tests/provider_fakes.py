"""Fake Anthropic, Gemini and Azure OpenAI upstreams, and the recorded fixtures.

Each fake is an aiohttp app served on 127.0.0.1 by the test. It checks every
request against what the real API accepts (headers, required fields, known keys,
alternating roles, tool results that answer a tool call) and records what it saw
and what was wrong in ``problems``; then it answers with the next scripted
behaviour, or with a default built from the fixtures.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from tests.conftest import CLIENT_KEY
from tests.fakes import Behaviour, Seen, chat_completion, reply_json

FIXTURES = Path(__file__).parent / "fixtures"
Check = Callable[[web.Request, dict[str, Any]], list[str]]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(fixture(name))
    return parsed


def pieces(data: bytes, size: int) -> list[bytes]:
    """``data`` cut every ``size`` bytes: network chunks that split events anywhere."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def reply_sse(data: bytes, size: int = 0) -> Behaviour:
    """Stream a recorded SSE body as separate writes: ``size`` bytes each, or (0) one
    event each, as the provider's servers do."""
    if size:
        chunks = pieces(data, size)
    else:
        boundary = b"\r\n\r\n" if b"\r\n\r\n" in data else b"\n\n"
        chunks = [event + boundary for event in data.split(boundary) if event]

    async def behave(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    return behave


class Fake:
    """What every fake shares: routes to one handler, a script, and the record."""

    check: Check

    def __init__(self, default: Behaviour) -> None:
        self.seen: list[Seen] = []
        self.problems: list[str] = []
        self.script: deque[Behaviour] = deque()
        self.default = default
        self.url = ""

    def then(self, *behaviours: Behaviour) -> Fake:
        self.script.extend(behaviours)
        return self

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw)
        self.seen.append(Seen(request.path_qs, dict(request.headers), body, raw))
        problems = self.check(request, body)
        self.problems.extend(problems)
        if problems:
            message = "; ".join(problems)
            return web.json_response({"error": {"message": message}}, status=400)
        behaviour = self.script.popleft() if self.script else self.default
        return await behaviour(request, body)


def _unknown(body: dict[str, Any], known: Iterable[str], where: str) -> list[str]:
    return [f"{where}: unknown field '{key}'" for key in body if key not in set(known)]


# Anthropic ---------------------------------------------------------------------------

ANTHROPIC_FIELDS = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "stream",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
]
ANTHROPIC_BLOCKS = {"text", "image", "document", "tool_use", "tool_result", "thinking"}


def check_anthropic(request: web.Request, body: dict[str, Any]) -> list[str]:
    problems = []
    if not request.headers.get("x-api-key"):
        problems.append("x-api-key header missing")
    if "authorization" in {h.lower() for h in request.headers}:
        problems.append("an Authorization header was sent")
    if not request.headers.get("anthropic-version"):
        problems.append("anthropic-version header missing")
    if not request.headers.get("content-type", "").startswith("application/json"):
        problems.append("content-type is not application/json")
    problems += _unknown(body, ANTHROPIC_FIELDS, "body")
    if not isinstance(body.get("max_tokens"), int):
        problems.append("max_tokens: Field required")
    messages = body.get("messages") or []
    if not messages or messages[0].get("role") != "user":
        problems.append("messages: the first message must use the user role")
    tool_ids: set[str] = set()
    for index, (message, previous) in enumerate(zip(messages, [None, *messages], strict=False)):
        if previous is not None and previous.get("role") == message.get("role"):
            problems.append(f"messages.{index}: roles must alternate")
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks:
            if block.get("type") not in ANTHROPIC_BLOCKS:
                problems.append(f"messages.{index}: unknown block type {block.get('type')}")
            if block.get("type") == "text" and not block.get("text"):
                problems.append(f"messages.{index}: text content blocks must be non-empty")
            if block.get("type") == "tool_use":
                tool_ids.add(block["id"])
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in tool_ids:
                problems.append(f"messages.{index}: tool_result without a matching tool_use")
    return problems


def anthropic_message(text: str, model: str) -> dict[str, Any]:
    message = fixture_json("anthropic/message_text.json")
    message["content"][0]["text"] = text
    message["model"] = model
    return message


def anthropic_stream(text: str, model: str) -> bytes:
    sse = fixture("anthropic/stream_text.sse").decode()
    sse = sse.replace('"text":"Hello"', '"text":' + orjson.dumps(text).decode())
    sse = sse.replace('"text":", wörld!"', '"text":""')
    return sse.replace("claude-sonnet-4-5-20250929", model).encode()


def anthropic_error(status: int, kind: str, message: str) -> Behaviour:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}
    return reply_json(body, status=status)


async def _anthropic_echo(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    last = body["messages"][-1]["content"]
    blocks = [{"text": last}] if isinstance(last, str) else last
    text = " ".join(str(b.get("text") or b.get("content") or "") for b in blocks)
    reply = f"echo: {text}"
    if body.get("stream"):
        return await reply_sse(anthropic_stream(reply, body["model"]))(request, body)
    return web.json_response(anthropic_message(reply, body["model"]))


class FakeAnthropic(Fake):
    check = staticmethod(check_anthropic)

    def __init__(self) -> None:
        super().__init__(_anthropic_echo)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.handle)
        return app


# Gemini ------------------------------------------------------------------------------

GEMINI_FIELDS = [
    "contents",
    "systemInstruction",
    "generationConfig",
    "tools",
    "toolConfig",
    "safetySettings",
]
GEMINI_CONFIG = [
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseJsonSchema",
    "responseSchema",
    "thinkingConfig",
]
GEMINI_PARTS = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}


def check_gemini(request: web.Request, body: dict[str, Any]) -> list[str]:
    problems = []
    if not request.headers.get("x-goog-api-key"):
        problems.append("x-goog-api-key header missing")
    if "authorization" in {h.lower() for h in request.headers}:
        problems.append("an Authorization header was sent")
    if request.path.endswith(":batchEmbedContents"):
        for item in body.get("requests") or [None]:
            if not item or not item.get("model", "").startswith("models/"):
                problems.append("requests[]: model must be models/{model}")
        return problems
    problems += _unknown(body, GEMINI_FIELDS, "body")
    problems += _unknown(body.get("generationConfig") or {}, GEMINI_CONFIG, "generationConfig")
    if ":streamGenerateContent" in request.path and request.query.get("alt") != "sse":
        problems.append("streamGenerateContent without alt=sse")
    calls: list[str] = []
    for index, content in enumerate(body.get("contents") or []):
        if content.get("role") not in ("user", "model"):
            problems.append(f"contents[{index}].role must be user or model")
        for part in content.get("parts") or []:
            kinds = set(part) & GEMINI_PARTS
            if len(kinds) != 1:
                problems.append(f"contents[{index}]: a part needs exactly one kind: {part}")
            if "functionCall" in part:
                calls.append(part["functionCall"]["name"])
            if "functionResponse" in part and part["functionResponse"]["name"] not in calls:
                problems.append(f"contents[{index}]: functionResponse for an unknown call")
            if "functionResponse" in part and not isinstance(
                part["functionResponse"].get("response"), dict
            ):
                problems.append(f"contents[{index}]: functionResponse.response must be an object")
    return problems


def gemini_sse(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


async def _gemini_echo(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    if request.path.endswith(":batchEmbedContents"):
        values = [[0.5, -0.25, 0.125] for _ in body["requests"]]
        return web.json_response({"embeddings": [{"values": v} for v in values]})
    last = body["contents"][-1]["parts"]
    reply = "echo: " + " ".join(p.get("text", "") for p in last)
    answer = fixture_json("gemini/generate_text.json")
    answer["candidates"][0]["content"]["parts"] = [{"text": reply}]
    if request.query.get("alt") == "sse":
        return await reply_sse(gemini_sse([answer]))(request, body)
    return web.json_response(answer)


class FakeGemini(Fake):
    check = staticmethod(check_gemini)

    def __init__(self) -> None:
        super().__init__(_gemini_echo)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1beta/models/{call}", self.handle)
        return app


# Azure OpenAI ------------------------------------------------------------------------


def check_azure(request: web.Request, body: dict[str, Any]) -> list[str]:
    problems = []
    if not request.headers.get("api-key"):
        problems.append("api-key header missing")
    if "authorization" in {h.lower() for h in request.headers}:
        problems.append("an Authorization header was sent")
    if not request.query.get("api-version"):
        problems.append("api-version query parameter missing")
    return problems


async def _azure_echo(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    deployment = request.match_info["deployment"]
    return web.json_response(chat_completion(f"from {deployment}", model="gpt-4o-2024-08-06"))


class FakeAzure(Fake):
    check = staticmethod(check_azure)

    def __init__(self) -> None:
        super().__init__(_azure_echo)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/openai/deployments/{deployment}/{path:.+}", self.handle)
        return app


async def serve(aiohttp_server: Any, fake: FakeAnthropic | FakeGemini | FakeAzure) -> None:
    """Serve ``fake`` on 127.0.0.1 and set its ``url`` to the server's origin."""
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")


# Reading translated streams ----------------------------------------------------------

SPLITS = (1, 3, 17, 64, 1 << 20)  # chunk sizes: every byte alone ... the whole body at once


def translate(translator: Any, data: bytes, size: int) -> bytes:
    """Feed ``data`` in ``size``-byte chunks, then finish; everything written, joined."""
    return b"".join([translator.feed(part) for part in pieces(data, size)] + [translator.finish()])


def sse_events(data: bytes) -> list[tuple[str | None, bytes]]:
    """``(event name, data)`` of each event of an SSE body (``\\n`` framing)."""
    out = []
    for raw in data.split(b"\n\n"):
        if not raw:
            continue
        name = None
        lines = []
        for line in raw.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                lines.append(line[6:])
        out.append((name, b"\n".join(lines)))
    return out


def openai_chunks(data: bytes) -> list[dict[str, Any]]:
    """The chunks of an OpenAI stream, each checked against the SDK's own model; the
    stream must end with ``[DONE]``."""
    from openai.types.chat import ChatCompletionChunk

    events = [payload for _, payload in sse_events(data)]
    assert events and events[-1] == b"[DONE]", data[-200:]
    chunks = [orjson.loads(e) for e in events[:-1]]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks


def collect_chat(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client assembles from chunks: text, tool calls, finish reason, usage."""
    text, finish, usage = "", None, None
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return {"text": text, "tool_calls": calls, "finish": finish, "usage": usage}


def anthropic_events(data: bytes) -> list[dict[str, Any]]:
    """The events of an Anthropic stream, each checked against the SDK's own types,
    with the SSE ``event`` name equal to the payload's ``type``."""
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    out = []
    for name, payload in sse_events(data):
        event = orjson.loads(payload)
        assert name == event["type"], (name, event)
        if name != "error":
            adapter.validate_python(event)
        out.append(event)
    return out


@asynccontextmanager
async def anthropic_client(gw: Any, api_key: str = CLIENT_KEY) -> AsyncIterator[Any]:
    """The official Anthropic SDK pointed at the gateway's root, with retries off."""
    import anthropic

    client = anthropic.AsyncAnthropic(base_url=str(gw.make_url("")), api_key=api_key, max_retries=0)
    try:
        yield client
    finally:
        await client.close()
