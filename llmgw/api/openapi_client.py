"""The OpenAPI document's client endpoints (``/v1/*`` with JSON bodies): their
operations and the request bodies ``api/calls.py`` validates (anything else is the
provider's to judge, so the bodies allow more). Uploads are in ``openapi_audio.py``."""

from __future__ import annotations

from llmgw.api.openapi_parts import (
    CLIENT_SECURITY,
    JSON,
    NULLABLE_INT,
    Schema,
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

SCHEMAS: dict[str, Schema] = {
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
}

# The JSON client calls: path -> (summary, request schema, error schema, answer schema).
_CLIENT_CALLS = {
    "/v1/chat/completions": ("Chat completion", "ChatRequest", "OpenAIError", "Answer"),
    "/v1/completions": ("Legacy completion", "CompletionRequest", "OpenAIError", "Answer"),
    "/v1/embeddings": ("Embeddings", "EmbeddingRequest", "OpenAIError", "Answer"),
    "/v1/responses": ("Responses API", "ResponsesRequest", "OpenAIError", "Answer"),
    "/v1/moderations": ("Moderations", "ModerationRequest", "OpenAIError", "Answer"),
    "/v1/images/generations": ("Image generation", "ImageRequest", "OpenAIError", "Answer"),
    "/v1/messages": ("Anthropic Messages API", "MessagesRequest", "AnthropicError", "Message"),
    "/v1/messages/count_tokens": (
        "Anthropic token count",
        "CountTokensRequest",
        "AnthropicError",
        "Message",
    ),
}

PATHS: dict[str, Schema] = {
    **{path: {"post": _client_call(*call)} for path, call in _CLIENT_CALLS.items()},
    "/v1/audio/speech": {"post": _speech()},
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
}
