"""A request's semantic lookup and, after a clean miss, what it adds to the index.

The lookup (embedding call, index search, reading the stored answer) is bounded by
``cache.semantic.lookup_timeout`` as a whole: past it, or on any failure, it is
skipped (logged, counted) and the request goes upstream as if it had never looked.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from llmgw.cache.embed import Embedder
from llmgw.cache.entry import Entry, Store
from llmgw.cache.keys import Policy
from llmgw.cache.semantic import SemanticCache, partition_of, prompt_of
from llmgw.cache.vectors import Vector
from llmgw.config.schema import CacheConfig
from llmgw.core import Call


@dataclass(slots=True)
class Probe:
    """What a lookup learnt: the request's partition and vector (to index its answer
    after a miss), and the hit, if there was one."""

    semantic: SemanticCache
    partition: str
    vector: Vector | None = None
    entry: Entry | None = None
    similarity: float = 0.0


async def look(
    semantic: SemanticCache,
    settings: CacheConfig,
    call: Call,
    scope: str | None,
    embed: Embedder,
    store: Store,
    policy: Policy,
) -> Probe | None:
    """The nearest stored answer at or above the threshold; None: no part in it."""
    found = prompt_of(call)
    if found is None:
        return None
    text, blanked = found
    config = settings.semantic
    probe = Probe(semantic, partition_of(call, blanked, scope, config.embedding_model))
    try:
        async with asyncio.timeout(config.lookup_timeout):
            await _search(probe, text, embed, store, policy, config.threshold)
    except TimeoutError:
        semantic.skip(f"no embedding within lookup_timeout ({config.lookup_timeout}s)")
        probe.entry = None
    except Exception as exc:  # never the request's failure
        semantic.skip("the embedding call failed", exc)
        probe.entry = None
    if probe.entry is not None:
        semantic.hits += 1
    elif probe.vector is not None:
        semantic.misses += 1
    return probe


async def _search(
    probe: Probe, text: str, embed: Embedder, store: Store, policy: Policy, threshold: float
) -> None:
    vector = await embed(text)
    if vector is None:
        raise ValueError("the embedding model sent no usable vector")
    probe.vector = vector
    semantic = probe.semantic
    nearest = semantic.nearest(probe.partition, vector)
    if nearest is None or nearest[1] < threshold:
        return
    key, similarity = nearest
    entry = await store.get(key)
    if entry is None:  # expired or evicted from the store: its vector goes too
        semantic.forget(key)
        return
    if policy.accepts(entry, time.time()):
        probe.entry, probe.similarity = entry, min(1.0, similarity)
        semantic.served(key)


def remember(probe: Probe | None, key: str) -> None:
    """The answer stored under ``key`` is found by meaning from now on."""
    if probe is not None and probe.vector is not None:
        probe.semantic.add(key, probe.partition, probe.vector)
