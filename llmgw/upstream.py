"""The only provider I/O: transports that send an ``UpstreamRequest``.

One contract: ``await transport.send(request, timeouts) -> UpstreamResponse``.
``HttpTransport`` uses the process's single pooled ``ClientSession``;
``LocalTransport`` answers in-process for the built-in ``mock`` provider.
Foreign errors (aiohttp's, the OS's, timeouts) are translated here, once, into
``AttemptFailure`` whose ``kind`` is the fallback condition it matches.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson
from multidict import CIMultiDict

from .config import MockProvider
from .providers import Call
from .providers.base import UpstreamRequest
from .providers.mock import MOCK_URL, respond

# Errors a transport may raise while a response is read; ``failure_from`` names them.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class AttemptFailure(Exception):
    """One upstream attempt went wrong.

    ``kind`` is ``connect_error``, ``timeout``, ``status`` (an HTTP error status in
    ``status``), ``stream_error`` (an error event or a broken stream) or
    ``unsupported`` (this provider cannot serve the endpoint).
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
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.content_type = content_type

    @property
    def outcome(self) -> str:
        """Low-cardinality metric label."""
        return f"status_{self.status}" if self.kind == "status" else self.kind


_NO_TOTAL = aiohttp.ClientTimeout(total=None)  # frozen: safe to share


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float  # connect + response headers
    read: float  # longest silence between bytes (kept by _HttpResponse's watchdog)
    client: aiohttp.ClientTimeout = _NO_TOTAL  # aiohttp's part, built once per provider

    @classmethod
    def of(cls, connect: float, read: float) -> Timeouts:
        return cls(connect, read, aiohttp.ClientTimeout(total=None, sock_connect=connect))


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...
    def chunks(self) -> AsyncIterator[bytes]: ...
    def close(self) -> None: ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse: ...


def failure_from(exc: BaseException) -> AttemptFailure:
    """aiohttp / OS / timeout errors → the attempt failure they mean (no secrets in text)."""
    if isinstance(exc, AttemptFailure):
        return exc
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return AttemptFailure("timeout", "the provider did not answer in time")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return AttemptFailure("stream_error", "the provider's response was cut off")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return AttemptFailure("connect_error", "could not connect to the provider")
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
    """Seconds from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _HttpResponse:
    """A provider's response, with its ``read_timeout`` kept by one watchdog.

    aiohttp's own ``sock_read`` timeout cancels and re-creates a timer for every chunk
    received (most of the relay's cost on long streams). Instead a timer fires every
    half ``read_timeout`` and compares the bytes received with its last look: nothing
    new, and the silence has lasted at least ``read_timeout`` (at most 1.5 times it),
    so the read in progress fails with a timeout, as aiohttp's would.
    """

    __slots__ = ("_interval", "_response", "_seen", "_watchdog", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, read_timeout: float) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self._interval = read_timeout / 2
        self._seen = -1
        self._watchdog: asyncio.TimerHandle | None = None
        if not response.content.at_eof():  # a small body often came with its headers
            self._watchdog = asyncio.get_running_loop().call_later(self._interval, self._watch)

    def _watch(self) -> None:
        content = self._response.content
        if content.at_eof():
            return
        if content.total_bytes == self._seen:
            content.set_exception(aiohttp.ServerTimeoutError("no bytes within read_timeout"))
            return
        self._seen = content.total_bytes
        self._watchdog = asyncio.get_running_loop().call_later(self._interval, self._watch)

    async def read(self) -> bytes:
        declared = self._response.content_length
        if declared is not None and declared > MAX_RESPONSE_BYTES:
            raise AttemptFailure("stream_error", "the provider's response is too large")
        content = self._response.content
        body = bytearray()
        try:
            async for chunk in content.iter_any():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise AttemptFailure("stream_error", "the provider's response is too large")
        except TRANSPORT_ERRORS as exc:
            raise failure_from(exc) from None
        return bytes(body)

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class HttpTransport:
    """Requests over the one pooled session, with connect and read timeouts."""

    __slots__ = ("_session",)

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        timeout = timeouts.client
        try:
            async with asyncio.timeout(timeouts.connect):
                response = await self._session.request(
                    request.method,
                    request.url,
                    data=request.body,
                    headers=request.headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
        except TRANSPORT_ERRORS as exc:
            raise failure_from(exc) from None
        return _HttpResponse(response, timeouts.read)


class _LocalResponse:
    __slots__ = ("_chunks", "_delay", "headers", "status")

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


class LocalTransport:
    """The built-in mock provider: no network, paced by its config."""

    __slots__ = ("_config",)

    def __init__(self, config: MockProvider) -> None:
        self._config = config

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        path = request.url.removeprefix(MOCK_URL)
        endpoint = {"/chat/completions": "chat", "/completions": "completions"}.get(
            path, "embeddings"
        )
        body = orjson.loads(request.body)
        call = Call(endpoint, body["model"], body.get("stream") is True, body, request.body)  # type: ignore[arg-type]
        reply = respond(call, call.model, self._config)
        if self._config.latency:
            await asyncio.sleep(self._config.latency)
        return _LocalResponse(
            reply.status, reply.content_type, reply.chunks, self._config.chunk_delay
        )
