"""The duty floor: the cheapest cache hit that still does what llmgw's benchmark config
asks of every hit, written flat in one aiohttp handler with no layers at all.

Mounted on the bare proxy as ``POST /duties/...``. Per request it: looks the bearer
key up and checks the model is allowed; reads the body and finds the stored answer
by (key, exact body); counts the request in four rate-limit windows (key, model,
client address, global) and takes and gives back a concurrency slot; checks two
monthly budgets (key, global); sends the answer with a request id, ``X-Cache`` and
six ``x-ratelimit-*`` headers; and accounts for it: a Prometheus counter and two
histograms, one JSON access line and one usage-ledger row, both written in batches
(lines to a file, rows to SQLite with one ``executemany``).

It is not a gateway (no reload, no errors in any documented shape, no routing, no
streaming): it only answers how cheap a hit with those duties can be on aiohttp, so
the distance between the floor (``/answer``), this, and llmgw's own hits can be read
off one table. A hit at twice the bare proxy's rate has to cost at most half its CPU.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from .targets import CLIENT_KEY

_LIMIT, _TOKENS = 100_000_000, 100_000_000_000
_BATCH = 256
_ROW = "insert into requests values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_TABLE = (
    "create table requests (ts real, request_id text, key text, model text, provider text,"
    " status int, cache text, prompt_tokens int, completion_tokens int, cost real)"
)


class Duties:
    """Everything a hit touches, made once per process."""

    def __init__(self, folder: Path) -> None:
        self.keys = {f"Bearer {CLIENT_KEY}": ("bench-team", frozenset({"auto", "bench-model"}))}
        self.answers: dict[tuple[str, bytes], bytes] = {}
        self.windows: dict[tuple[str, str], list[int]] = {}
        self.in_flight: dict[str, int] = {}
        self.spent = {"bench-team": 0.0, "global": 0.0}
        self.ids = itertools.count()
        self.token_windows: dict[tuple[str, str], list[int]] = {}
        registry = CollectorRegistry()
        labels = ["endpoint", "model", "provider", "status", "cache"]
        self.requests = Counter("duty_requests", "Requests.", labels, registry=registry)
        self.duration = Histogram("duty_duration", "Duration.", ["endpoint"], registry=registry)
        self.overhead = Histogram("duty_overhead", "Overhead.", ["endpoint"], registry=registry)
        # Moved by proxied requests only (``dutymiss.py``).
        self.attempts = Counter("duty_attempts", "Attempts.", ["provider", "outcome"],
                                registry=registry)  # fmt: skip
        self.tokens_used = Counter("duty_tokens", "Tokens.", ["provider", "model", "key", "kind"],
                                   registry=registry)  # fmt: skip
        self.cost = Counter("duty_cost", "Cost.", ["provider", "model", "key"], registry=registry)
        self.lines: list[bytes] = []
        self.rows: list[tuple[object, ...]] = []
        self.log: IO[bytes] = open(folder / "access.log", "ab")  # noqa: SIM115 (closed in close())
        self.db = sqlite3.connect(folder / "ledger.db")
        self.db.execute(_TABLE)

    def count(self, scope: tuple[str, str], window: int) -> int:
        """One more request in ``scope``'s minute; what is left of its limit."""
        counted = self.windows.get(scope)
        if counted is None or counted[0] != window:
            counted = self.windows[scope] = [window, 0]
        counted[1] += 1
        return _LIMIT - counted[1]

    def count_all(self, key: str, model: str, address: str, window: int) -> int:
        """One more request in the four windows (key, model, client address, global);
        what is left of the tightest."""
        return min(
            self.count(("key", key), window),
            self.count(("model", model), window),
            self.count(("ip", address), window),
            self.count(("global", ""), window),
        )

    def tokens(self, scope: tuple[str, str], window: int, tokens: int) -> int:
        """``tokens`` more (or fewer) in ``scope``'s minute; its total now."""
        counted = self.token_windows.get(scope)
        if counted is None or counted[0] != window:
            counted = self.token_windows[scope] = [window, 0]
        counted[1] += tokens
        return counted[1]

    def flush(self) -> None:
        if self.lines:
            self.log.write(b"\n".join(self.lines) + b"\n")
            self.log.flush()
            self.lines.clear()
        if self.rows:
            self.db.executemany(_ROW, self.rows)
            self.db.commit()
            self.rows.clear()

    def close(self) -> None:
        self.flush()
        self.log.close()
        self.db.close()


