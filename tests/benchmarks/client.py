"""A lean HTTP/1.1 client for the load generator: one keep-alive connection per
``Connection``, one request at a time, timed to the first body byte and to the end.

It parses just enough HTTP (status, headers, ``Content-Length`` or chunked bodies)
to know when a response is complete, in ``data_received``, so a thousand streams
held open cost little CPU on the load generator's core.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast


@dataclass(slots=True)
class Result:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    sent: float = 0.0  # perf_counter when the request was written (or scheduled)
    first_byte: float = 0.0  # when the first body byte arrived
    done: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300

    @property
    def latency(self) -> float:
        return self.done - self.sent

    @property
    def ttfb(self) -> float:
        return self.first_byte - self.sent


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.result = Result()
        self._buffer = bytearray()
        self._body = bytearray()
        self._state = "idle"  # idle | head | length | chunk-size | chunk-data
        self._need = 0
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._state != "idle":
            self._finish(f"connection lost ({exc or 'closed by peer'})")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def request(self, raw: bytes, sent: float | None = None) -> Result:
        """Send ``raw`` (a whole request) and wait for the whole response."""
        if self.closed or self.transport is None:
            return Result(error="connection closed", sent=sent or time.perf_counter())
        self.result = Result(sent=sent or time.perf_counter())
        self._state, self._buffer, self._body = "head", bytearray(), bytearray()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        await self.waiter
        return self.result

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buffer += data
        if self._state == "head":
            end = self._buffer.find(b"\r\n\r\n")
            if end == -1:
                return
            self._parse_head(bytes(self._buffer[:end]))
            del self._buffer[: end + 4]
        if self._buffer and not self.result.first_byte:
            self.result.first_byte = now
        self._parse_body()

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.result.status = int(lines[0].split(" ", 2)[1])
        headers = self.result.headers
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            self._state = "chunk-size"
        else:
            self._state, self._need = "length", int(headers.get("content-length", "0"))

    def _parse_body(self) -> None:
        buffer = self._buffer
        while True:
            if self._state == "length":
                if len(buffer) < self._need:
                    return
                self._body += buffer[: self._need]
                del buffer[: self._need]
                return self._finish(None)
            if self._state == "chunk-size":
                end = buffer.find(b"\r\n")
                if end == -1:
                    return
                size = int(bytes(buffer[:end]).split(b";")[0], 16)
                if size == 0:
                    if len(buffer) < end + 4:  # the terminating chunk and its blank line
                        return
                    del buffer[: end + 4]
                    return self._finish(None)
                del buffer[: end + 2]
                self._state, self._need = "chunk-data", size + 2
            if self._state == "chunk-data":
                if len(buffer) < self._need:
                    return
                self._body += buffer[: self._need - 2]
                del buffer[: self._need]
                self._state = "chunk-size"
            if self._state == "idle":
                return

    def _finish(self, error: str | None) -> None:
        result = self.result
        result.done = time.perf_counter()
        result.body = bytes(self._body)
        result.error = error
        if not result.first_byte:
            result.first_byte = result.done
        self._state = "idle"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def build_request(host: str, port: int, path: str, body: bytes, api_key: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def get(host: str, port: int, path: str, headers: str = "") -> Result:
    """One GET on a fresh connection (health checks, probes)."""
    connection = await Connection.open(host, port)
    try:
        raw = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n".encode()
        return await asyncio.wait_for(connection.request(raw), 10)
    finally:
        connection.close()
