"""What the relay writes an answer to: one small contract, ``Answer``.

The relay commits to a head (``open`` for a stream, ``whole`` for a JSON body), then
writes the stream's chunks, maybe an error event, and ``finish``es; when the client
leaves, the answer is told (``left``) and is handed the ``Rest`` of the provider's
stream, for whoever still wants it. ``ClientAnswer`` writes to the client alone,
each write bounded by ``server.write_timeout`` (``sink.py``); the cache's recording
(``cache/recording.py``) is a ``ClientAnswer`` that also tees every byte into its
flight for identical requests and the cache. The relay knows nothing of either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from llmgw.core import StreamTranslator
from llmgw.errors import stream_error_event
from llmgw.sink import Sink
from llmgw.upstream import TRANSPORT_ERRORS, failure_from


@dataclass(frozen=True, slots=True)
class Head:
    """What an answer committed to before its first byte."""

    status: int
    content_type: str
    stream: bool
    provider: str
    upstream_model: str


class Answer(Protocol):
    """Where the relay writes the answer it commits to (one per request)."""

    async def open(self, out: web.StreamResponse, head: Head) -> None:
        """Commit to a stream: ``out``'s head (its headers decided) goes out."""

    def whole(self, head: Head, body: bytes) -> web.Response:
        """Commit to a whole (JSON) answer: the response that carries ``body``."""

    def write(self, data: bytes) -> Awaitable[None]:
        """One chunk of the stream."""

    def write_error(self, event: bytes) -> Awaitable[None]:
        """The error event that ends a stream broken after its first byte."""

    def wrote_error(self) -> None:
        """The chunks written last ended the stream with an error event (a translator's)."""

    async def finish(self, complete: bool, trailer: bytes = b"") -> None:
        """The stream's end; ``complete``: it ended cleanly, with its end event.
        ``trailer``: this request's own closing bytes, for its client alone (never
        recorded: a replay of the answer is another request)."""

    async def left(self, complete: bool, rest: Rest | None) -> None:
        """The client went away: after its whole answer (``complete``), or before it,
        leaving ``rest`` of the provider's stream unread (None: nothing is left)."""

    def abort(self) -> None:
        """Close the client's connection now (it stopped reading)."""


class ClientAnswer(Sink):
    """The answer written to the client, and nowhere else."""

    __slots__ = ()

    async def open(self, out: web.StreamResponse, head: Head) -> None:
        await self.prepare(out)

    def whole(self, head: Head, body: bytes) -> web.Response:
        return web.Response(body=body, status=head.status, content_type=head.content_type)

    def write_error(self, event: bytes) -> Awaitable[None]:
        return self.write(event)

    def wrote_error(self) -> None:
        pass

    async def finish(self, complete: bool, trailer: bytes = b"", last: bytes = b"") -> None:
        """As ``Answer.finish``; ``last``: the stream's last chunk, not written yet, to
        go out with the response's end (and the trailer) in one write."""
        await self.write_eof(last + trailer if trailer else last)  # the trailer: not recorded

    async def left(self, complete: bool, rest: Rest | None) -> None:
        pass  # nobody else wants the rest: the provider's stream is closed unread


class Rest:
    """What the provider has yet to send of a stream whose client left, read on as the
    client would have received it: ``outputs`` yields its bytes; then ``error`` is the
    error event that ends it, if the provider broke it, and ``complete`` whether it
    ended cleanly. ``tail`` (the last raw chunks) keeps growing, for the usage.
    ``held``: output the translator made of a piece already read, that the client was
    not sent (it comes first)."""

    __slots__ = (
        "_chunks",
        "_client_format",
        "_ends_with_done",
        "_held",
        "_translator",
        "complete",
        "error",
        "tail",
    )

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        tail: deque[bytes],
        translator: StreamTranslator | None,
        client_format: str,
        ends_with_done: bool,
        held: bytes = b"",
    ) -> None:
        self._chunks = chunks
        self._held = held
        self.tail = tail
        self._translator = translator
        self._client_format = client_format
        self._ends_with_done = ends_with_done
        self.error: bytes | None = None
        self.complete = False

    async def outputs(self) -> AsyncIterator[bytes]:
        tail, translator = self.tail, self._translator
        if self._held:
            yield self._held
        try:
            async for chunk in self._chunks:
                tail.append(chunk)
                output = chunk if translator is None else translator.feed(chunk)
                if output:
                    yield output
        except TRANSPORT_ERRORS as exc:
            gap = apart(tail) if tail else b""
            message = failure_from(exc).message
            self.error = gap + stream_error_event(message, self._client_format)
            return
        if translator is not None:
            closing = translator.finish()
            if closing:
                yield closing
            self.complete = translator.done and translator.error is None
        else:
            self.complete = not self._ends_with_done or is_done(tail)


def apart(tail: deque[bytes]) -> bytes:
    """A blank line when the relayed bytes stop mid-event, so that the error event that
    follows is read as an event of its own (extra blank lines are harmless in SSE)."""
    return b"" if tail[-1].endswith((b"\n\n", b"\r\n\r\n", b"\r\r")) else b"\n\n"


def is_done(tail: deque[bytes]) -> bool:
    """Whether the last raw chunks end with OpenAI's ``data: [DONE]``."""
    ending = tail[-1] if len(tail[-1]) >= 12 else b"".join(tail)
    return ending.rstrip(b"\r\n").endswith(b"[DONE]")
