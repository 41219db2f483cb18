"""The provider client on production networks, against real sockets on 127.0.0.1:
HTTP proxies (a CONNECT proxy run here, the environment's variables, NO_PROXY), a
provider's CA file and mTLS, Happy Eyeballs past an address that drops SYNs, the DNS
cache, compressed answers, the head's bound, resets, a stale keep-alive connection,
and what each failure is called."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from llmgw.http.client import (
    BadResponse,
    BodyTooLarge,
    ConnectRefused,
    Disconnected,
    DnsError,
    HeadTooLarge,
    NoResponse,
    Pool,
    ProxyError,
    Route,
    TlsError,
)
from llmgw.upstream import failure_from
from tests.test_http_client import CHUNKED_HEAD, Server, chunk, fetch, keep_open, response

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    pool = Pool(user_agent="llmgw-test", max_body=1024 * 1024)
    yield pool
    await pool.close()


class ConnectProxy:
    """A forward proxy: ``CONNECT host:port`` opens a tunnel, an absolute-form request
    is passed on to its origin; each request head it got is kept in ``heads``."""

    def __init__(self, refuse: bytes = b"") -> None:
        self.heads: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.refuse = refuse
        self.url = ""
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            if self.refuse:
                writer.write(self.refuse)
                return
            method, where, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
            if method == b"CONNECT":
                host, _, port = where.rpartition(b":")
                up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
                self.writers.append(up_writer)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # http://host:port/path: the origin reads the head as it is
                authority = where.split(b"/")[2]
                host, _, port = authority.rpartition(b":")
                up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
                self.writers.append(up_writer)
                up_writer.write(head)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.writers:
            writer.transport.abort()
        await asyncio.sleep(0.01)  # the transports finish closing on this loop


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class Tls:
    """A trustme CA, a server context for ``localhost``, the CA as a PEM file, and a
    client certificate the CA signed, as files."""

    def __init__(self, tmp_path: Path) -> None:
        self.ca = trustme.CA()
        self.server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost").configure_cert(self.server)
        self.ca_file = tmp_path / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        client = self.ca.issue_cert("llmgw-client")
        self.client_cert, self.client_key = tmp_path / "client.pem", tmp_path / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return Tls(tmp_path)


async def test_https_goes_through_a_connect_tunnel_with_the_proxy_credentials(
    pool: Pool, tls: Tls
) -> None:
    async with Server(keep_open, tls=tls.server) as server, ConnectProxy() as proxy:
        url = server.url.replace("127.0.0.1", "localhost")
        port = url.split(":")[2].split("/")[0]
        credentials = proxy.url.replace("http://", "http://us%40er:p%3Ass@")
        route = Route("p", proxy=credentials, ca_file=str(tls.ca_file))
        for _ in range(2):  # one tunnel, reused
            answer = await pool.request("POST", url, {}, b'{"x":1}', 5, 5, route)
            assert answer.status == 200 and await answer.read() == b'echo:{"x":1}'
            answer.close()
        [head] = proxy.heads
        assert head.startswith(f"CONNECT localhost:{port} HTTP/1.1\r\n".encode())
        token = base64.b64encode(b"us@er:p:ss").decode()
        assert f"Proxy-Authorization: Basic {token}\r\n".encode() in head
        # TLS ran end to end: the origin saw the request in origin form, no credentials
        assert server.requests[0].startswith(b"POST /v1/chat HTTP/1.1\r\n")
        assert b"Proxy-Authorization" not in server.requests[0]


async def test_the_environment_proxy_takes_http_in_absolute_form_and_no_proxy_bypasses(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Server(keep_open) as server, ConnectProxy() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        answer = await pool.request("POST", server.url, {}, b"{}", 5, 5, Route("env"))
        assert await answer.read() == b"echo:{}"
        answer.close()
        [head] = proxy.heads
        assert head.startswith(f"POST {server.url} HTTP/1.1\r\n".encode())
        monkeypatch.setenv("NO_PROXY", "example.com, 127.0.0.1")
        answer = await pool.request("POST", server.url, {}, b"{}", 5, 5, Route("env"))
        assert await answer.read() == b"echo:{}"
        answer.close()
        assert len(proxy.heads) == 1  # bypassed: straight to the origin
        assert server.requests[-1].startswith(b"POST /v1/chat HTTP/1.1\r\n")


async def test_a_proxy_that_refuses_the_tunnel_is_a_proxy_error(pool: Pool) -> None:
    refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    async with ConnectProxy(refuse=refusal) as proxy:
        route = Route("p", proxy=proxy.url)
        with pytest.raises(ProxyError, match="407") as raised:
            await pool.request("POST", "https://localhost:1/v1", {}, b"{}", 5, 5, route)
    failure = failure_from(raised.value)
    assert failure.kind == "connect_error" and failure.outcome == "proxy_error"


async def test_mtls_with_a_client_certificate_the_server_requires(pool: Pool, tls: Tls) -> None:
    tls.server.verify_mode = ssl.CERT_REQUIRED
    tls.ca.configure_trust(tls.server)
    async with Server(keep_open, tls=tls.server) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        route = Route(
            "m",
            ca_file=str(tls.ca_file),
            client_cert=str(tls.client_cert),
            client_key=str(tls.client_key),
        )
        answer = await pool.request("POST", url, {}, b"{}", 5, 5, route)
        assert answer.status == 200 and await answer.read() == b"echo:{}"
        answer.close()
        with pytest.raises(TlsError, match="certificate"):  # without ca_file: unknown CA
            await pool.request("POST", url, {}, b"{}", 5, 5, Route("s"))


async def test_a_refused_client_certificate_is_a_tls_error(pool: Pool, tls: Tls) -> None:
    """Under TLS 1.2 a server refuses a missing client certificate inside the
    handshake, with an alert. (asyncio's own TLS server drops the connection without
    the alert, so the server here is the ssl module's on a thread. Under TLS 1.3 the
    refusal comes after the handshake: ``tls_error`` or ``connect_reset``.)"""
    tls.server.verify_mode = ssl.CERT_REQUIRED
    tls.server.maximum_version = ssl.TLSVersion.TLSv1_2
    tls.ca.configure_trust(tls.server)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve_one() -> None:
        conn, _ = listener.accept()
        conn.settimeout(5)
        raw = conn.dup()  # wrap_socket takes conn over
        try:
            tls.server.wrap_socket(conn, server_side=True)  # sends the alert, raises
        except ssl.SSLError:
            raw.settimeout(0.2)
            with contextlib.suppress(OSError):
                while raw.recv(65536):  # read what is left, so the close is a FIN
                    pass
        finally:
            raw.close()
            conn.close()

    server = threading.Thread(target=serve_one)
    server.start()
    try:
        url = f"https://localhost:{listener.getsockname()[1]}/v1"
        with pytest.raises(TlsError) as raised:
            await pool.request("POST", url, {}, b"{}", 5, 5, Route("n", ca_file=str(tls.ca_file)))
    finally:
        await asyncio.to_thread(server.join, 10)
        listener.close()
    failure = failure_from(raised.value)
    assert failure.kind == "connect_error" and failure.outcome == "tls_error"


@contextlib.contextmanager
def dropping_syns(port: int) -> Iterator[bool]:
    """A listener on 127.0.0.2:``port`` whose backlog is full and never accepted: a
    SYN to it goes unanswered, as on a silently broken route. False if the port is
    taken there."""
    listener = socket.socket()
    held: list[socket.socket] = [listener]
    try:
        try:
            listener.bind(("127.0.0.2", port))
        except OSError:
            yield False
            return
        listener.listen(0)
        for _ in range(8):  # fill the backlog until a connection hangs
            filler = socket.socket()
            held.append(filler)
            filler.settimeout(0.3)
            try:
                filler.connect(("127.0.0.2", port))
            except TimeoutError:
                break
        yield True
    finally:
        for sock in held:
            sock.close()


async def test_an_address_that_drops_syns_costs_the_happy_eyeballs_delay_not_the_timeout(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def two_addresses(host: str, port: int, **_: object) -> list[object]:
        assert host == "provider.test"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(pool.loop, "getaddrinfo", two_addresses)
    async with Server(keep_open) as server:
        port = int(server.url.split(":")[2].split("/")[0])
        with dropping_syns(port) as dropping:
            if not dropping:
                pytest.skip("127.0.0.2 has this port in use")
            url = server.url.replace("127.0.0.1", "provider.test")
            # one after another, the first address would hold the connect far past 3 s
            answer = await fetch(pool, url, head=3)
            assert answer.status == 200 and await answer.read() == b'echo:{"x":1}'
            answer.close()


async def test_a_failed_connect_forgets_the_resolved_addresses(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    resolve = pool.loop.getaddrinfo

    async def counted(host: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        lookups.append(host)
        return await resolve(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pool.loop, "getaddrinfo", counted)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens once it is closed
    for _ in range(2):
        with pytest.raises(ConnectRefused) as raised:
            await fetch(pool, f"http://localhost:{port}/v1")
    assert lookups == ["localhost", "localhost"]
    assert failure_from(raised.value).outcome == "connect_refused"


async def test_a_name_that_does_not_resolve_is_a_dns_error(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def nowhere(host: str, *args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(pool.loop, "getaddrinfo", nowhere)
    with pytest.raises(DnsError, match=r"nowhere\.test") as raised:
        await fetch(pool, "https://nowhere.test/v1?key=secret")
    failure = failure_from(raised.value)
    assert failure.kind == "connect_error" and failure.outcome == "dns_error"
    assert "secret" not in failure.message + failure.detail


async def test_a_compressed_answer_is_decoded_and_bounded(pool: Pool) -> None:
    body = b'{"answer": "' + b"z" * 5000 + b'"}'
    packed = gzip.compress(body)
    bomb = gzip.compress(b"0" * (2 * 1024 * 1024))  # 2 MiB decoded, over max_body

    async def whole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(response(packed, "Content-Encoding: gzip"))
        return True

    async def streamed(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
    ) -> bool:
        head = CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n")
        writer.write(head + chunk(packed[:40]))
        await writer.drain()
        writer.write(chunk(packed[40:]) + b"0\r\n\r\n")
        return True

    for reply in (whole, streamed):
        async with Server(reply) as server:
            answer = await fetch(pool, server.url)
            assert "content-encoding" not in answer.headers
            assert b"".join([piece async for piece in answer.chunks()]) == body
            answer.close()

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(response(packed[:-20], "Content-Encoding: gzip"))
        return True

    async def bombed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(response(bomb, "Content-Encoding: gzip"))
        return True

    for reply, error in ((cut, BadResponse), (bombed, BodyTooLarge)):
        async with Server(reply) as server:
            answer = await fetch(pool, server.url)
            with pytest.raises(error):
                await answer.read()
            answer.close()
            assert failure_from(error("x")).kind == "stream_error"

    async def brotli(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(response(b"\x0b\x02\x80{}\x03", "Content-Encoding: br"))
        return True

    async with Server(brotli) as server:
        with pytest.raises(BadResponse, match="br"):
            await fetch(pool, server.url)


async def test_a_head_that_never_ends_is_bounded(pool: Pool) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for index in range(100):  # 100 fields of 1 KiB,, no end: over 64 KiB
            writer.write(f"X-Field-{index}: {'v' * 1024}\r\n".encode())
            await writer.drain()
        await asyncio.sleep(5)
        return False

    async with Server(endless) as server:
        with pytest.raises(HeadTooLarge) as raised:
            await fetch(pool, server.url)
    assert failure_from(raised.value).outcome == "head_too_large"


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, not a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_a_reset_during_an_until_close_body_is_not_its_end(pool: Pool) -> None:
    received = asyncio.Event()

    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"a":')
        await writer.drain()
        await asyncio.wait_for(received.wait(), 5)
        reset(writer)
        return False

    async with Server(broken) as server:
        answer = await fetch(pool, server.url)
        pieces = answer.chunks()
        assert await anext(pieces) == b'{"a":'
        received.set()
        with pytest.raises(Disconnected):
            await anext(pieces)
        answer.close()


async def test_a_kept_connection_the_server_closed_is_replaced_once(pool: Pool) -> None:
    async def one_answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
    ) -> bool:
        """Answers the first request of a connection; the second is read and the
        connection closed without a byte, as a server closing an idle one does."""
        if writer not in answered:
            answered.add(writer)
            writer.write(response(b"{}"))
            return True
        return False

    answered: set[asyncio.StreamWriter] = set()
    async with Server(one_answer) as server:
        for _ in range(3):
            answer = await fetch(pool, server.url)
            assert await answer.read() == b"{}"
            answer.close()
        assert server.connections == 3

    async def half_a_head(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
    ) -> bool:
        if writer not in answered:
            answered.add(writer)
            writer.write(response(b"{}"))
            return True
        writer.write(b"HTTP/1.1 200 OK\r\n")  # a byte arrived: it was read, never resent
        await writer.drain()
        return False

    async with Server(half_a_head) as server:
        answer = await fetch(pool, server.url)
        await answer.read()
        answer.close()
        with pytest.raises(NoResponse):
            await fetch(pool, server.url)
        assert server.connections == 1 and len(server.requests) == 2
