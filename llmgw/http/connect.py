"""How a provider call reaches its origin: the route (proxy and TLS per provider),
the request's target, name resolution with a cache, and Happy Eyeballs.

Connecting (RFC 8305, as ``asyncio.open_connection(happy_eyeballs_delay=0.25,
interleave=1)`` and aiohttp do): the resolved addresses, families interleaved, are
tried in a staggered race: the next starts when the one before failed or after
``HAPPY_EYEBALLS_DELAY``, the first to connect wins and the rest are closed. An
address that silently drops packets (a broken IPv6 route) then costs 0.25 s, not the
whole timeout. Done here on the cached addresses rather than by asyncio, which would
resolve the name again on every connection.

Resolved addresses are kept ``DNS_TTL`` seconds (getaddrinfo gives no TTL), and
forgotten as soon as no address of them could be connected to, so a provider that
moved is looked up again at the next attempt.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

from llmgw.http import proxy as http_proxy
from llmgw.http import tls as http_tls
from llmgw.http.errors import ConnectError, ConnectRefused, ConnectReset, DnsError

HAPPY_EYEBALLS_DELAY = 0.25  # seconds before the next address joins the race
DNS_TTL = 300.0  # seconds a resolved address is reused for new connections

Address = tuple[int, str]  # family, address


class Route:
    """How one provider's calls travel: its proxy (configured, else the environment's
    per origin) and its TLS context (None: the pool's). ``targets`` keeps each URL's
    parsed target, proxy choice included, so a request parses and looks up nothing."""

    __slots__ = ("environ", "key", "provider", "proxy", "targets", "tls")

    def __init__(
        self,
        provider: str = "other",
        *,
        proxy: str | None = None,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.proxy = http_proxy.Proxy(proxy) if proxy else None
        self.environ = http_proxy.environment() if environ is None else environ
        self.tls = (
            http_tls.context(ca_file, client_cert, client_key) if (ca_file or client_cert) else None
        )
        self.key = (provider, ca_file or "", client_cert or "", client_key or "")
        self.targets: dict[str, Target] = {}

    def target(self, url: str) -> Target:
        target = self.targets.get(url)
        if target is None:
            target = Target(url, self)
            if len(self.targets) >= 4096:
                self.targets.clear()
            self.targets[url] = target
        return target


class Target:
    """A URL as the pool needs it: the origin, the proxy it goes through, the request
    line's tail with ``Host`` (absolute form through a proxy to an ``http`` origin),
    and ``key``, which connections to it are pooled under."""

    __slots__ = ("head", "host", "key", "port", "provider", "proxy", "scheme", "tls", "tunnel")

    def __init__(self, url: str, route: Route) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"not an http(s) URL: {parts.scheme}://")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.provider, self.tls = route.provider, route.tls
        self.proxy = route.proxy or http_proxy.choose(
            self.scheme, self.host, self.port, route.environ
        )
        self.tunnel = self.proxy is not None and self.scheme == "https"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        if self.proxy is not None and not self.tunnel:
            path = f"http://{host}{path}"
            host += f"\r\n{self.proxy.auth.rstrip()}" if self.proxy.auth else ""
        self.head = f"{path} HTTP/1.1\r\nHost: {host}\r\n"
        proxy_key = self.proxy.key if self.proxy is not None else ""
        self.key = (self.scheme, self.host, self.port, proxy_key, *route.key)


class Resolver:
    """getaddrinfo with a cache of ``DNS_TTL`` seconds; ``forget`` drops an entry."""

    __slots__ = ("_known", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._known: dict[tuple[str, int], tuple[float, list[Address]]] = {}

    async def resolve(self, host: str, port: int) -> list[Address]:
        now = self._loop.time()
        known = self._known.get((host, port))
        if known is not None and known[0] > now:
            return known[1]
        try:
            infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DnsError(
                f"could not resolve {host} ({exc.strerror or type(exc).__name__})"
            ) from None
        addresses = interleave(list(dict.fromkeys((info[0], str(info[4][0])) for info in infos)))
        if not addresses:
            raise DnsError(f"{host} resolved to no address")
        if len(self._known) >= 1024:
            self._known.clear()
        self._known[(host, port)] = (now + DNS_TTL, addresses)
        return addresses

    def forget(self, host: str, port: int) -> None:
        self._known.pop((host, port), None)


def interleave(addresses: list[Address]) -> list[Address]:
    """RFC 8305 §4: alternate the families, starting with the resolver's first."""
    if not addresses:
        return addresses
    first = addresses[0][0]
    ours = [a for a in addresses if a[0] == first]
    others = [a for a in addresses if a[0] != first]
    mixed: list[Address] = []
    for index in range(max(len(ours), len(others))):
        mixed.extend(side[index] for side in (ours, others) if index < len(side))
    return mixed


async def _connect_one(
    loop: asyncio.AbstractEventLoop, address: Address, port: int
) -> socket.socket:
    sock = socket.socket(address[0], socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, (address[1], port))
    except BaseException:
        sock.close()
        raise
    return sock


async def happy_eyeballs(
    loop: asyncio.AbstractEventLoop, addresses: list[Address], port: int, what: str
) -> socket.socket:
    """A connected socket to one of ``addresses`` (RFC 8305's staggered race), or the
    ``ConnectError`` that says how they failed (``what``: "the provider", "the proxy")."""
    racing: set[asyncio.Task[socket.socket]] = set()
    errors: list[BaseException] = []
    waiting = list(reversed(addresses))
    try:
        while waiting or racing:
            if waiting:
                racing.add(loop.create_task(_connect_one(loop, waiting.pop(), port)))
            done, racing = await asyncio.wait(
                racing,
                timeout=HAPPY_EYEBALLS_DELAY if waiting else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            winner: socket.socket | None = None
            for task in done:
                error = task.exception()
                if error is not None:
                    errors.append(error)
                elif winner is None:
                    winner = task.result()
                else:
                    task.result().close()  # two connected at once: keep one
            if winner is not None:
                return winner
    finally:
        for task in racing:
            task.cancel()  # a cancelled attempt closes its socket
        if racing:
            await asyncio.wait(racing)
    raise _failure(errors, what)


def _failure(errors: list[BaseException], what: str) -> ConnectError | ConnectReset:
    if any(isinstance(e, ConnectionRefusedError) for e in errors):
        return ConnectRefused(f"{what} refused the connection")
    if any(isinstance(e, ConnectionResetError | ConnectionAbortedError) for e in errors):
        return ConnectReset(f"{what} reset the connection")
    first = errors[0] if errors else OSError("no address")
    detail = getattr(first, "strerror", None) or type(first).__name__
    return ConnectError(f"could not connect to {what} ({detail})")
