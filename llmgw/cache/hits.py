"""The calls exact hits were served for, by what they were parsed from: a repeated
hit (the same body, the same headers that shape the call, the same key) is answered
without parsing its body or hashing its cache key again.

Only a hit's call is kept, and it is only used to answer a hit: the stages a hit
goes through (routing's ``route_cached``, limits, budgets, accounting, logs) only
read it. A remembered call whose entry is gone (expired, evicted, cleared) is not
used for the miss: that request parses its own body, as any miss does.

Bounded by entries and by the bytes of the bodies held; when either is full it
starts afresh. Kept for one config snapshot: a reload starts it afresh too.
"""

from __future__ import annotations

from collections.abc import Hashable

from llmgw.core import Call

MAX_ENTRIES = 1024
MAX_BYTES = 8 * 1024 * 1024  # of the bodies held


class HitCalls:
    """(call, cache key) by (endpoint, body bytes, shaping headers, key name)."""

    def __init__(self, entries: int = MAX_ENTRIES, size: int = MAX_BYTES) -> None:
        self._entries = entries
        self._size = size
        self._held: dict[Hashable, tuple[Call, str]] = {}
        self._bytes = 0
        self._snapshot: object = None  # the config the calls were kept under

    def find(self, mark: Hashable, snapshot: object) -> tuple[Call, str] | None:
        """The call and cache key kept under ``mark`` in ``snapshot``, or None."""
        if snapshot is not self._snapshot:
            return None
        return self._held.get(mark)

    def keep(self, mark: Hashable, snapshot: object, call: Call, key: str, size: int) -> None:
        """Remember a hit's ``call`` and ``key``; ``size``: the bytes ``mark`` holds."""
        if snapshot is not self._snapshot:
            self.clear()
            self._snapshot = snapshot
        if size > self._size:
            return
        if len(self._held) >= self._entries or self._bytes + size > self._size:
            self.clear()
        if mark not in self._held:
            self._bytes += size
        self._held[mark] = (call, key)

    def clear(self) -> None:
        self._held.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._held)
