"""The soak's traffic: the gateway's config, the faulty upstream's faults, and the
clients' mix of requests (see ``soak`` for the run itself)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from tests.fakes import chat_completion
from tests.fault_fakes import (
    Conn,
    RawRequest,
    answer,
    drip,
    echo,
    error_status,
    hang,
    reset_after_headers,
    reset_before_headers,
    stream,
)

KEY = "sk-soak-client-key"
ADMIN = "sk-soak-admin-key"


def gateway_config(fast: str, faulty: str, rpm: bool) -> str:
    # An rpm window fills over its first minute (up to 600 ticks), so it is only switched
    # on when the warm-up outlasts that window.
    limits = "{rpm: 10000000, concurrency: 1000}" if rpm else "{concurrency: 1000}"
    return f"""
logging: {{level: warning, format: json}}
providers:
  fast: {{type: openai, base_url: "{fast}", api_key: k, models: [bench], max_retries: 0}}
  faulty:
    type: openai
    base_url: "{faulty}"
    api_key: k
    models: [shaky]
    max_retries: 1
    timeout: 300ms
    read_timeout: 300ms
  demo: {{type: mock, models: [echo, echo-embedding]}}
models:
  mixed: [faulty/shaky, fast/bench]
routing:
  circuit_breaker: {{failures: 5, cooldown: 1s}}
cache: {{enabled: true, max_size: 4MiB, ttl: 30s}}
auth:
  admin_key: {ADMIN}
  keys:
    - {{name: soak, key: {KEY}, limits: {limits}}}
"""


# The faulty upstream -------------------------------------------------------------------------

FAULTS: list[tuple[str, float]] = [
    ("ok", 30),
    ("500", 15),
    ("429", 5),
    ("reset before headers", 10),
    ("reset mid-stream", 10),
    ("hang", 8),
    ("malformed JSON", 5),
    ("truncated stream", 5),
    ("slow drip", 5),
    ("HTML", 5),
    ("reset after headers", 2),
]


async def faulty(conn: Conn, request: RawRequest) -> None:
    body = orjson.loads(request.body) if request.body else {}
    streamed = bool(body.get("stream"))
    fault = random.choices([f for f, _ in FAULTS], [w for _, w in FAULTS])[0]
    events = _events()
    behaviour = {
        "ok": echo,
        "500": error_status(500),
        "429": error_status(429, **{"Retry-After": "0"}),
        "reset before headers": reset_before_headers(),
        "reset mid-stream": stream(events[:3], end="reset"),
        "hang": hang(0.6),
        "malformed JSON": answer(200, b'{"id": "x", "choices": ['),
        "truncated stream": stream(events[:-1]),
        "slow drip": (
            stream([b"".join(events)[i : i + 64] for i in range(0, 2048, 64)], delay=0.005)
            if streamed
            else drip(200, orjson.dumps(chat_completion("drip")), 0.005, size=64)
        ),
        "HTML": answer(200, b"<html>maintenance</html>", "text/html"),
        "reset after headers": reset_after_headers(streamed),
    }[fault]
    await behaviour(conn, request)


def _events() -> list[bytes]:
    from tests.fakes import chat_chunks

    return chat_chunks([f"w{i} " for i in range(8)])


# Traffic ------------------------------------------------------------------------------------


@dataclass
class Tally:
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)

    def note(self, kind: str, status: int | str) -> None:
        self.kinds[kind] += 1
        self.statuses[str(status)] += 1
        if isinstance(status, int) and status == 500:
            self.server_errors.append(kind)


def _chat(model: str, *, stream: bool = False, unique: bool = True, chunks: int = 16) -> bytes:
    text = f"soak {random.getrandbits(48) if unique else random.randrange(20)}"
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": chunks,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
        body["metadata"] = {"chunk_delay_ms": "5"}
    return orjson.dumps(body)


async def _post(
    session: aiohttp.ClientSession, base: str, path: str, body: bytes, **kw: Any
) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    return await session.post(base + path, data=body, headers={**headers, **kw})


async def one(session: aiohttp.ClientSession, base: str, tally: Tally) -> None:
    kind = random.choices(KINDS, WEIGHTS)[0]
    chat = "/v1/chat/completions"
    try:
        if kind == "json":
            response = await _post(session, base, chat, _chat("fast/bench"))
        elif kind == "json repeated":
            response = await _post(session, base, chat, _chat("fast/bench", unique=False))
        elif kind == "stream":
            response = await _post(session, base, chat, _chat("fast/bench", stream=True))
        elif kind in ("stream with fallback", "json faulty"):
            streamed = kind.startswith("stream")
            model = "mixed" if streamed else "faulty/shaky"
            response = await _post(session, base, chat, _chat(model, stream=streamed))
        elif kind == "leaves mid-stream":
            response = await _post(session, base, chat, _chat("fast/bench", stream=True, chunks=60))
            with contextlib.suppress(aiohttp.ClientError, ValueError):
                await response.content.readuntil(b"\n\n")
            response.close()
            tally.note(kind, response.status)
            return
        elif kind == "slow reader":
            response = await _post(session, base, chat, _chat("fast/bench", stream=True, chunks=30))
            while await response.content.read(256):
                await asyncio.sleep(0.02)
            tally.note(kind, response.status)
            return
        elif kind == "invalid":
            body = random.choice(
                [
                    b"{not json",
                    b'{"model": 5}',
                    b"[" * 300,
                    b'{"model": "nope", "messages": [{"role": "user"}]}',
                ]
            )
            response = await _post(session, base, chat, body)
        elif kind == "wrong key":
            response = await session.post(
                base + chat, data=_chat("fast/bench"), headers={"X-API-Key": "sk-wrong"}
            )
        elif kind == "embeddings":
            body = orjson.dumps({"model": "echo-embedding", "input": ["a", "b"]})
            response = await _post(session, base, "/v1/embeddings", body)
        elif kind == "messages":
            body = orjson.dumps(
                {
                    "model": "echo",
                    "max_tokens": 8,
                    "stream": random.random() < 0.5,
                    "messages": [{"role": "user", "content": "hi"}],
                }
            )
            response = await _post(session, base, "/v1/messages", body)
        else:  # admin
            path = random.choice(
                ["/metrics", "/api/v1/providers/status", "/api/v1/usage", "/api/v1/cache/stats"]
            )
            response = await session.get(base + path, headers={"Authorization": f"Bearer {ADMIN}"})
        await response.read()
        tally.note(kind, response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.note(kind, type(exc).__name__)


TRAFFIC = {
    "json": 25,
    "json repeated": 10,
    "stream": 15,
    "stream with fallback": 10,
    "json faulty": 10,
    "leaves mid-stream": 6,
    "slow reader": 3,
    "invalid": 6,
    "wrong key": 2,
    "embeddings": 4,
    "messages": 5,
    "admin": 4,
}
KINDS, WEIGHTS = list(TRAFFIC), list(TRAFFIC.values())


async def workers(base: str, count: int, until: float, tally: Tally) -> None:
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker() -> None:
            while time.monotonic() < until:
                await one(session, base, tally)

        await asyncio.gather(*(worker() for _ in range(count)))
