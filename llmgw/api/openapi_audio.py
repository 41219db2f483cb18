"""The OpenAPI document's upload endpoints: ``/v1/audio/transcriptions`` and
``/v1/audio/translations``, multipart/form-data with the audio ``file`` and ``model``
(the fields ``api/audio.py`` checks; the others are the provider's to judge)."""

from __future__ import annotations

from llmgw.api.openapi_parts import CLIENT_SECURITY, JSON, Schema, client_errors, json, ref

FORM = "multipart/form-data"
_TEXT = {"schema": {"type": "string"}}


def _upload(summary: str, body: str) -> Schema:
    return {
        "summary": summary,
        "security": CLIENT_SECURITY,
        "requestBody": {
            "required": True,
            "content": {
                FORM: {
                    "schema": ref(body),
                    "encoding": {"file": {"contentType": "application/octet-stream"}},
                }
            },
        },
        "responses": {
            "200": {
                "description": (
                    "The text: JSON (json, verbose_json), or as the provider sent it"
                    " (text, srt, vtt)"
                ),
                "content": {
                    JSON: {"schema": ref("Answer")},
                    "text/plain": _TEXT,
                    "text/vtt": _TEXT,
                    "application/x-subrip": _TEXT,
                },
            },
            **client_errors("OpenAIError"),
            "408": json(ref("OpenAIError"), "The upload stopped arriving before it was whole"),
            "413": json(ref("OpenAIError"), "The file is over server.max_upload_size"),
        },
    }


_FIELDS: Schema = {
    "file": {"type": "string", "format": "binary", "description": "The audio"},
    "model": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"\S"},
    "prompt": {"type": "string"},
    "response_format": {"enum": ["json", "text", "srt", "verbose_json", "vtt"]},
    "temperature": {"type": "number", "minimum": 0, "maximum": 1},
}

SCHEMAS: dict[str, Schema] = {
    "TranscriptionRequest": {
        "type": "object",
        "required": ["file", "model"],
        "properties": {**_FIELDS, "language": {"type": "string"}},
    },
    "TranslationRequest": {
        "type": "object",
        "required": ["file", "model"],
        "properties": _FIELDS,
    },
}

PATHS: dict[str, Schema] = {
    "/v1/audio/transcriptions": {
        "post": _upload("Audio to text in its language", "TranscriptionRequest")
    },
    "/v1/audio/translations": {"post": _upload("Audio to English text", "TranslationRequest")},
}
