"""Coalescing of identical cacheable requests in flight at the same moment (SPEC §4).

The first request for a key leads: it goes upstream and records what it sends to
its client into a ``Flight``. Requests for the same key that arrive meanwhile
follow: they wait for the leader to commit, then receive the same bytes — live, as
they arrive, each at its own pace (a follower keeps its own position in the shared
list of chunks, so a slow one never holds up the leader or the others). A leader
that fails before committing abandons the flight, and its followers go upstream
themselves instead of failing with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Head:
    """What the leader committed to before its first byte."""

    status: int
    content_type: str
    stream: bool
    provider: str
    upstream_model: str


class Flight:
    """One upstream answer being produced, and every identical request waiting on it."""

    __slots__ = (
        "_changed",
        "_followers",
        "_limit",
        "_size",
        "chunks",
        "complete",
        "dropped",
        "error_sent",
        "finished",
        "head",
    )

    def __init__(self, limit: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.head: Head | None = None
        self._limit = limit  # bytes worth recording: beyond it, nothing could store it
        self._size = 0
        self.dropped = False  # the recording outgrew the limit with nobody following
        self.finished = False
        self.complete = False  # finished cleanly: the recording may be stored
        self.error_sent = False  # the recording ends with an error event
        self._followers = 0
        self._changed: asyncio.Event | None = None  # made when a follower first waits

    # The leader's side ---------------------------------------------------------------

    def commit(self, head: Head) -> None:
        self.head = head
        self._notify()

    def append(self, chunk: bytes) -> None:
        if self.dropped:
            return
        self.chunks.append(chunk)
        if self._followers:
            self._notify()
        elif self._limit is not None:
            self._size += len(chunk)
            if self._size > self._limit:  # too big to cache, and nobody waits on it
                self.dropped = True
                self.chunks.clear()

    def append_error(self, event: bytes) -> None:
        self.error_sent = True
        self.append(event)

    def finish(self, complete: bool) -> None:
        if not self.finished:
            self.finished = True
            self.complete = complete and self.head is not None and not self.dropped
            self._notify()

    @property
    def followed(self) -> bool:
        return self._followers > 0

    # The followers' side -------------------------------------------------------------

    async def wait_head(self) -> Head | None:
        """The leader's head once committed; None if it gave up before its first byte."""
        self._followers += 1
        while self.head is None and not self.finished:
            await self._change()
        return self.head

    async def follow(self) -> AsyncIterator[bytes]:
        """Every chunk from the first, as the leader records them."""
        position = 0
        while True:
            while position < len(self.chunks):
                yield self.chunks[position]
                position += 1
            if self.finished:
                return
            await self._change()

    def _change(self) -> Awaitable[bool]:
        """The next change: most flights have no follower and never make one."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()


class Flights:
    """The flights in progress in this process, by cache key."""

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}

    def join(self, key: str, limit: int | None = None) -> tuple[Flight, bool]:
        """The flight for ``key`` and whether the caller leads it (a new flight records
        at most ``limit`` bytes unless someone follows it)."""
        flight = self._flights.get(key)
        if (
            flight is not None
            and not flight.dropped
            and not (flight.finished and not flight.complete)
        ):
            return flight, False
        flight = self._flights[key] = Flight(limit)
        return flight, True

    def land(self, key: str, flight: Flight) -> None:
        """The leader is done with ``key`` (its entry, if any, is stored by now)."""
        if self._flights.get(key) is flight:
            del self._flights[key]

    def __len__(self) -> int:
        return len(self._flights)
