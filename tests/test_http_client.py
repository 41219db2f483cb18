"""The provider client (``llmgw.http.client``) against raw HTTP/1.1 servers on 127.0.0.1:
keep-alive, the body framings, streaming as bytes arrive, flow control, timeouts,
limits and what it refuses to send. The gateway-level faults are in test_faults_*."""

from __future__ import annotations

import asyncio
import gc
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme

from llmgw.http import client as http_client
from llmgw.http.client import (
    BodyTooLarge,
    ConnectError,
    Disconnected,
    HeadTimeout,
    InvalidRequest,
    NoResponse,
    Pool,
    ReadTimeout,
)
from llmgw.upstream import failure_from

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]


def response(body: bytes, *extra: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


class Server:
    """Reads requests one after another on each connection; ``reply`` answers each and
    says whether the connection stays open."""

    def __init__(self, reply: Reply, tls: ssl.SSLContext | None = None) -> None:
        self.reply = reply
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()  # some connection was closed by the client
        self._server: asyncio.Server | None = None
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if not await self.reply(reader, writer, body):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
        finally:
            writer.transport.abort()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1/chat"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    pool = Pool(user_agent="llmgw-test", max_body=1024 * 1024)
    yield pool
    await pool.close()


async def fetch(pool: Pool, url: str, *, head: float = 5, read: float = 5, **headers: str):
    return await pool.request("POST", url, headers, b'{"x":1}', head, read)


async def keep_open(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
) -> bool:
    writer.write(response(b"echo:" + body, "Content-Type: application/json"))
    return True


async def test_one_connection_carries_many_requests_and_the_wire_is_plain(pool: Pool) -> None:
    async with Server(keep_open) as server:
        for _ in range(3):
            answer = await fetch(pool, server.url, Authorization="Bearer sk-1")
            assert answer.status == 200 and await answer.read() == b'echo:{"x":1}'
            assert answer.headers["content-type"] == "application/json"
            answer.close()
        assert server.connections == 1
        first = server.requests[0]
        assert first.startswith(b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"Authorization: Bearer sk-1\r\n" in first
        assert b"User-Agent: llmgw-test\r\n" in first and b"Content-Length: 7\r\n" in first
        assert b"Accept-Encoding: identity\r\n" in first  # asked for: nothing to decompress


async def test_a_response_read_halfway_does_not_go_back_to_the_pool(pool: Pool) -> None:
    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"data: 1\n\n"))
        await asyncio.sleep(0.2)
        writer.write(chunk(b"data: 2\n\n") + b"0\r\n\r\n")
        return True

    async with Server(stream) as server:
        answer = await fetch(pool, server.url)
        assert await anext(answer.chunks()) == b"data: 1\n\n"
        answer.close()  # the rest of the body would be read as the next answer
        await asyncio.wait_for(server.closed.wait(), 5)
        answer = await fetch(pool, server.url)
        assert [c async for c in answer.chunks()] == [b"data: 1\n\n", b"data: 2\n\n"]
        answer.close()
        assert server.connections == 2


@pytest.mark.parametrize("how", ["Connection: close", "server hangs up"])
async def test_a_connection_the_server_ends_is_not_reused(pool: Pool, how: str) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        extra = (how,) if how.startswith("Connection") else ()
        writer.write(response(b"{}", *extra))
        await writer.drain()
        return False

    async with Server(once) as server:
        for _ in range(3):
            answer = await fetch(pool, server.url)
            assert await answer.read() == b"{}"
            answer.close()
            await asyncio.sleep(0.05)  # the hang-up reaches the client
        assert server.connections == 3


async def test_a_body_without_length_ends_with_the_connection(pool: Pool) -> None:
    async def until_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
    ) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"a":')
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"1}")
        await writer.drain()
        return False

    async with Server(until_close) as server:
        answer = await fetch(pool, server.url)
        assert await answer.read() == b'{"a":1}'
        answer.close()


async def test_a_cut_body_is_an_error_not_an_answer(pool: Pool) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"a":')
        await writer.drain()
        return False

    async with Server(cut) as server:
        answer = await fetch(pool, server.url)
        with pytest.raises(Disconnected):
            await answer.read()
        answer.close()


async def test_stream_pieces_reach_the_reader_before_the_body_ends(pool: Pool) -> None:
    received = asyncio.Event()

    async def stepwise(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
    ) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"data: first\n\n"))
        await asyncio.wait_for(received.wait(), 5)  # only once the client has the first
        writer.write(chunk(b"data: second\n\n") + b"0\r\n\r\n")
        return True

    async with Server(stepwise) as server:
        answer = await fetch(pool, server.url)
        pieces = answer.chunks()
        assert await anext(pieces) == b"data: first\n\n"
        received.set()
        assert [piece async for piece in pieces] == [b"data: second\n\n"]
        answer.close()


