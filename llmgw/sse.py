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


class Decoder:
    """Incremental: feed network chunks, get complete events back."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events: list[Event] = []
        start = 0
        while (end := event_end(self._buffer, start)) != -1:
            event = parse_event(self._buffer[start:end])
            if not event.is_comment:
                events.append(event)
            start = end
        if start:
            del self._buffer[:start]
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
