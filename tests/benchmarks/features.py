"""Which of llmgw's features were really at work in the measured run, found by
asking it (not by reading its config): auth, limits, cache, metrics, JSON logs."""

from __future__ import annotations

import asyncio

import orjson

from . import bodies
from .client import Connection, Result, build_request, get
from .procs import HOST
from .targets import Target

ADMIN_KEY = "sk-bench-admin"  # auth.admin_key in tests/benchmarks/llmgw.yaml


async def _post(target: Target, key: str, body: bytes) -> Result:
    connection = await Connection.open(HOST, target.port)
    try:
        raw = build_request(HOST, target.port, target.path, body, key)
        return await asyncio.wait_for(connection.request(raw), 10)
    finally:
        connection.close()


async def probe(target: Target) -> dict[str, str]:
    body = bodies.chat(stream=False, chunks=4, unique=False)
    anonymous = await _post(target, "", body)
    first = await _post(target, target.key, body)
    second = await _post(target, target.key, body)
    # /metrics is admin-only on the main port: tests/benchmarks/llmgw.yaml's admin key.
    metrics = await get(HOST, target.port, "/metrics", f"Authorization: Bearer {ADMIN_KEY}\r\n")
    cache = [r.headers.get("x-cache", "-") for r in (first, second)]
    limits = {k: v for k, v in first.headers.items() if k.startswith("x-ratelimit")}
    return {
        "client keys": "on" if anonymous.status == 401 else f"OFF (no key got {anonymous.status})",
        "limits": "on" if limits else "OFF (no x-ratelimit-* headers)",
        "cache": "on" if cache[1].upper() == "HIT" else f"OFF (X-Cache: {' then '.join(cache)})",
        "metrics": "on" if b"llmgw_requests_total" in metrics.body else "OFF",
    }


def json_logs(log_text: str) -> str:
    for line in reversed(log_text.splitlines()):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and "request_id" in record:
            return "on"
    return "OFF (no JSON request line in the log)"
