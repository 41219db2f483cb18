"""A cached answer (``Entry``), how it is written for Redis, and the ``Store``
contract both backends keep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import orjson

# What an entry costs beyond its bytes, measured with tracemalloc over many entries
# (tests/test_cache_store.py): its key, the Entry, the store's tuple and slot, the
# numbers, and the headers of its strings; then each chunk's bytes header and slot.
ENTRY_OVERHEAD = 700
CHUNK_OVERHEAD = 41


@dataclass(frozen=True, slots=True)
class Entry:
    status: int
    content_type: str
    chunks: tuple[bytes, ...]
    stream: bool
    stored_at: float  # unix time
    provider: str
    upstream_model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # The request's complexity class (X-LLMGW-Routing): an exact hit's request is the
    # same prompt, so its hits need not classify it again.
    complexity: str | None = None
    # Its target's routing score when it was chosen (X-LLMGW-Routing of its hits).
    score: float | None = None

    @property
    def size(self) -> int:
        return (
            ENTRY_OVERHEAD
            + len(self.content_type)
            + len(self.upstream_model)
            + sum(CHUNK_OVERHEAD + len(chunk) for chunk in self.chunks)
        )

    def age(self, now: float) -> int:
        return max(0, int(now - self.stored_at))


@dataclass
class Stats:
    evictions: int = 0


class Store(Protocol):
    """Where entries live: in this process, or in Redis shared by every replica."""

    stats: Stats

    async def get(self, key: str) -> Entry | None: ...
    async def put(self, key: str, entry: Entry, ttl: float) -> None: ...
    async def clear(self) -> None: ...
    async def sizes(self) -> tuple[int, int]: ...  # (entries, bytes)
    async def close(self) -> None: ...


def encode_entry(entry: Entry) -> bytes:
    """An entry as bytes for a shared store: a JSON header line, then the chunks."""
    header = orjson.dumps(
        {
            "status": entry.status,
            "content_type": entry.content_type,
            "stream": entry.stream,
            "stored_at": entry.stored_at,
            "provider": entry.provider,
            "upstream_model": entry.upstream_model,
            "prompt_tokens": entry.prompt_tokens,
            "completion_tokens": entry.completion_tokens,
            "complexity": entry.complexity,
            "score": entry.score,
            "lengths": [len(chunk) for chunk in entry.chunks],
        }
    )
    return header + b"\n" + b"".join(entry.chunks)


def decode_entry(data: bytes) -> Entry | None:
    """The inverse of ``encode_entry``; None for anything malformed."""
    header, sep, payload = data.partition(b"\n")
    try:
        meta = orjson.loads(header) if sep else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(meta, dict) or sum(meta.get("lengths", [-1])) != len(payload):
        return None
    chunks, at = [], 0
    for length in meta["lengths"]:
        chunks.append(payload[at : at + length])
        at += length
    return Entry(
        status=meta["status"],
        content_type=meta["content_type"],
        chunks=tuple(chunks),
        stream=meta["stream"],
        stored_at=meta["stored_at"],
        provider=meta["provider"],
        upstream_model=meta["upstream_model"],
        prompt_tokens=meta.get("prompt_tokens"),
        completion_tokens=meta.get("completion_tokens"),
        complexity=_complexity(meta.get("complexity")),
        score=_score(meta.get("score")),
    )


def _complexity(value: object) -> str | None:
    return value if value in ("simple", "medium", "complex") else None


def _score(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
