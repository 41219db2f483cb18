"""Semantic cache lookup cost (SPEC §13): the in-process index at 10^4 and 10^5 entries.

Run on demand from the repository root: ``python -m tests.benchmarks.semantic_lookup``. Prints, per size, the
time to add the vectors, the median and p95 of one lookup (a matrix-vector product
over the partition and an argmax), and the float32 matrix's memory. Worst case: every
entry in the one partition searched. Mock embeddings' 256 dimensions and a real
model's 1536.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from llmgw.cache.vectors import VectorIndex


def bench(size: int, dims: int, lookups: int = 200) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((size, dims), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(size)
    began = time.perf_counter()
    for row in range(size):
        index.add(f"k{row}", "one-partition", vectors[row])
    added = time.perf_counter() - began
    queries = vectors[rng.integers(0, size, lookups)]
    times = []
    for query in queries:
        began = time.perf_counter()
        index.nearest("one-partition", query)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    matrix_mb = size * dims * 4 / 2**20
    print(
        f"{size:>7} entries x {dims:>4} dims: add {added / size * 1e6:6.1f} us each, "
        f"lookup median {statistics.median(times):7.3f} ms, p95 {times[int(lookups * 0.95)]:7.3f} ms, "
        f"matrix ~{matrix_mb:6.1f} MiB"
    )


if __name__ == "__main__":
    for dims in (256, 1536):
        for size in (10_000, 100_000):
            bench(size, dims)