async def test_a_slow_reader_pauses_the_connection_instead_of_buffering(pool: Pool) -> None:
    piece = b"x" * 65536
    count = 128  # 8 MiB, far more than socket buffers and the high-water mark

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(CHUNKED_HEAD)
        for _ in range(count):
            writer.write(chunk(piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        return True

    async with Server(flood) as server:
        answer = await fetch(pool, server.url)
        pieces, total, queued_most = answer.chunks(), 0, 0
        await asyncio.sleep(0.3)  # the server writes as fast as it may; nobody reads
        async for data in pieces:
            queued_most = max(queued_most, len(data))
            total += len(data)
            await asyncio.sleep(0.001)
        answer.close()
    assert total == count * len(piece)
    # paused at the high-water mark, plus at most what one socket read had brought
    assert queued_most <= http_client.HIGH_WATER + 256 * 1024 + len(piece)


async def test_interim_responses_are_skipped(pool: Pool) -> None:
    async def continued(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
    ) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"{}", status="201 Created"))
        return True

    async with Server(continued) as server:
        answer = await fetch(pool, server.url)
        assert answer.status == 201 and await answer.read() == b"{}"
        answer.close()


async def test_a_header_with_a_line_break_is_never_sent(pool: Pool) -> None:
    async with Server(keep_open) as server:
        with pytest.raises(InvalidRequest):
            await fetch(pool, server.url, Authorization="Bearer sk-1\r\nX-Evil: 1")
        assert server.connections == 0 and server.requests == []


async def test_head_and_read_timeouts(pool: Pool) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        await asyncio.sleep(5)
        return False

    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"data: 1\n\n"))
        await asyncio.sleep(5)
        return False

    async with Server(silent) as server:
        with pytest.raises(HeadTimeout):
            await fetch(pool, server.url, head=0.2)
        await asyncio.sleep(0.05)
        assert not pool.connections  # the late connection is dropped, not pooled
    async with Server(stalls) as server:
        answer = await fetch(pool, server.url, read=0.2)
        with pytest.raises(ReadTimeout):
            await answer.read()
        answer.close()
    assert issubclass(HeadTimeout, TimeoutError) and issubclass(ReadTimeout, TimeoutError)


async def test_a_body_read_whole_is_bounded(pool: Pool) -> None:
    big = b"y" * (1024 * 1024 + 1)

    async def declared(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
    ) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n{")
        await asyncio.sleep(5)
        return False

    async def grown(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(CHUNKED_HEAD + chunk(big) + b"0\r\n\r\n")
        return True

    for reply in (declared, grown):
        async with Server(reply) as server:
            answer = await fetch(pool, server.url)
            with pytest.raises(BodyTooLarge):
                await asyncio.wait_for(answer.read(), 5)
            answer.close()


async def test_idle_connections_are_closed_after_keepalive(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_client, "KEEPALIVE", 0.2)
    async with Server(keep_open) as server:
        answer = await fetch(pool, server.url)
        await answer.read()
        answer.close()
        await asyncio.wait_for(server.closed.wait(), 5)
        assert not pool.connections


async def test_names_are_resolved_once_per_ttl(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []
    resolve = pool.loop.getaddrinfo

    async def counted(host: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        lookups.append(host)
        return await resolve(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pool.loop, "getaddrinfo", counted)

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(response(b"{}", "Connection: close"))
        return False

    async with Server(once) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        for _ in range(2):
            answer = await fetch(pool, url)
            assert await answer.read() == b"{}"
            answer.close()
        assert server.connections == 2 and lookups == ["localhost"]


async def test_close_ends_open_connections(pool: Pool) -> None:
    async with Server(keep_open) as server:
        answer = await fetch(pool, server.url)
        await answer.read()
        answer.close()
        await pool.close()
        await asyncio.wait_for(server.closed.wait(), 5)
        assert not pool.connections


async def test_https_providers_are_verified(pool: Pool) -> None:
    ca = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(served)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    verified = Pool(user_agent="llmgw-test", max_body=1024, tls=trusting)
    try:
        async with Server(keep_open, tls=served) as server:
            url = server.url.replace("127.0.0.1", "localhost")
            for _ in range(2):  # over one TLS connection
                answer = await fetch(verified, url)
                assert answer.status == 200 and await answer.read() == b'echo:{"x":1}'
                answer.close()
            assert server.connections == 1
            with pytest.raises(ConnectError):  # the name in the URL is not the certificate's
                await fetch(verified, server.url)
            with pytest.raises(ConnectError):  # the system's CAs do not know this one
                await fetch(pool, url)
    finally:
        await verified.close()


@pytest.mark.parametrize(
    "reply",
    [b"", b"SMTP ready\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Le"],
    ids=["closed", "not http", "half a head"],
)
async def test_no_head_is_a_connection_failure_not_a_cut_answer(pool: Pool, reply: bytes) -> None:
    """Before the head, nothing was answered: the gateway counts it as a connection
    failure (``connect_error``, which ``routing.fallback_on`` decides about); after
    it, a broken body is a cut-off answer (``stream_error``, always falls back)."""

    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(reply)
        await writer.drain()
        return False

    async with Server(broken) as server:
        with pytest.raises(NoResponse) as raised:
            await fetch(pool, server.url)
    assert failure_from(raised.value).kind == "connect_error"
    assert failure_from(Disconnected("cut")).kind == "stream_error"


async def test_a_request_given_up_before_its_head_leaves_no_stray_error(
    pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller goes away (a client disconnect, a deadline) while the head is awaited:
    the connection closes and its end reaches nobody, not asyncio's "exception was
    never retrieved" log (the cancelled wait cancels the head's future with it)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        await asyncio.sleep(5)
        return False

    async with Server(silent) as server:
        waiting = asyncio.ensure_future(fetch(pool, server.url))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0.05)  # the connection's end arrives
        gc.collect()
    assert "never retrieved" not in caplog.text
