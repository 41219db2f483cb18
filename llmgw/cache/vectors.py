"""The semantic cache's in-process vector index: exact nearest neighbour by brute force.

Each partition (model, parameters, scope: ``semantic.py``) holds its unit vectors as
rows of one float32 matrix; a lookup is one matrix-vector product over that partition
and an argmax, so its cost grows with the partition's size, not the whole index's.
Measured with tests/benchmarks/semantic_lookup.py (one partition holding everything,
on a loaded 2-core machine): median 8 ms at 10^4 x 256 dims, 29 ms at 10^5 x 256,
140 ms at 10^5 x 1536 (586 MiB of matrix). Fine to ~10^5 per partition; past that, or
with large embeddings, an ANN index (hnswlib, usearch) is the next step. Bounded by
``max_entries``, least recently used (added or served) evicted first; removal moves
the partition's last row into the freed one, so every operation but the lookup is O(1).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
_INITIAL_ROWS = 16


class DimensionMismatch(Exception):
    """A vector whose length differs from its partition's: never compared."""


class _Partition:
    __slots__ = ("keys", "matrix", "size")

    def __init__(self, dims: int) -> None:
        self.matrix: Vector = np.zeros((_INITIAL_ROWS, dims), dtype=np.float32)
        self.keys: list[str] = []
        self.size = 0

    @property
    def dims(self) -> int:
        return int(self.matrix.shape[1])

    def append(self, key: str, vector: Vector) -> int:
        if self.size == self.matrix.shape[0]:
            grown = np.zeros((self.size * 2, self.dims), dtype=np.float32)
            grown[: self.size] = self.matrix[: self.size]
            self.matrix = grown
        self.matrix[self.size] = vector
        self.keys.append(key)
        self.size += 1
        return self.size - 1


class VectorIndex:
    """Unit vectors by key, searched within a partition; LRU-bounded."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._parts: dict[str, _Partition] = {}
        self._where: OrderedDict[str, tuple[str, int]] = OrderedDict()  # LRU first
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def add(self, key: str, partition: str, vector: Vector) -> list[str]:
        """Index ``vector`` under ``key``; the keys evicted to make room."""
        part = self._parts.get(partition)
        if part is not None and part.dims != vector.shape[0]:
            raise DimensionMismatch(f"{vector.shape[0]} dimensions where {part.dims} were")
        if key in self._where:
            self.remove(key)
            part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition(int(vector.shape[0]))
        self._where[key] = (partition, part.append(key, vector))
        return self.shrink()

    def shrink(self) -> list[str]:
        """Evict the least recently used until within ``max_entries``; their keys."""
        evicted = []
        while len(self._where) > self.max_entries:
            oldest = next(iter(self._where))
            self.remove(oldest)
            evicted.append(oldest)
            self.evictions += 1
        return evicted

    def nearest(self, partition: str, vector: Vector) -> tuple[str, float] | None:
        """The closest key in ``partition`` and its cosine similarity (unit vectors)."""
        part = self._parts.get(partition)
        if part is None or part.size == 0:
            return None
        if part.dims != vector.shape[0]:
            raise DimensionMismatch(f"{vector.shape[0]} dimensions where {part.dims} were")
        scores = part.matrix[: part.size] @ vector
        best = int(np.argmax(scores))
        return part.keys[best], float(scores[best])

    def touch(self, key: str) -> None:
        if key in self._where:
            self._where.move_to_end(key)

    def remove(self, key: str) -> None:
        found = self._where.pop(key, None)
        if found is None:
            return
        partition, row = found
        part = self._parts[partition]
        last = part.size - 1
        if row != last:  # the last row fills the hole
            moved = part.keys[last]
            part.matrix[row] = part.matrix[last]
            part.keys[row] = moved
            self._where[moved] = (partition, row)  # an existing key keeps its LRU place
        part.keys.pop()
        part.size -= 1
        if part.size == 0:
            del self._parts[partition]

    def drop(self, partition: str) -> None:
        """Forget every vector of ``partition`` (say, made by another embedding shape)."""
        part = self._parts.pop(partition, None)
        for key in part.keys if part is not None else ():
            del self._where[key]

    def clear(self) -> None:
        self._parts.clear()
        self._where.clear()


def unit(values: list[float]) -> Vector | None:
    """``values`` as a float32 unit vector; None when empty, zero or not finite."""
    vector = np.asarray(values, dtype=np.float32)
    if vector.ndim != 1 or vector.size == 0:
        return None
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    return vector / np.float32(norm)
