"""Coalescing of identical cacheable requests in flight at the same moment (SPEC §4).

The first request for a key leads: it goes upstream and records what it sends to
its client into a ``Flight``. Requests for the same key that arrive meanwhile
follow: they wait for the leader to commit, then receive the same bytes — live, as
they arrive, each at its own pace (a follower keeps its own position in the shared
list of chunks, so a slow one never holds up the leader or the others). A leader
that fails before committing abandons the flight, and its followers go upstream
themselves instead of failing with it.

What a flight holds is bounded. While the answer may still be cached it keeps every
chunk, up to ``cache.max_size`` (the most an entry may weigh); past that the answer
cannot be stored, and the flight keeps only the chunks a follower has yet to read —
none once nobody follows. A follower more than ``FOLLOWER_LAG`` (8 MiB) behind the
leader is dropped (it ends with the stream's error event, see ``serve.follow``):
it no longer pins the chunks it has not read, so a client that stops reading never
makes a recording grow past ``max(cache.max_size, FOLLOWER_LAG)`` plus ``LAG_CHECK``
and one chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator

from llmgw.answer import Head

FOLLOWER_LAG = 8 * 1024 * 1024  # bytes a follower may be behind the leader
LAG_CHECK = 1024 * 1024  # followers' lag is looked at once per this many bytes recorded


class Flight:
    """One upstream answer being produced, and every identical request waiting on it."""

    __slots__ = (
        "_base",
        "_changed",
        "_checked",
        "_followers",
        "_limit",
        "_total",
        "chunks",
        "complete",
        "dropped",
        "error_sent",
        "finished",
        "head",
        "held",
    )

    def __init__(self, limit: int | None = None) -> None:
        self.chunks: list[bytes] = []  # the recording, from chunk number ``_base`` on
        self.head: Head | None = None
        self._limit = limit  # bytes worth recording whole: beyond it, nothing could store it
        self._base = 0  # how many chunks were let go from the front of the recording
        self._total = 0  # bytes recorded so far, let go or not
        self._checked = 0  # ``_total`` when followers' lag was last looked at
        self.held = 0  # bytes in ``chunks``
        self.dropped = False  # the recording outgrew the limit: it will not be stored
        self.finished = False
        self.complete = False  # finished cleanly: the recording may be stored
        self.error_sent = False  # the recording ends with an error event
        self._followers: set[Follower] = set()  # those still reading, lagging ones not
        self._changed: asyncio.Event | None = None  # made when a follower first waits

    # The leader's side ---------------------------------------------------------------

    def commit(self, head: Head) -> None:
        self.head = head
        self._notify()

    def append(self, chunk: bytes) -> None:
        self._total += len(chunk)
        if not self.dropped and self._limit is not None and self._total > self._limit:
            self.dropped = True  # too big to store: keep only what followers still need
            self._let_go()
        if not self._followers:
            if self.dropped:  # nobody reads it and nothing could store it
                self._base += 1
                return
            self.chunks.append(chunk)
            self.held += len(chunk)
            return
        self.chunks.append(chunk)
        self.held += len(chunk)
        if self._total - self._checked >= LAG_CHECK:
            self._check_lag()
        self._notify()

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
        """Whether a follower still reads the recording (one that lagged is gone)."""
        return bool(self._followers)

    def follower(self) -> Follower:
        """A new follower, reading from the first chunk (``leave`` it when done)."""
        follower = Follower(self)
        self._followers.add(follower)
        return follower

    # Bookkeeping ----------------------------------------------------------------------

    def _check_lag(self) -> None:
        """Drop the followers too far behind, then let go of what nobody needs."""
        self._checked = self._total
        for follower in [f for f in self._followers if self._total - f.read > FOLLOWER_LAG]:
            follower.lagged = True
            self._followers.discard(follower)
        self._let_go()

    def _let_go(self) -> None:
        """An answer too big to store keeps only the chunks a follower has not read."""
        if not self.dropped:
            return
        end = self._base + len(self.chunks)
        keep_from = min((f.index for f in self._followers), default=end)
        if keep_from > self._base:
            gone = self.chunks[: keep_from - self._base]
            del self.chunks[: keep_from - self._base]
            self.held -= sum(map(len, gone))
            self._base = keep_from

    def _leave(self, follower: Follower) -> None:
        self._followers.discard(follower)
        self._let_go()

    def _change(self) -> Awaitable[bool]:
        """The next change: most flights have no follower and never make one."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()


class Follower:
    """One identical request reading a flight's recording at its own pace."""

    __slots__ = ("flight", "index", "lagged", "read")

    def __init__(self, flight: Flight) -> None:
        self.flight = flight
        self.index = 0  # the number of the next chunk to read
        self.read = 0  # bytes read so far
        self.lagged = False  # dropped for falling more than FOLLOWER_LAG behind

    async def head(self) -> Head | None:
        """The leader's head once committed; None if it gave up before its first byte."""
        flight = self.flight
        while flight.head is None and not flight.finished:
            await flight._change()
        return flight.head

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every chunk from the first, as the leader records them; stops early (with
        ``lagged`` set) if this follower fell too far behind."""
        flight = self.flight
        while not self.lagged:
            at = self.index - flight._base
            if at < 0:  # let go of already: only a lagging follower can be here
                self.lagged = True
            elif at < len(flight.chunks):
                chunk = flight.chunks[at]
                self.index += 1
                self.read += len(chunk)
                yield chunk
            elif flight.finished:
                return
            else:
                await flight._change()

    def leave(self) -> None:
        """Done reading: the chunks this follower held on to may go."""
        self.flight._leave(self)


class Flights:
    """The flights in progress in this process, by cache key."""

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}

    def join(self, key: str, limit: int | None = None) -> tuple[Flight, bool]:
        """The flight for ``key`` and whether the caller leads it (a new flight records
        at most ``limit`` bytes whole, see the module's docstring)."""
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

    def __iter__(self) -> Iterator[Flight]:
        return iter(list(self._flights.values()))

    def __len__(self) -> int:
        return len(self._flights)
