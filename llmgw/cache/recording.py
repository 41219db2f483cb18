"""The cache's side of an answer: what the client is sent, recorded into a ``Flight``.

``Recording`` is the client's answer (``answer.ClientAnswer``) that also tees every
byte into the flight its identical requests follow and the cache stores from. Each
chunk is recorded before it is written to the client: a write may wait on a slow
client, and no follower must miss a chunk meanwhile. A recorded error event marks
the flight (followers do not add one of their own). When the leader's client leaves
before its answer is whole while followers still read, the rest of the provider's
stream is read on for them, as if nothing happened; if nobody follows, it is not.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiohttp import web

from llmgw.answer import ClientAnswer, Head, Rest
from llmgw.cache.coalesce import Flight
from llmgw.sink import Sink


class Recording(ClientAnswer):
    """A client's answer, recorded into ``flight`` as it is written."""

    __slots__ = ("flight",)

    def __init__(self, request: web.BaseRequest, timeout: float, flight: Flight) -> None:
        super().__init__(request, timeout)
        self.flight = flight

    async def open(self, out: web.StreamResponse, head: Head) -> None:
        self.flight.commit(head)  # followers may start
        await super().open(out, head)

    def whole(self, head: Head, body: bytes) -> web.Response:
        flight = self.flight
        flight.commit(head)
        flight.append(body)
        flight.finish(complete=True)
        return super().whole(head, body)

    def write(self, data: bytes) -> Awaitable[None]:
        self.flight.append(data)  # before the write: a follower must not miss it
        return Sink.write(self, data)  # per chunk: no ``super()`` object made

    def push(self, data: bytes) -> bool:
        if self._direct is None or not self.ready(len(data)):
            return False
        self.flight.append(data)
        self._send(data)
        return True

    def write_error(self, event: bytes) -> Awaitable[None]:
        self.flight.append_error(event)
        return super().write(event)

    def wrote_error(self) -> None:
        self.flight.error_sent = True

    async def finish(self, complete: bool, trailer: bytes = b"", last: bytes = b"") -> None:
        if last:
            self.flight.append(last)  # before the write, as every chunk
        await super().finish(complete, trailer, last)
        self.flight.finish(complete)

    async def left(self, complete: bool, rest: Rest | None) -> None:
        if complete:
            self.flight.finish(complete=True)
        elif rest is not None and self.flight.followed:
            await _finish_for_followers(self.flight, rest)


async def _finish_for_followers(flight: Flight, rest: Rest) -> None:
    """The leader's client left but identical requests follow its recording: read the
    provider's stream to its end for them (and for the cache)."""
    async for output in rest.outputs():
        flight.append(output)
    if rest.error is not None:
        flight.append_error(rest.error)
    flight.finish(complete=rest.complete)
