"""The current config snapshot, and how a new one replaces it.

``ConfigStore.current`` is one reference to an immutable ``Runtime``; a reload
builds a whole new one and swaps the reference, so every request sees exactly one
config from ingress to its last byte.
"""

from __future__ import annotations

from .runtime import Runtime


class ConfigStore:
    def __init__(self, runtime: Runtime, path: str | None = None) -> None:
        self.current = runtime
        self.path = path
        self.stopping = False  # set when shutdown begins: /ready turns 503

    def swap(self, runtime: Runtime) -> Runtime:
        previous, self.current = self.current, runtime
        return previous
