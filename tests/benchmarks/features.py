"""Which of llmgw's features were really at work in the measured run, found by
asking the running gateway (not by reading its config): client keys, limits (per-IP
among them), `auto` routing, cache, budgets, the usage ledger, metrics, JSON logs,
and, where ``costs.py`` turns them on, tracing and the semantic cache.

Every answer reads ``on ...`` or ``OFF (why)``."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from . import bodies
from .client import Connection, Result, build_request
from .procs import HOST
from .targets import Target

ADMIN_KEY = "sk-bench-admin"  # auth.admin_key in tests/benchmarks/llmgw.yaml
KEY_NAME = "bench-team"  # the name of CLIENT_KEY in llmgw.yaml
IP_RPM = "90000000"  # limits.per_ip.rpm in llmgw.yaml: lower than every other rpm
EMBEDDING_MODEL = "bench-embed"  # cache.semantic.embedding_model where costs.py sets it
_ADMIN = f"Authorization: Bearer {ADMIN_KEY}\r\n"
# A gateway may still be working through a backlog left by the load (budgets on SQLite
# answered in tens of milliseconds each under load): wait that long for an answer.
PATIENCE = 20.0


async def _post(target: Target, key: str, body: bytes) -> Result:
    connection = await Connection.open(HOST, target.port)
    try:
        raw = build_request(HOST, target.port, target.path, body, key)
        return await asyncio.wait_for(connection.request(raw), PATIENCE)
    finally:
        connection.close()


async def _get(port: int, path: str, headers: str = _ADMIN) -> Result:
    connection = await Connection.open(HOST, port)
    try:
        raw = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{headers}\r\n".encode()
        return await asyncio.wait_for(connection.request(raw), PATIENCE)
    finally:
        connection.close()


async def _admin_json(target: Target, path: str) -> Any:
    try:
        answer = await _get(target.port, path)
    except TimeoutError:
        return {"status": f"no answer in {PATIENCE:.0f} s"}
    if answer.status != 200:
        return {"status": answer.status}
    return orjson.loads(answer.body)


async def probe(target: Target) -> dict[str, str]:
    try:
        return await _probe(target)
    except (TimeoutError, OSError) as error:
        return {"probe": f"FAILED ({type(error).__name__}: no answer in {PATIENCE:.0f} s)"}


async def _probe(target: Target) -> dict[str, str]:
    body = bodies.for_model(bodies.chat(stream=False, chunks=4, unique=False), target.model)
    anonymous = await _post(target, "", body)
    first = await _post(target, target.key, body)
    second = await _post(target, target.key, body)
    # /metrics is admin-only on the main port: tests/benchmarks/llmgw.yaml's admin key.
    metrics = await _get(target.port, "/metrics")
    cache = [r.headers.get("x-cache", "-") for r in (first, second)]
    limits = {k: v for k, v in first.headers.items() if k.startswith("x-ratelimit")}
    ip_rpm = limits.get("x-ratelimit-limit-requests")
    routing = first.headers.get("x-llmgw-routing", "")
    return {
        "client keys": "on" if anonymous.status == 401 else f"OFF (no key got {anonymous.status})",
        "limits": "on" if limits else "OFF (no x-ratelimit-* headers)",
        "per-IP limits": "on"
        if ip_rpm == IP_RPM
        else f"OFF (x-ratelimit-limit-requests {ip_rpm}, not the per-IP {IP_RPM})",
        "auto routing": f"on ({routing})"
        if target.model == "auto" and routing
        else f"OFF (model {target.model}, X-LLMGW-Routing {routing or 'absent'})",
        "cache": "on" if cache[1].upper() == "HIT" else f"OFF (X-Cache: {' then '.join(cache)})",
        "budgets": await budgets(target),
        "usage ledger": await ledger(target),
        "metrics": "on" if b"llmgw_requests_total" in metrics.body else "OFF",
    }


async def budgets(target: Target) -> str:
    """The bench key's budget has this month's spend, in the database."""
    answer = await _admin_json(target, "/api/v1/budget")
    if "budgets" not in answer:
        return f"OFF (/api/v1/budget answered {answer.get('status')})"
    for entry in answer["budgets"]:
        if entry["scope"] == f"key:{KEY_NAME}" and entry["tokens"]:
            return f"on (key:{KEY_NAME} spent {entry['tokens']:,} tokens)"
    return f"OFF (no spend on key:{KEY_NAME})"


async def ledger(target: Target) -> str:
    """The ledger has rows for the bench key (``source: database``)."""
    answer = await _admin_json(target, "/api/v1/usage?group_by=key")
    if answer.get("source") != "database":
        return f"OFF (/api/v1/usage?group_by=key: {answer.get('source') or answer})"
    rows = sum(g["requests"] for g in answer["groups"] if g.get("key") == KEY_NAME)
    return f"on ({rows:,} rows for {KEY_NAME})" if rows else "OFF (no rows)"


async def semantic(target: Target) -> str:
    """Each cache miss embedded its prompt: requests to the embedding model, counted
    under the bench key (their ledger rows, else the metrics)."""
    answer = await _admin_json(target, "/api/v1/usage?group_by=model")
    groups = answer.get("groups") or []
    calls = sum(g["requests"] for g in groups if g.get("model") == EMBEDDING_MODEL)
    return f"on ({calls:,} embeddings)" if calls else "OFF (no embedding calls)"


async def tracing(target: Target, sink_port: int) -> str:
    """The OTLP sink (the bench upstream) received exports since it started."""
    answer = await _get(sink_port, "/v1/traces", "")
    exports = int(answer.body or b"0") if answer.status == 200 else 0
    return f"on ({exports:,} OTLP exports received)" if exports else "OFF (no OTLP export)"


def json_logs(log_text: str) -> str:
    for line in reversed(log_text.splitlines()):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and "request_id" in record:
            return "on"
    return "OFF (no JSON request line in the log)"
