"""Server-sent events framing, as pure functions (no I/O).

Network chunks do not line up with events: bytes are buffered to the blank line
(``\\n\\n``, ``\\r\\n\\r\\n`` or ``\\r\\r``) before an event is parsed. Pass-through
relays never need this for the bytes they forward; they use it to look at the
first event and at the tail of a stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Event:
    event: str | None
    data: bytes
    id: str | None = None

    @property
    def is_comment(self) -> bool:
        return self.event is None and not self.data


def event_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """Index just past the first complete event in ``buffer``, or -1."""
    match = _BOUNDARY.search(buffer, start)
    return -1 if match is None else match.end()


def parse_event(raw: bytes | bytearray) -> Event:
    """One event's text (without its blank line) → ``Event``; data lines joined by \\n."""
    event: str | None = None
    event_id: str | None = None
    data: list[bytes] = []
    for line in _LINE.split(bytes(raw)):
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

    Each byte is scanned for a boundary once (a new chunk is searched from just before
    where it joined), and an event may not grow past ``MAX_EVENT_BYTES``: a provider
    that never ends its event gets ``TOO_LARGE`` instead, and nothing more is read.
    """

    __slots__ = ("_broken", "_buffer")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._broken = False

    def feed(self, chunk: bytes) -> list[Event]:
        if self._broken:
            return []
        scanned = max(0, len(self._buffer) - 3)  # a boundary may straddle the join
        self._buffer += chunk
        events: list[Event] = []
        start = 0
        while (end := event_end(self._buffer, max(start, scanned))) != -1:
            event = parse_event(self._buffer[start:end])
            if not event.is_comment:
                events.append(event)
            start = end
        if start:
            del self._buffer[:start]
        if len(self._buffer) > MAX_EVENT_BYTES:
            self._broken = True
            self._buffer = bytearray()
            events.append(TOO_LARGE)
        return events

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
