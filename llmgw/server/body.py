"""A client's request body, received within the process's memory bounds.

* ``Content-Encoding`` other than ``identity`` is refused (415) before a byte of the
  body is read: the SDKs never compress requests, and an inflated body is a memory
  amplifier (the gateway's server runs with ``auto_decompress=False``, so nothing
  inflates it behind our back either).
* ``server.max_body_size`` bounds one body (413 before reading when declared).
* ``server.max_pending_body_bytes`` bounds the bytes held by every body still arriving,
  or waiting for a parse slot, together: a body that would pass it gets 503 with
  ``Retry-After`` (slow senders cannot pile up memory).
* A body whose JSON would parse into far more memory than its size (many tiny
  values: a 20 MiB body of ``{}`` takes ~480 MiB as Python objects) takes one of
  ``HEAVY_SLOTS`` for as long as its request lasts; others wait for one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from llmgw.config.server import ServerConfig
from llmgw.errors import (
    InvalidRequest,
    Overloaded,
    RequestTimedOut,
    RequestTooLarge,
    UnsupportedEncoding,
)

# Like nginx's client_body_timeout: the longest silence while a body is arriving.
BODY_IDLE_TIMEOUT = 60.0
# Requests at once whose body is heavy to parse, and what makes a body heavy: its size
# plus ~64 bytes per value it may hold (a dict, list or any item after a comma).
HEAVY_SLOTS = 2
HEAVY_BYTES = 8 * 1024**2
_VALUE_COST = 64
# How long a heavy body waits for a slot before it is answered 503.
HEAVY_WAIT = 30.0


class Bodies:
    """The process's account of request bodies (one per app)."""

    def __init__(self, heavy_slots: int = HEAVY_SLOTS) -> None:
        self.held = 0  # bytes of bodies arriving, or waiting for a parse slot
        self.heavy_slots = heavy_slots
        self.heavy_in_use = 0
        self._heavy: asyncio.Semaphore | None = None

    def receive(self, request: web.Request, server: ServerConfig) -> Receipt:
        """``async with bodies.receive(request, server) as raw``: the whole body, held
        within the bounds above for as long as the block runs."""
        return Receipt(self, request, server)

    @contextlib.asynccontextmanager
    async def _heavy_slot(self) -> AsyncIterator[None]:
        if self._heavy is None:
            self._heavy = asyncio.Semaphore(self.heavy_slots)
        try:
            async with asyncio.timeout(HEAVY_WAIT):
                await self._heavy.acquire()
        except TimeoutError:
            raise Overloaded(
                "Too many large request bodies are being handled; retry shortly",
                headers={"Retry-After": "5"},
            ) from None
        self.heavy_in_use += 1
        try:
            yield
        finally:
            self.heavy_in_use -= 1
            self._heavy.release()


class Receipt:
    """One body being received (``Bodies.receive``). A class rather than an
    ``asynccontextmanager``: every JSON request makes one, and a generator-based one
    costs a generator, the loop's bookkeeping of it and two more calls each way."""

    __slots__ = ("_bodies", "_request", "_server", "_slot")

    def __init__(self, bodies: Bodies, request: web.Request, server: ServerConfig) -> None:
        self._bodies = bodies
        self._request = request
        self._server = server
        self._slot: contextlib.AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> bytes:
        request, server = self._request, self._server
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            shown = encoding[:40] if encoding.isascii() and encoding.isprintable() else "?"
            raise UnsupportedEncoding(
                f"Content-Encoding '{shown}' is not supported: send the body uncompressed"
            )
        pending = server.max_pending_body_bytes
        charged = _Charge(self._bodies, pending and max(pending, server.max_body_size))
        try:
            raw = await _read(request, server.max_body_size, charged)
            if is_heavy(raw):
                slot = self._bodies._heavy_slot()
                await slot.__aenter__()
                self._slot = slot
        finally:  # held while arriving, or waiting for a slot; then the slot bounds it
            charged.release()
        return raw

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._slot is not None:
            await self._slot.__aexit__(*exc_info)


def is_heavy(raw: bytes) -> bool:
    """Whether parsing ``raw`` may take over ``HEAVY_BYTES`` (an upper estimate)."""
    if len(raw) * (1 + _VALUE_COST) <= HEAVY_BYTES:
        return False  # too small to hold that many values
    values = raw.count(b",") + raw.count(b"{") + raw.count(b"[")
    return len(raw) + _VALUE_COST * values > HEAVY_BYTES


class _Charge:
    """The bytes one body has taken from ``Bodies.held``."""

    __slots__ = ("_bodies", "_limit", "bytes")

    def __init__(self, bodies: Bodies, limit: int) -> None:
        self._bodies = bodies
        self._limit = limit
        self.bytes = 0

    def take(self, size: int) -> None:
        bodies = self._bodies
        if self._limit and bodies.held + size > self._limit:
            raise Overloaded(
                "The gateway is holding too many request bodies; retry shortly",
                headers={"Retry-After": "1"},
            )
        bodies.held += size
        self.bytes += size

    def release(self) -> None:
        self._bodies.held -= self.bytes
        self.bytes = 0


async def _read(request: web.Request, limit: int, charged: _Charge) -> bytes:
    """The body, refusing (413) anything over ``limit`` bytes before reading it all,
    and (408) a client that sends nothing for ``BODY_IDLE_TIMEOUT`` before it is done."""
    idle = BODY_IDLE_TIMEOUT
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RequestTooLarge(f"Request body is {declared} bytes; the limit is {limit} bytes")
    content = request.content
    if content.is_eof():  # usual: the whole body came with the headers, no waiting
        whole = content.read_nowait()
        if len(whole) > limit:
            raise RequestTooLarge(f"Request body is over the limit of {limit} bytes")
        if declared is not None and len(whole) != declared:
            raise InvalidRequest("The request body ended before its Content-Length")
        charged.take(len(whole))
        return whole  # as it is: no copy
    body = bytearray()
    while not content.is_eof():
        try:
            async with asyncio.timeout(idle):
                chunk = await content.readany()
        except TimeoutError:
            raise RequestTimedOut(
                f"The request body stopped arriving for {idle:g}s before it was complete"
            ) from None
        if not chunk:
            break
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge(f"Request body is over the limit of {limit} bytes")
        charged.take(len(chunk))  # as it arrives: a declared length costs the sender nothing
    if declared is not None and len(body) != declared:
        raise InvalidRequest("The request body ended before its Content-Length")
    return bytes(body)
