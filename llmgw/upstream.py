"""The only provider I/O: transports that send an ``UpstreamRequest``.

One contract: ``await transport.send(request, timeouts) -> UpstreamResponse``.
``HttpTransport`` uses the process's one connection ``Pool`` (``http.client``);
``LocalTransport`` answers in-process for a provider type that declares a ``local``
answer (the built-in ``mock``).
Foreign errors (the HTTP client's, the OS's, timeouts) are translated here, once, into
``AttemptFailure`` whose ``kind`` is the fallback condition it matches.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from multidict import CIMultiDict

from llmgw.config import ProviderConfig
from llmgw.core import UpstreamRequest
from llmgw.http import client as http_client
from llmgw.providers.base import LocalAnswer

# Errors a transport may raise while a response is read; ``failure_from`` names them.
TRANSPORT_ERRORS = (http_client.HttpError, asyncio.TimeoutError, OSError)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_RETRY_AFTER_HINT = 86400.0  # seconds: a longer Retry-After is read as a day


class AttemptFailure(Exception):
    """One upstream attempt went wrong.

    ``kind`` is ``connect_error``, ``timeout``, ``status`` (an HTTP error status in
    ``status``), ``stream_error`` (an error event or a broken stream) or
    ``unsupported`` (this provider cannot serve the endpoint, or the request's
    ``param``). ``reason`` narrows a kind for operators (``dns_error``,
    ``tls_error``, ``connect_refused``, ... are ``connect_error``s: see
    ``http.errors``) and is the metric's ``outcome``. ``retry_at`` is when the
    provider's ``Retry-After`` runs out, on the monotonic clock.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body: bytes = b"",
        content_type: str = "application/json",
        param: str | None = None,
        reason: str | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.param = param
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.retry_at = None if retry_after is None else time.monotonic() + retry_after
        self.body = body
        self.content_type = content_type
        self.reason = reason
        self.detail = detail

    @property
    def outcome(self) -> str:
        """Low-cardinality metric label."""
        if self.kind == "status":
            return f"status_{self.status}"
        return self.reason or self.kind


@dataclass(frozen=True, slots=True)
class Timeouts:
    """One attempt's clocks. ``head`` bounds connecting and the response's head: a
    stream's time to first byte, or (``for_answer(stream=False)``) a non-streamed
    answer's whole generation, whose head comes only when it is done."""

    connect: float  # name, TCP, a proxy's tunnel and TLS (providers.<name>.connect_timeout)
    head: float  # connect + response headers of a stream (providers.<name>.timeout)
    read: float  # longest silence between bytes (kept by the response's watchdog)
    response: float  # a non-streamed answer, head to last byte (response_timeout)
    # for_answer(stream=False) when it differs: made once, not per request
    _whole: Timeouts | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        whole = None
        if self.head != self.response:
            whole = Timeouts(self.connect, self.response, self.read, self.response)
        object.__setattr__(self, "_whole", whole)

    def for_answer(self, stream: bool) -> Timeouts:
        """The clocks of a request for a stream, or for a whole answer at once."""
        if stream or self._whole is None:
            return self
        return self._whole


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]
    complete: bool  # the whole body is in: ``read`` returns without waiting

    @property
    def at_end(self) -> bool:
        """The whole body is in and ``chunks()`` handed all of it out (False: maybe not)."""

    async def read(self) -> bytes: ...
    def chunks(self) -> AsyncIterator[bytes]: ...
    def close(self) -> None: ...

    def push_to(self, consumer: Callable[[bytes], bool | None] | None) -> bool:
        """Hand pieces to ``consumer`` as they arrive, rather than through ``chunks()``
        (``http.response.Response.push_to``, which says what the consumer returns);
        False: this response cannot."""


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse: ...


def failure_from(exc: BaseException) -> AttemptFailure:
    """Client / OS / timeout errors → the attempt failure they mean (no secrets in text)."""
    if isinstance(exc, AttemptFailure):
        return exc
    if isinstance(exc, http_client.HttpError):
        # ``message`` may reach the client (a stream's error event): the gateway's
        # words; ``detail`` (the client's own, naming the failed step) is for the log
        kind, reason = exc.kind, exc.outcome
        if kind == "stream_error":
            cut = not isinstance(exc, http_client.BodyTooLarge)
            message = "the provider's response was " + ("cut off" if cut else "too large")
        elif kind == "timeout":
            message = "the provider did not answer in time"
        elif isinstance(exc, http_client.NoResponse):
            message = f"the provider's connection failed before it answered ({reason})"
        else:
            message = f"could not connect to the provider ({reason})"
        return AttemptFailure(kind, message, reason=reason, detail=str(exc))
    if isinstance(exc, asyncio.TimeoutError):
        return AttemptFailure("timeout", "the provider did not answer in time")
    return AttemptFailure(
        "connect_error", f"connection to the provider failed ({type(exc).__name__})"
    )


def parse_answer(body: bytes) -> dict[str, Any]:
    """A successful non-streamed answer, parsed: it must be a JSON object, and anything
    else (an HTML page, an empty or cut-off body) is a broken provider whose attempt
    fails. Parsed here once; usage and translation read the result."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise AttemptFailure("stream_error", "the provider's answer is not a JSON object")
    return parsed


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms``, else ``Retry-After`` (seconds or an HTTP date);
    a value that is not a finite number is no hint, and a day is the most one asks."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            delay = _bounded(float(millis) / 1000)
        except ValueError:
            delay = None
        if delay is not None:
            return delay
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return _bounded(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return _bounded(when.timestamp() - time.time())


def _bounded(seconds: float) -> float | None:
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_HINT)


class HttpTransport:
    """Requests over the process's one connection pool; the head timeout bounds the
    wait for the response's head (connecting included, itself within the connect
    timeout), the read timeout each silence after it."""

    __slots__ = ("_heads", "_pool", "_route")

    def __init__(self, pool: http_client.Pool, route: http_client.Route | None = None) -> None:
        self._pool = pool
        self._route = route
        self._heads = http_client.Heads()  # the provider's header lines, rendered once

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        try:
            return await self._pool.request(
                request.method,
                request.url,
                request.headers,
                request.body,
                timeouts.head,
                timeouts.read,
                self._route,
                connect_timeout=timeouts.connect,
                heads=self._heads,
            )
        except TRANSPORT_ERRORS as exc:
            raise failure_from(exc) from None


class _LocalResponse:
    __slots__ = ("_chunks", "_delay", "headers", "status")
    complete = True
    at_end = False  # not told: its pieces are handed out at their pace

    def __init__(self, status: int, content_type: str, chunks: tuple[bytes, ...], delay: float):
        self.status = status
        self.headers: Mapping[str, str] = CIMultiDict({"Content-Type": content_type})
        self._chunks = chunks
        self._delay = delay

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        for index, chunk in enumerate(self._chunks):
            if index and self._delay:
                await asyncio.sleep(self._delay)
            yield chunk

    def close(self) -> None:
        pass

    def push_to(self, consumer: Callable[[bytes], bool | None] | None) -> bool:
        return False  # its pieces come through ``chunks()`` alone


class LocalTransport:
    """A provider answered in-process (the built-in mock): no network, paced as its
    answer says."""

    __slots__ = ("_answer", "_config")

    def __init__(self, answer: LocalAnswer, config: ProviderConfig) -> None:
        self._answer = answer
        self._config = config

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        reply = self._answer(request, self._config)
        if reply.latency:
            await asyncio.sleep(reply.latency)
        return _LocalResponse(reply.status, reply.content_type, reply.chunks, reply.chunk_delay)