DUTIES = web.AppKey("duties", Duties)


async def caller(duties: Duties, request: web.Request) -> tuple[str, frozenset[str], bytes]:
    """The bearer key's name, its models and the body; 401 for an unknown key."""
    known = duties.keys.get(request.headers.get("Authorization", ""))
    if known is None:
        raise web.HTTPUnauthorized()
    return known[0], known[1], await request.read()


async def duty_hit(request: web.Request) -> web.Response:
    started = time.perf_counter()
    duties = request.app[DUTIES]
    key, models, body = await caller(duties, request)
    answer = duties.answers.get((key, body))
    if answer is None:  # the first time: parsed once, the answer stored
        call = orjson.loads(body)
        if call.get("model") not in models:
            return web.Response(status=403)
        answer = duties.answers[(key, body)] = _answer(call["model"])
    duties.in_flight[key] = duties.in_flight.get(key, 0) + 1
    try:
        now = time.time()
        window = int(now // 60)
        left = duties.count_all(key, "bench-model", request.remote or "", window)
        if duties.spent[key] >= _LIMIT or duties.spent["global"] >= _LIMIT:
            return web.Response(status=429)
        request_id = f"req_{next(duties.ids):024x}"
        reset = f"{60 - int(now % 60)}s"
        headers = {
            "X-Request-Id": request_id,
            "X-Cache": "HIT",
            "x-ratelimit-limit-requests": str(_LIMIT),
            "x-ratelimit-remaining-requests": str(left),
            "x-ratelimit-reset-requests": reset,
            "x-ratelimit-limit-tokens": str(_TOKENS),
            "x-ratelimit-remaining-tokens": str(_TOKENS),
            "x-ratelimit-reset-tokens": reset,
        }
        response = web.Response(body=answer, content_type="application/json", headers=headers)
    finally:
        duties.in_flight[key] -= 1
    took = time.perf_counter() - started
    account(duties, request, key, request_id, took, now, took, _HIT)
    return response


_HIT = ("bench-model", 200, "hit", 60, 16, 0.0)  # (model, status, cache, tokens in, out, cost)


def account(
    duties: Duties,
    request: web.Request,
    key: str,
    request_id: str,
    took: float,
    now: float,
    overhead: float,
    what: tuple[str, int, str, int, int, float],
) -> None:
    """One request's metrics, JSON access line and ledger row; ``what``: its model,
    status, cache result, tokens in and out, and cost."""
    model, status, cache, prompt, completion, cost = what
    duties.requests.labels("chat", model, "bench", str(status), cache).inc()
    duties.duration.labels("chat").observe(took)
    duties.overhead.labels("chat").observe(overhead)
    line = {
        "time": now,
        "level": "INFO",
        "logger": "access",
        "message": "request",
        "request_id": request_id,
        "method": request.method,
        "path": request.path,
        "status": status,
        "duration_ms": round(took * 1000, 3),
        "key": key,
        "model": model,
        "provider": "bench",
        "cache": cache.upper(),
        "client_ip": request.remote,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": cost,
    }
    duties.lines.append(orjson.dumps(line))
    duties.rows.append(
        (now, request_id, key, model, "bench", status, cache, prompt, completion, cost)
    )
    if len(duties.rows) >= _BATCH:
        duties.flush()


def _answer(model: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-duty",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "word " * 16},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 60, "completion_tokens": 16, "total_tokens": 76},
        }
    )


async def duties_ctx(app: web.Application) -> AsyncIterator[None]:
    with tempfile.TemporaryDirectory(prefix="llmgw-duties-") as folder:
        duties = app[DUTIES] = Duties(Path(folder))
        yield
        duties.close()
