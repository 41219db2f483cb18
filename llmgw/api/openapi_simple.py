"""The OpenAPI description of the simple prompt APIs, health and discovery (SPEC §9),
merged into ``/openapi.json`` by ``openapi.py``."""

from __future__ import annotations

from llmgw.api.openapi_parts import CLIENT_SECURITY, JSON, Schema, admin, client_errors, json, ref

_PROMPT: Schema = {"type": "string", "minLength": 1, "pattern": r"\S"}
_USAGE: Schema = {
    "type": ["object", "null"],
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}
_NAME: Schema = {"type": "string", "minLength": 1, "pattern": r"\S"}
_OPTIONAL_NAME: Schema = {**_NAME, "type": ["string", "null"]}  # null: unset
_SIMPLE_FIELDS: Schema = {
    "message": _PROMPT,
    "prompt": _PROMPT,
    "model": _OPTIONAL_NAME,
    "provider": _OPTIONAL_NAME,
    "system": {"type": ["string", "null"]},
    "max_tokens": {"type": ["integer", "null"], "minimum": 1},
    "temperature": {"type": ["number", "null"]},
}
SCHEMAS: dict[str, Schema] = {
    "SimpleRequest": {
        "type": "object",
        "description": "A prompt (`message` or `prompt`), and what may choose its model",
        "anyOf": [{"required": ["message"]}, {"required": ["prompt"]}],
        "properties": _SIMPLE_FIELDS,
    },
    "QueryRequest": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": _PROMPT,
            "provider": _SIMPLE_FIELDS["provider"],
            "model": _SIMPLE_FIELDS["model"],
        },
    },
    "SimpleAnswer": {
        "type": "object",
        "required": ["response", "model", "provider", "cached", "usage", "latency_ms"],
        "properties": {
            "id": {"type": ["string", "null"]},
            "response": {"type": "string"},
            "model": {"type": ["string", "null"]},
            "provider": {"type": ["string", "null"]},
            "cached": {"type": "boolean"},
            "usage": _USAGE,
            "latency_ms": {"type": "number"},
        },
    },
    "QueryAnswer": {
        "type": "object",
        "required": ["cached", "response", "provider", "model"],
        "properties": {
            "cached": {"type": "boolean"},
            "response": {"type": "string"},
            "provider": {"type": ["string", "null"]},
            "model": {"type": ["string", "null"]},
        },
    },
    "Discovery": {
        "type": "object",
        "required": ["name", "version", "endpoints"],
        "properties": {
            "name": {"const": "llmgw"},
            "version": {"type": "string"},
            "endpoints": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["path", "methods"],
                    "properties": {
                        "path": {"type": "string"},
                        "methods": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
}
_SIMPLE_STREAM = {
    "description": (
        'Server-sent events: `data: {"delta": "<text>"}` per piece, then `event: done` with'
        ' `{"id", "model", "provider", "cached", "usage"}`, or `event: error` with'
        ' `{"error": {...}}` for a failure after the first byte'
    ),
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "event": {"enum": ["message", "done", "error"]},
                    "data": {"type": "string"},
                },
            }
        }
    },
}


def _simple(summary: str, body: Schema, answer: Schema) -> Schema:
    """A simple prompt API: the chat itinerary's errors, OpenAI's shape."""
    return {
        "summary": summary,
        "security": [*CLIENT_SECURITY, {"bareKey": []}],
        "requestBody": {"required": True, "content": {JSON: {"schema": body}}},
        "responses": {"200": answer, **client_errors("OpenAIError")},
    }


_STREAM_QUERY = [
    {"name": name, "in": "query", "required": False, "schema": _NAME}
    for name in ("prompt", "message", "model", "provider")
]
_LIVE = {"get": {"summary": "Liveness", "responses": {"200": json(ref("Status"), "Alive")}}}
_READY = {
    "get": {
        "summary": "Readiness",
        "responses": {
            "200": json(ref("Status"), "A config is loaded and a provider can serve"),
            "503": json(ref("Status"), "Stopping, or no provider can serve"),
        },
    }
}
_DISCOVERY = {
    "get": {
        "summary": "The gateway's name, version and the endpoints it serves",
        "responses": {"200": json(ref("Discovery"), "What this gateway serves")},
    }
}
PATHS: Schema = {
    "/api/chat": {
        "post": _simple(
            "A prompt in, text out", ref("SimpleRequest"), json(ref("SimpleAnswer"), "The text")
        )
    },
    "/api/chat/stream": {
        "get": {
            "summary": "A prompt in the query string, text out as events",
            "security": [*CLIENT_SECURITY, {"bareKey": []}],
            "parameters": _STREAM_QUERY,
            "responses": {"200": _SIMPLE_STREAM, **client_errors("OpenAIError")},
        },
        "post": _simple("A prompt in, text out as events", ref("SimpleRequest"), _SIMPLE_STREAM),
    },
    "/gateway/query": {
        "post": _simple(
            "A prompt to a named provider", ref("QueryRequest"), json(ref("QueryAnswer"), "OK")
        )
    },
    "/v1/health/live": _LIVE,
    "/v1/health/ready": _READY,
    "/v1/health/detailed": {
        "get": admin(
            "Per provider: enabled, circuit, latency p50/p95, error rate, last error;"
            " Redis and database reachability",
            ["providers", "redis", "database"],
        )
    },
    "/v1/health/metrics": {
        "get": admin(
            "Totals: requests, errors, cache hit ratio, latency percentiles, tokens, cost",
            ["requests", "errors", "cache", "latency_ms", "tokens", "cost_usd"],
        )
    },
    "/": _DISCOVERY,
    "/v1": _DISCOVERY,
}
