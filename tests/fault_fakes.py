"""A misbehaving upstream, byte by byte: a raw TCP server on 127.0.0.1 for fault tests.

``RawUpstream`` reads each request (head and ``Content-Length`` body), records it,
and hands the connection to the next scripted behaviour, which writes whatever
bytes the fault needs: a reset before or after the headers, a hang, a drip, a
malformed or truncated body or SSE stream. Every response says ``Connection:
close``, so each attempt of the gateway gets a fresh connection and a fault never
leaks into the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import orjson

from tests.fakes import chat_chunks, chat_completion

# A marker every fake answer may carry in its text: it must never reach a client
# through an error, only through a successful answer relayed on purpose.
LEAK = "upstream-private-detail-7f3a"


@dataclass
class RawRequest:
    head: bytes
    body: bytes

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    @property
    def header_names(self) -> set[str]:
        lines = [line for line in self.head.split(b"\r\n")[1:] if line]
        return {line.decode("latin-1").partition(":")[0].strip().lower() for line in lines}


class Conn:
    """The upstream's side of one connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gone: asyncio.Event
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.gone = gone  # set when the gateway closed a connection this side still held
        self.sent = 0  # bytes written so far (what the gateway could have read)

    async def wait(self, seconds: float) -> None:
        """Stay silent for ``seconds``, noting it if the gateway hangs up meanwhile."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return
        if not data:
            self.gone.set()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        self.sent += len(data)
        await self.writer.drain()

    async def drip(self, data: bytes, every: float, size: int = 1) -> None:
        for start in range(0, len(data), size):
            await self.send(data[start : start + size])
            await asyncio.sleep(every)

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), not a clean FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


RawBehaviour = Callable[[Conn, RawRequest], Awaitable[None]]


def head(status: int, headers: dict[str, str] | None = None, reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of a ``Transfer-Encoding: chunked`` body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"
SSE_HEAD = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}


class RawUpstream:
    """A scripted raw HTTP/1.1 upstream; ``url`` ends with ``/v1`` like OpenAI's."""

    def __init__(self) -> None:
        self.requests: list[RawRequest] = []
        self.script: deque[RawBehaviour] = deque()
        self.default: RawBehaviour = echo
        self.url = ""
        self.handlers: set[asyncio.Task[None]] = set()
        self.cancelled = 0  # behaviours cut short because the gateway went away
        self.gone = asyncio.Event()  # the gateway closed a connection mid-answer
        self.conns: list[Conn] = []  # every connection, in order, with its bytes sent
        self._server: asyncio.Server | None = None

    def then(self, *behaviours: RawBehaviour) -> RawUpstream:
        self.script.extend(behaviours)
        return self

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self.handlers):
            task.cancel()
        for task in list(self.handlers):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        conn = Conn(reader, writer, self.gone)
        self.conns.append(conn)
        try:
            raw_head = await reader.readuntil(b"\r\n\r\n")
            request = RawRequest(raw_head, b"")
            length = int(request.header("Content-Length") or 0)
            request.body = await reader.readexactly(length)
            self.requests.append(request)
            behaviour = self.script.popleft() if self.script else self.default
            await behaviour(conn, request)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.cancelled += 1
        except asyncio.CancelledError:  # stopped at the end of a test: end quietly
            self.cancelled += 1
        finally:
            self.handlers.discard(task)
            writer.transport.abort()


@contextlib.asynccontextmanager
async def raw_upstream(*behaviours: RawBehaviour) -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream().then(*behaviours)
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.stop()


# Behaviours ----------------------------------------------------------------------------


def answer(
    status: int, body: bytes, content_type: str = "application/json", **headers: str
) -> RawBehaviour:
    async def behave(conn: Conn, _: RawRequest) -> None:
        fields = {"Content-Type": content_type, "Content-Length": str(len(body)), **headers}
        await conn.send(head(status, fields) + body)
        await conn.close()

    return behave


