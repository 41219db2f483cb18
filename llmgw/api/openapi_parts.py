"""What the OpenAPI document's parts share: references, error responses, security."""

from __future__ import annotations

from typing import Any

JSON = "application/json"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


REASONS = {
    400: "Malformed JSON, or a missing or wrong-typed field",
    401: "No key, or an unknown key",
    403: "The model is not in the key's allowlist, or the caller may not use this",
    404: "Unknown model or path",
    405: "Method not allowed",
    413: "Body over server.max_body_size",
    415: "A compressed body (Content-Encoding other than identity)",
    429: "A limit is reached",
    502: "Every target failed",
    503: (
        "No provider can serve (all disabled or circuits open), or the gateway holds"
        " server.max_pending_body_bytes of unfinished bodies"
    ),
    504: "Every target timed out",
}
# A provider's own 4xx about the request is relayed as it sent it (a JSON object).
RELAYED = "A provider's own error about the request, relayed (a JSON object)"


def errors(schema: str, *statuses: int) -> dict[str, Schema]:
    return {str(status): json(ref(schema), REASONS[status]) for status in statuses}


def client_errors(schema: str) -> dict[str, Schema]:
    either = {"anyOf": [ref(schema), ref("RelayedError")]}
    return {
        **errors(schema, 401, 403, 405, 413, 415, 429, 502, 503, 504),
        "400": json(either, f"{REASONS[400]}; or {RELAYED}"),
        "404": json(either, f"{REASONS[404]}; or {RELAYED}"),
        "4XX": json(ref("RelayedError"), RELAYED),
    }


ADMIN_ERRORS = (401, 403, 405)
CLIENT_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, {"googApiKey": []}]
NULLABLE_INT = {"type": ["integer", "null"]}


def admin(summary: str, required: list[str], **more: Schema) -> Schema:
    """An operations endpoint answering a JSON object with at least ``required``."""
    answer = {"type": "object", "required": required}
    return {
        "summary": summary,
        "security": [{"admin": []}],
        "responses": {"200": json(answer, "OK"), **more, **errors("OpenAIError", *ADMIN_ERRORS)},
    }
