"""The OpenAPI 3.1 document of the gateway's own endpoints, served at ``/openapi.json``.

It describes what the gateway itself checks and answers (SPEC §3): the client
endpoints with the fields ``api/calls.py`` validates (anything else is the provider's
to judge, so request bodies allow more), the error bodies in OpenAI's and Anthropic's
shapes, and the operations endpoints. The test suite fuzzes the gateway against it.
By concern: the JSON client endpoints in ``openapi_client.py``, the audio uploads
(multipart/form-data) in ``openapi_audio.py``, the simple prompt APIs and health
aliases in ``openapi_simple.py``, shared parts in ``openapi_parts.py``; here the
operations endpoints and the assembled document.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from llmgw import __version__
from llmgw.api import openapi_audio, openapi_client, openapi_simple
from llmgw.api.openapi_parts import (
    ADMIN_ERRORS,
    JSON,
    RELAYED,
    Schema,
    admin,
    errors,
    json,
    ref,
)

_SCHEMAS: dict[str, Schema] = {
    "Answer": {"type": "object", "description": "The provider's answer, in OpenAI's format"},
    "RelayedError": {"type": "object", "description": RELAYED},
    "Message": {"type": "object", "description": "The answer, in Anthropic's format"},
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": ["string", "null"]},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "AnthropicError": {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "object", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref("Model")},
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "config": {"type": "string"}},
    },
    "Reload": {
        "type": "object",
        "required": ["result", "errors"],
        "properties": {
            "result": {"enum": ["success", "unchanged", "error"]},
            "errors": {"type": "array", "items": {"type": "string"}},
            "hash": {"type": "string"},
        },
    },
}

DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "llmgw",
        "version": __version__,
        "description": "An OpenAI- and Anthropic-compatible LLM gateway: its own endpoints.",
    },
    "paths": {
        **openapi_client.PATHS,
        **openapi_audio.PATHS,
        "/health": {
            "get": {"summary": "Liveness", "responses": {"200": json(ref("Status"), "Alive")}}
        },
        "/ready": {
            "get": {
                "summary": "Readiness",
                "responses": {
                    "200": json(ref("Status"), "A config is loaded and a provider can serve"),
                    "503": json(ref("Status"), "Stopping, or no provider can serve"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (admin only; 404 when on server.metrics_port)",
                "security": [{"admin": []}],
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **errors("OpenAIError", 404, *ADMIN_ERRORS),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": json({"type": "object"}, "The OpenAPI document")},
            }
        },
        "/api/v1/providers/status": {
            "get": admin("Per provider: enabled, circuit, latency, errors", ["providers"])
        },
        "/api/v1/usage": {"get": admin("Requests, tokens and cost", ["total"])},
        "/api/v1/cache/stats": {
            "get": admin("Cache statistics", ["entries", "bytes", "hits", "misses", "evictions"])
        },
        "/api/v1/cache/clear": {
            "post": admin("Empty the cache and the semantic index", ["cleared", "semantic_cleared"])
        },
        "/api/v1/config": {
            "get": admin("The running config, secrets redacted", ["hash", "config", "last_reload"])
        },
        "/api/v1/config/reload": {
            "post": admin(
                "Reload the config file now",
                ["result", "errors"],
                **{"422": json(ref("Reload"), "The file is invalid: the running config is kept")},
            )
        },
        **openapi_simple.PATHS,
    },
    "components": {
        "schemas": _SCHEMAS
        | openapi_client.SCHEMAS
        | openapi_audio.SCHEMAS
        | openapi_simple.SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "A client key"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "googApiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
            "admin": {"type": "http", "scheme": "bearer", "description": "auth.admin_key"},
            "bareKey": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "A client key without `Bearer ` (the simple prompt APIs only)",
            },
        },
    },
}
_BODY = orjson.dumps(DOCUMENT)


async def document(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type=JSON)