def answer_json(payload: object, status: int = 200, **headers: str) -> RawBehaviour:
    return answer(status, orjson.dumps(payload), **headers)


def error_status(status: int, **headers: str) -> RawBehaviour:
    """An OpenAI-shaped error whose text carries the leak marker."""
    body = {"error": {"message": f"boom {LEAK}", "type": "server_error", "code": None}}
    return answer_json(body, status, **headers)


def reset_before_headers() -> RawBehaviour:
    async def behave(conn: Conn, _: RawRequest) -> None:
        conn.reset()

    return behave


def reset_after_headers(stream: bool = False, sent: bytes = b'{"id": "chatcmpl-') -> RawBehaviour:
    """The head goes out (with a body promised), part of the body, then a RST."""

    async def behave(conn: Conn, _: RawRequest) -> None:
        if stream:
            await conn.send(head(200, SSE_HEAD) + (chunk(sent) if sent else b""))
        else:
            fields = {"Content-Type": "application/json", "Content-Length": "4000"}
            await conn.send(head(200, fields) + sent)
        await asyncio.sleep(0.05)
        conn.reset()

    return behave


def hang(seconds: float = 30.0, after: bytes = b"") -> RawBehaviour:
    """Send ``after`` (nothing: hang before the headers), then fall silent."""

    async def behave(conn: Conn, _: RawRequest) -> None:
        if after:
            await conn.send(after)
        await conn.wait(seconds)

    return behave


def stream(
    events: Iterable[bytes],
    *,
    delay: float = 0.0,
    end: str = "eof",
    content_type: str = "text/event-stream",
    linger: float = 0.0,
) -> RawBehaviour:
    """A chunked SSE answer, one HTTP chunk per item; ``end`` is ``eof`` (a proper
    last chunk, sent ``linger`` seconds after the last item), ``reset`` (RST after the
    items) or ``hang`` (silence)."""
    items = list(events)

    async def behave(conn: Conn, _: RawRequest) -> None:
        fields = {**SSE_HEAD, "Content-Type": content_type}
        await conn.send(head(200, fields))
        for item in items:
            await conn.send(chunk(item))
            if delay:
                await asyncio.sleep(delay)
        if end == "reset":
            conn.reset()
            return
        if end == "hang":
            await conn.wait(30)
        if linger:
            await conn.wait(linger)
        await conn.send(LAST_CHUNK)
        await conn.close()

    return behave


def drip(
    status: int, body: bytes, every: float, *, size: int = 1, headers_too: bool = False
) -> RawBehaviour:
    """Send the answer ``size`` bytes at a time, ``every`` seconds apart (the head too,
    or not)."""

    async def behave(conn: Conn, _: RawRequest) -> None:
        fields = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if headers_too:
            await conn.drip(head(status, fields) + body, every, size)
        else:
            await conn.send(head(status, fields))
            await conn.drip(body, every, size)
        await conn.close()

    return behave


def flood(total: int, size: int = 16 * 1024) -> RawBehaviour:
    """A long chat stream: ``total`` bytes of content events of about ``size`` bytes,
    then ``[DONE]``, written as fast as the gateway takes them."""
    event = chat_chunks(["x" * size], usage=False)[1]
    done = b"data: [DONE]\n\n"

    async def behave(conn: Conn, _: RawRequest) -> None:
        await conn.send(head(200, SSE_HEAD) + chunk(chat_chunks([])[0]))
        for _ in range(total // len(event)):
            await conn.send(chunk(event))
        await conn.send(chunk(done) + LAST_CHUNK)
        await conn.close()

    return behave


async def echo(conn: Conn, request: RawRequest) -> None:
    """A healthy answer: a chat completion, or a whole chat stream when one was asked."""
    body = orjson.loads(request.body) if request.body else {}
    if body.get("stream"):
        await stream(chat_chunks(["fine"]))(conn, request)
    else:
        await answer_json(chat_completion("fine"))(conn, request)
