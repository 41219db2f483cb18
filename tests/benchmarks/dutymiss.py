"""The miss duty floor: the cheapest proxied request (a cache miss) that still does what
llmgw's benchmark config asks of every request, written flat in one aiohttp handler.

Mounted on the bare proxy as ``POST /miss-duties/...``, beside the hit duty floor
(``dutyfloor.py``, whose per-process state it shares). Per request it: looks the bearer
key up; reads and parses the body and checks the model is allowed and the messages are
a list; looks the answer up by (key, exact body) and misses; routes ``auto`` by the
prompt's complexity (a word scan of the last message, as llmgw's classifier does) to
one of the two candidates; counts four rate-limit windows and the key's and model's
token windows, and holds a concurrency slot; reserves an estimate against two monthly
budgets; sends the body on with the chosen model written in, through the proxy's pooled
``ClientSession``; parses the answer for its usage, prices it and settles the budgets;
stores the answer for later hits; answers with a request id, ``X-Cache``, the provider
and model, and six ``x-ratelimit-*`` headers; and accounts for it as a hit does, plus
the attempts, tokens and cost counters.

It is not a gateway (no fallback, no retries, no errors in the documented shape, no
streaming, no reload): it only answers how cheap a proxied request with those duties
can be on aiohttp, so the non-streamed target (1.3x the bare proxy's CPU) can be read
against what the duties alone cost.
"""

from __future__ import annotations

import re
import time

import aiohttp
import orjson
from aiohttp import web

from .dutyfloor import _LIMIT, _TOKENS, DUTIES, account, caller

UPSTREAM = web.AppKey("upstream", str)  # the bare proxy's upstream, and its one pool:
SESSION = web.AppKey("session", aiohttp.ClientSession)  # (shared with its proxy route)
_PRICES = {"bench-model": (2.50e-6, 10.00e-6), "bench-mini": (0.15e-6, 0.60e-6)}
_WORD = re.compile(r"[a-z]+")
_HARD = frozenset({"prove", "derive", "integral", "theorem", "algorithm", "refactor",
                   "debug", "traceback", "optimize", "architecture", "analyze"})  # fmt: skip
_KEPT = 100_000  # answers kept for hits: the oldest go first


def _route(call: dict[str, object]) -> str:
    """``auto``: the cheap candidate for a simple prompt, the strong one otherwise."""
    messages = call["messages"]
    last = messages[-1] if isinstance(messages, list) and messages else {}
    text = last.get("content") if isinstance(last, dict) else None
    text = text if isinstance(text, str) else ""
    hard = len(text) > 400 or not _HARD.isdisjoint(_WORD.findall(text[-2000:].lower()))
    return "bench-model" if hard else "bench-mini"


async def duty_miss(request: web.Request) -> web.Response:
    started = time.perf_counter()
    duties = request.app[DUTIES]
    key, models, body = await caller(duties, request)
    stored = duties.answers.get((key, body))
    call = orjson.loads(body)
    if call.get("model") not in models or not isinstance(call.get("messages"), list):
        return web.Response(status=400)
    model = _route(call) if call["model"] == "auto" else call["model"]
    estimate = len(body) // 4 + int(call.get("max_tokens") or 4096)
    now = time.time()
    window = int(now // 60)
    left = duties.count_all(key, model, request.remote or "", window)
    tokens_left = _TOKENS - max(duties.tokens(("key", key), window, estimate),
                                duties.tokens(("model", model), window, estimate))  # fmt: skip
    price_in, price_out = _PRICES[model]
    held = estimate * price_out
    if duties.spent[key] + held >= _LIMIT or duties.spent["global"] + held >= _LIMIT:
        return web.Response(status=429)
    duties.spent[key] += held
    duties.spent["global"] += held
    duties.in_flight[key] = duties.in_flight.get(key, 0) + 1
    try:
        call["model"] = model
        sent = time.perf_counter()
        async with request.app[SESSION].post(
            request.app[UPSTREAM] + "/v1/chat/completions",
            data=orjson.dumps(call),
            headers={"Authorization": "Bearer sk-bench-upstream",
                     "Content-Type": "application/json"},
        ) as upstream:  # fmt: skip
            status, answer = upstream.status, await upstream.read()
        waited = time.perf_counter() - sent
    finally:
        duties.in_flight[key] -= 1
    usage = orjson.loads(answer).get("usage") or {} if status == 200 else {}
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    cost = prompt * price_in + completion * price_out
    for scope in (key, "global"):
        duties.spent[scope] += cost - held
    duties.tokens(("key", key), window, prompt + completion - estimate)
    duties.tokens(("model", model), window, prompt + completion - estimate)
    if status == 200 and stored is None:
        if len(duties.answers) >= _KEPT:
            del duties.answers[next(iter(duties.answers))]
        duties.answers[(key, body)] = answer
    request_id = f"req_{next(duties.ids):024x}"
    reset = f"{60 - int(now % 60)}s"
    headers = {
        "X-Request-Id": request_id,
        "X-Cache": "MISS",
        "X-LLMGW-Provider": "bench",
        "X-LLMGW-Model": model,
        "x-ratelimit-limit-requests": str(_LIMIT),
        "x-ratelimit-remaining-requests": str(left),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(_TOKENS),
        "x-ratelimit-remaining-tokens": str(tokens_left),
        "x-ratelimit-reset-tokens": reset,
    }
    response = web.Response(
        body=answer, status=status, content_type="application/json", headers=headers
    )
    took = time.perf_counter() - started
    duties.attempts.labels("bench", "ok" if status == 200 else "error").inc()
    duties.tokens_used.labels("bench", model, key, "prompt").inc(prompt)
    duties.tokens_used.labels("bench", model, key, "completion").inc(completion)
    duties.cost.labels("bench", model, key).inc(cost)
    account(duties, request, key, request_id, took, now, took - waited,
            (model, status, "miss", prompt, completion, cost))  # fmt: skip
    return response
