"""The OpenAPI 3.1 document of the gateway's own endpoints, served at ``/openapi.json``.

It describes what the gateway itself checks and answers (SPEC §3): the client
endpoints with the fields ``api/calls.py`` validates (anything else is the provider's
to judge, so request bodies allow more), the error bodies in OpenAI's and Anthropic's
shapes, and the operations endpoints. The test suite fuzzes the gateway against it.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from llmgw import __version__
from llmgw.api import openapi_simple
from llmgw.api.openapi_parts import (
    ADMIN_ERRORS,
    CLIENT_SECURITY,
    JSON,
    NULLABLE_INT,
    RELAYED,
    Schema,
    admin,
    client_errors,
    errors,
    json,
    ref,
)


def _speech() -> Schema:
    """Text to speech: the audio comes back as bytes, in the provider's content type."""
    operation = _client_call("Text to speech", "SpeechRequest", "OpenAIError", "Answer")
    audio = {"schema": {"type": "string", "format": "binary"}}
    operation["responses"]["200"] = {
        "description": "The audio, streamed in the provider's content type",
        "content": {"audio/*": audio, "application/octet-stream": audio},
    }
    return operation


def _client_call(summary: str, body: str, errors: str, answer: str) -> Schema:
    return {
        "summary": summary,
        "security": CLIENT_SECURITY,
        "parameters": [
            {
                "name": "Cache-Control",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            },
            {
                "name": "X-Request-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            },
        ],
        "requestBody": {"required": True, "content": {JSON: {"schema": ref(body)}}},
        "responses": {
            "200": {
                "description": "The answer: JSON, or an SSE stream when `stream` is true",
                "content": {
                    JSON: {"schema": ref(answer)},
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            },
            **client_errors(errors),
        },
    }


_COMMON_FIELDS: Schema = {
    "model": {"type": "string", "minLength": 1, "pattern": r"\S"},
    "stream": {"type": ["boolean", "null"]},
    "stream_options": {"type": ["object", "null"]},
    "user": {"type": ["string", "null"]},
}
_MESSAGES: Schema = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "object", "required": ["role"], "properties": {"role": {"type": "string"}}},
}

_SCHEMAS: dict[str, Schema] = {
    "ChatRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            **_COMMON_FIELDS,
            "messages": _MESSAGES,
            "max_tokens": NULLABLE_INT,
            "max_completion_tokens": NULLABLE_INT,
            "n": NULLABLE_INT,
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {**_COMMON_FIELDS, "prompt": {"type": ["string", "array"]}},
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            **_COMMON_FIELDS,
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1}]},
        },
    },
    "MessagesRequest": {
        "type": "object",
        "required": ["model", "messages", "max_tokens"],
        "properties": {
            **_COMMON_FIELDS,
            "messages": _MESSAGES,
            "max_tokens": {"type": "integer", "minimum": 1},
            "system": {"type": ["string", "array", "null"]},
        },
    },
    "ResponsesRequest": {
        "type": "object",
        "required": ["model"],
        "anyOf": [{"required": ["input"]}, {"required": ["previous_response_id"]}],
        "properties": {
            **_COMMON_FIELDS,
            "input": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "minItems": 1, "items": {"type": "object"}},
                ]
            },
            "instructions": {"type": ["string", "null"]},
            "previous_response_id": {"type": ["string", "null"]},
            "tools": {"type": ["array", "null"]},
            "text": {"type": ["object", "null"]},
            "max_output_tokens": NULLABLE_INT,
        },
    },
    "CountTokensRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {"model": _COMMON_FIELDS["model"], "messages": _MESSAGES},
    },
    "ModerationRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": _COMMON_FIELDS["model"],
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1}]},
        },
    },
    "ImageRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            "model": _COMMON_FIELDS["model"],
            "prompt": {"type": "string", "minLength": 1},
        },
    },
    "SpeechRequest": {
        "type": "object",
        "required": ["model", "input", "voice"],
        "properties": {
            "model": _COMMON_FIELDS["model"],
            "input": {"type": "string", "minLength": 1},
            "voice": {"oneOf": [{"type": "string", "minLength": 1}, {"type": "object"}]},
        },
    },
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
        "/v1/chat/completions": {
            "post": _client_call("Chat completion", "ChatRequest", "OpenAIError", "Answer")
        },
        "/v1/completions": {
            "post": _client_call("Legacy completion", "CompletionRequest", "OpenAIError", "Answer")
        },
        "/v1/embeddings": {
            "post": _client_call("Embeddings", "EmbeddingRequest", "OpenAIError", "Answer")
        },
        "/v1/responses": {
            "post": _client_call("Responses API", "ResponsesRequest", "OpenAIError", "Answer")
        },
        "/v1/moderations": {
            "post": _client_call("Moderations", "ModerationRequest", "OpenAIError", "Answer")
        },
        "/v1/images/generations": {
            "post": _client_call("Image generation", "ImageRequest", "OpenAIError", "Answer")
        },
        "/v1/audio/speech": {"post": _speech()},
        "/v1/messages": {
            "post": _client_call(
                "Anthropic Messages API", "MessagesRequest", "AnthropicError", "Message"
            )
        },
        "/v1/messages/count_tokens": {
            "post": _client_call(
                "Anthropic token count", "CountTokensRequest", "AnthropicError", "Message"
            )
        },
        "/v1/models": {
            "get": {
                "summary": "Aliases and provider models",
                "security": CLIENT_SECURITY,
                "responses": {
                    "200": json(ref("ModelList"), "The models"),
                    **errors("OpenAIError", 401),
                },
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "One model",
                "security": CLIENT_SECURITY,
                "parameters": [
                    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": json(ref("Model"), "The model"),
                    "400": json(
                        ref("OpenAIError"),
                        "A model name over 256 characters or with control characters",
                    ),
                    **errors("OpenAIError", 401, 404),
                },
            }
        },
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
        "/api/v1/cache/clear": {"post": admin("Empty the cache", ["cleared"])},
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
        "schemas": _SCHEMAS | openapi_simple.SCHEMAS,
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
