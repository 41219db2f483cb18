"""The mock's answers to the media endpoints (SPEC §12), deterministic and offline:
moderation results that flag nothing, a tiny PNG as ``b64_json`` or a ``data:`` URL,
a short valid WAV of silence, and a transcription naming the upload's size. Pure
functions."""

from __future__ import annotations

import base64
import struct
import time
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

# OpenAI's moderation categories (omni-moderation), all reported unflagged.
CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
MAX_IMAGES = 10  # OpenAI's bound on ``n`` for images
WAV_RATE = 8000  # samples per second of the mock's speech


def moderation(body: dict[str, Any], model: str, ident: str) -> bytes:
    value = body.get("input")
    inputs = value if isinstance(value, list) else [value]
    result = {
        "flagged": False,
        "categories": dict.fromkeys(CATEGORIES, False),
        "category_scores": dict.fromkeys(CATEGORIES, 0.0),
    }
    return orjson.dumps(
        {"id": f"modr-{ident}", "model": model, "results": [result for _ in inputs]}
    )


def png(width: int = 1, height: int = 1) -> bytes:
    """A valid grey PNG of ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def images(body: dict[str, Any]) -> tuple[int, bytes]:
    n = body.get("n")
    n = 1 if n is None else n
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_IMAGES:
        message = f"'n' must be an integer from 1 to {MAX_IMAGES}"
        error = {"message": message, "type": "invalid_request_error", "param": "n", "code": None}
        return 400, orjson.dumps({"error": error})
    encoded = base64.b64encode(png()).decode()
    if body.get("response_format") == "url":
        item = {"url": f"data:image/png;base64,{encoded}"}
    else:
        item = {"b64_json": encoded}
    prompt = str(body.get("prompt") or "")
    data = [{**item, "revised_prompt": prompt} for _ in range(n)]
    return 200, orjson.dumps({"created": int(time.time()), "data": data})


def wav(text: str) -> bytes:
    """A mono 16-bit WAV of silence, 10 ms per character of ``text`` (at most 5 s)."""
    samples = min(len(text), 500) * WAV_RATE // 100
    data = b"\x00\x00" * samples
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        WAV_RATE,
        WAV_RATE * 2,
        2,
        16,
        b"data",
        len(data),
    )
    return header + data


def transcription(fields: Mapping[str, str], size: int) -> tuple[int, str, bytes]:
    """A transcription (or translation) naming the upload's size, in the asked
    ``response_format``: json (the default), text, verbose_json; others are a 400."""
    text = f"mock transcription of {size} bytes"
    kind = fields.get("response_format") or "json"
    if kind == "text":
        return 200, "text/plain; charset=utf-8", text.encode()
    if kind == "json":
        return 200, "application/json", orjson.dumps({"text": text})
    if kind == "verbose_json":
        verbose = {
            "task": "transcribe",
            "language": fields.get("language") or "english",
            "duration": 0.0,
            "text": text,
            "segments": [],
        }
        return 200, "application/json", orjson.dumps(verbose)
    message = (
        f"The mock does not write response_format '{kind[:40]}': use json, text or verbose_json"
    )
    error = {"message": message, "type": "invalid_request_error", "param": "response_format"}
    return 400, "application/json", orjson.dumps({"error": {**error, "code": None}})
