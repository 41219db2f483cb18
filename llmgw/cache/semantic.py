"""The semantic cache's policy (SPEC §13): which requests take part, the partition a
request is matched in, and the process's index with its counts.

Only the last user message (chat, messages) or the prompt (completions) is matched
by meaning; everything else must be the same for two requests to share an answer.
The partition is the exact cache's key (``keys.cache_key``: endpoint, model, every
parameter, forwarded headers, the key under ``scope: key``) computed over the body
with that one text blanked, plus the embedding model: the earlier turns, the system
prompt, tools, temperature, response format and ``stream`` all match exactly, so a
stream is only ever answered by a stored stream of the same shape. A last message
with anything but text in it (images, tool results) takes no part.

The index maps a stored answer's exact key to its vector; the answer itself lives in
the exact cache's store (memory or Redis), which keeps its TTL: an index entry whose
answer expired or was evicted is dropped when it is found.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import replace
from typing import Any

from llmgw.cache.keys import cache_key
from llmgw.cache.vectors import DimensionMismatch, Vector, VectorIndex
from llmgw.config.semantic import SemanticConfig
from llmgw.core import Call

log = logging.getLogger(__name__)

SEMANTIC_ENDPOINTS = frozenset({"chat", "completions", "messages"})


def prompt_of(call: Call) -> tuple[str, dict[str, Any]] | None:
    """The text matched by meaning, and the body with it blanked; None: no part."""
    body = call.body
    if call.endpoint == "completions":
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return None
        return prompt, {**body, "prompt": None}
    if call.endpoint not in ("chat", "messages"):
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    text = _text(last.get("content"))
    if text is None or not text.strip():
        return None
    blanked = {**last, "content": None}
    return text, {**body, "messages": [*messages[:-1], blanked]}


def _text(content: object) -> str | None:
    """Plain text content (a string, or text parts only); None for anything else."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts = []
    for part in content:
        if not isinstance(part, dict) or set(part) - {"type", "text"}:
            return None  # images, audio, cache_control...: matched exactly or not at all
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            return None
        texts.append(part["text"])
    return "\n".join(texts)


def partition_of(call: Call, blanked: dict[str, Any], scope: str | None, model: str) -> str:
    """Where ``call`` may be matched: the exact key of its body without the prompt."""
    exact = cache_key(replace(call, body=blanked), scope)
    return hashlib.sha256(f"{exact}\x00embed:{model}".encode()).hexdigest()


class SemanticCache:
    """The process's semantic index and counts; shared through Redis when ``sync`` is
    set (``semantic_redis.py``), else this process's alone."""

    def __init__(self, settings: SemanticConfig) -> None:
        self.index = VectorIndex(settings.max_entries)
        self.hits = 0
        self.misses = 0
        self.skipped = 0  # lookups given up: slow or failed embeddings, odd vectors
        self.sync: Any = None  # semantic_redis.RedisVectors, when shared
        self._tasks: set[asyncio.Future[None]] = set()

    def resize(self, max_entries: int) -> None:
        if max_entries != self.index.max_entries:
            self.index.max_entries = max_entries
            self.index.shrink()

    def nearest(self, partition: str, vector: Vector) -> tuple[str, float] | None:
        try:
            return self.index.nearest(partition, vector)
        except DimensionMismatch as exc:
            self.skip("the embedding's dimensions changed", exc)
            return None

    def add(self, key: str, partition: str, vector: Vector) -> None:
        try:
            evicted = self.index.add(key, partition, vector)
        except DimensionMismatch as exc:  # the new shape replaces the old one's vectors
            log.warning("semantic cache: the embedding's dimensions changed (%s)", exc)
            self.index.drop(partition)
            evicted = self.index.add(key, partition, vector)
        if self.sync is not None:
            self._background(self.sync.publish_add(key, partition, vector))
            for old in evicted:
                self._background(self.sync.publish_remove(old))

    def served(self, key: str) -> None:
        self.index.touch(key)
        if self.sync is not None:
            self._background(self.sync.publish_touch(key))

    def forget(self, key: str) -> None:
        """The answer behind ``key`` is gone from the store: so is its vector."""
        self.index.remove(key)
        if self.sync is not None:
            self._background(self.sync.publish_remove(key))

    async def clear(self) -> int:
        """Empty the index, and every replica's when shared; how many vectors it held
        (the shared count when Redis answered). Publishes still under way land first,
        so none of them brings a vector back after the clear."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        held = len(self.index)
        self.index.clear()
        if self.sync is not None:
            shared: int | None = await self.sync.publish_clear()
            if shared is not None:
                held = shared
        return held

    def skip(self, why: str, exc: BaseException | None = None) -> None:
        self.skipped += 1
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        log.warning("semantic cache lookup skipped, %s%s", why, detail)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.sync is not None:
            await self.sync.close()

    def _background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
