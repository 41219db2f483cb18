"""Server-sent events framing, as pure functions (no I/O).

Network chunks do not line up with events: bytes are buffered to the blank line
(``\\n\\n``, ``\\r\\n\\r\\n`` or ``\\r\\r``) before an event is parsed. Pass-through
relays never need this for the bytes they forward; they use it to look at the
first event and at the tail of a stream.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(rb"\r\n|\r|\n")


class Event(NamedTuple):
    """One event (a tuple: made for every event a translator reads, and tuples are made
    in a quarter of a frozen dataclass's time)."""

    event: str | None
    data: bytes
    id: str | None = None

    @property
    def is_comment(self) -> bool:
        return self.event is None and not self.data


def event_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """Index just past the first complete event in ``buffer``, or -1."""
    end = buffer.find(b"\n\n", start)
    if buffer.find(b"\r", start, len(buffer) if end == -1 else end) == -1:
        return -1 if end == -1 else end + 2  # no "\r" before: no other boundary is nearer
    match = _BOUNDARY.search(buffer, start)
    return -1 if match is None else match.end()


def parse_event(raw: bytes | bytearray) -> Event:
    """One event's text (its blank line may follow) → ``Event``; data lines joined by \\n.

    The shapes providers send take no loop: one ``data:`` line (OpenAI, Gemini), or an
    ``event:`` line and a ``data:`` line (Anthropic), both ended by ``\\n``."""
    text = raw.rstrip(b"\r\n")
    if b"\r" not in text:
        first, newline, rest = text.partition(b"\n")
        if first.startswith(b"data:") and not newline:
            return Event(None, bytes(first[6:] if first[5:6] == b" " else first[5:]))
        if first.startswith(b"event:") and rest.startswith(b"data:") and b"\n" not in rest:
            name = first[7:] if first[6:7] == b" " else first[6:]
            data = rest[6:] if rest[5:6] == b" " else rest[5:]
            return Event(name.decode("utf-8", "replace"), bytes(data))
    return _parse_lines(_LINE.split(bytes(text)))


def _parse_lines(lines: list[bytes]) -> Event:
    event: str | None = None
    event_id: str | None = None
    data: list[bytes] = []
    for line in lines:
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"id":
            event_id = value.decode("utf-8", "replace")
    return Event(event, b"\n".join(data), event_id)


MAX_EVENT_BYTES = 16 * 1024 * 1024
# What a decoder reports, once, in place of an event that grew past MAX_EVENT_BYTES: an
# error event in the shape every translator already reads (Anthropic's, with "error").
TOO_LARGE = Event(
    "error",
    b'{"type":"error","error":{"type":"api_error",'
    b'"message":"the provider sent an event over 16 MiB"}}',
)


class Decoder:
    """Incremental: feed network chunks, get complete events back.

    A stream that ends its lines with ``\\n`` alone (what providers send) has all the
    complete events of a piece cut apart by one ``split``; once a ``\\r`` came, each
    boundary is searched for in turn. Either way, an event still arriving is searched
    from just before the new chunk joined it (no byte twice), and an event may not grow
    past ``MAX_EVENT_BYTES``: a provider that never ends its event gets ``TOO_LARGE``
    instead, and nothing more is read.
    """

    __slots__ = ("_broken", "_buffer", "_cr")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._broken = False
        self._cr = False  # the stream sent a "\r": every boundary is looked for

    def feed(self, chunk: bytes) -> list[Event]:
        if self._broken:
            return []
        events: list[Event] = []
        buffer = self._buffer
        if self._cr or b"\r" in chunk:
            self._cr = True
            scanned = max(0, len(buffer) - 3)  # a boundary may straddle the join
            buffer += chunk
            del buffer[: self._events_any(events, scanned)]
        else:  # "\n" alone, what providers send: a piece's events in one split
            self._split(chunk, events)
        if len(self._buffer) > MAX_EVENT_BYTES:
            self._broken = True
            self._buffer = bytearray()
            events.append(TOO_LARGE)
        return events

    def _split(self, chunk: bytes, events: list[Event]) -> None:
        buffer = self._buffer
        if buffer:
            scanned = max(0, len(buffer) - 1)
            buffer += chunk
            if buffer.find(b"\n\n", scanned) == -1:
                return  # still inside one event: no byte is searched twice
            *complete, rest = bytes(buffer).split(b"\n\n")
            buffer[:] = rest
        else:  # nothing held back (the usual case): the piece is read as it is
            if b"\n\n" not in chunk:
                buffer += chunk
                return
            *complete, rest = chunk.split(b"\n\n")
            buffer += rest
        for raw in complete:
            if raw and not (event := parse_event(raw)).is_comment:
                events.append(event)

    def _events_any(self, events: list[Event], scanned: int) -> int:
        """The complete events in the buffer, into ``events``; where the rest begins."""
        buffer = self._buffer
        start = 0
        while (end := event_end(buffer, max(start, scanned))) != -1:
            event = parse_event(buffer[start:end])
            if not event.is_comment:
                events.append(event)
            start = end
        return start

    def flush(self) -> list[Event]:
        """The last event of a stream that ended without its blank line."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        event = parse_event(rest) if rest.strip() else None
        return [event] if event is not None and not event.is_comment else []


def encode(data: bytes, event: str | None = None) -> bytes:
    """One event on the wire. ``data`` must not contain newlines (JSON from orjson does not)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
