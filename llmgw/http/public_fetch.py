"""Fetching an image a client named by URL, from public addresses only (SSRF guard).

A chat ``image_url`` part may name any URL; a provider that cannot fetch URLs itself
(Gemini) needs the bytes inline, so the gateway fetches them, and must not become a
way into the networks it sits in. Every address a hop would connect to is checked
against ``AddressPolicy``: loopback, private (RFC 1918, fc00::/7), link-local
(169.254/16 with the cloud metadata address, fe80::/10), unspecified, multicast,
reserved, CGNAT (100.64/10) and IPv4 addresses wrapped in IPv6 forms are refused.

This uses aiohttp's ``ClientSession`` with a resolver of its own rather than the
provider pool (``http.client``): aiohttp connects to exactly the addresses its
resolver returned, so the addresses checked are the ones connected to and a name
that resolves again differently (DNS rebinding) gains nothing; the pool instead
shares a DNS cache and keep-alive connections with provider calls and goes through
the environment's proxies, which would resolve names themselves. Redirects are
followed here, by hand, each hop checked again; no proxy, no cookies, no keep-alive.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_IMAGE_BYTES = 20 * 1024**2
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Refused beyond what ``ipaddress`` calls non-global (a belt to its braces).
_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchRefused(Exception):
    """The URL leads to an address the policy refuses: nothing was sent there."""


class FetchFailed(Exception):
    """The image could not be fetched (status, type, size, time, network)."""


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses a fetch may connect to: public ones, and ``allow`` (networks an
    operator trusts, ``server.image_fetch_allow``)."""

    allow: tuple[Network, ...] = ()

    def permits(self, address: IPAddress) -> bool:
        if any(address in network for network in self.allow):
            return True
        return all(_public(inner) for inner in _embedded(address))


def _embedded(address: IPAddress) -> list[IPAddress]:
    """The address and any IPv4 address an IPv6 form carries (mapped, 6to4, NAT64)."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _public(address: IPAddress) -> bool:
    if not address.is_global or address.is_multicast or address.is_reserved:
        return False
    return not any(address in network for network in _REFUSED)


class _CheckedResolver(AbstractResolver):
    """Resolves a name and hands aiohttp its addresses only when all are permitted."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()
        self.refused: str | None = None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for result in found:
            address = ipaddress.ip_address(result["host"].partition("%")[0])
            if not self._policy.permits(address):
                self.refused = host
                raise OSError(f"{host} resolves to a non-public address")
        return found

    async def close(self) -> None:
        await self._inner.close()


async def fetch_image(
    url: str, policy: AddressPolicy, deadline: float, max_bytes: int = MAX_IMAGE_BYTES
) -> tuple[str, bytes]:
    """The image at ``url`` as (content type, bytes): at most ``max_bytes``, every hop
    done by ``deadline`` (loop time), following at most ``MAX_REDIRECTS``."""
    resolver = _CheckedResolver(policy)
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        try:
            async with asyncio.timeout_at(deadline):
                return await _follow(session, resolver, URL(url), policy, max_bytes)
        except TimeoutError:
            raise FetchFailed("the image was not fetched within the provider's timeout") from None
        except aiohttp.ClientError as exc:
            if resolver.refused is not None:
                raise FetchRefused(f"{resolver.refused} is not a public address") from None
            raise FetchFailed(f"the image could not be fetched ({type(exc).__name__})") from None


async def _follow(
    session: aiohttp.ClientSession,
    resolver: _CheckedResolver,
    url: URL,
    policy: AddressPolicy,
    max_bytes: int,
) -> tuple[str, bytes]:
    for _ in range(MAX_REDIRECTS + 1):
        _check_url(url, policy)
        headers = {"Accept": "image/*"}
        async with session.get(url, allow_redirects=False, headers=headers) as response:
            if response.status in _REDIRECTS and "Location" in response.headers:
                url = url.join(URL(response.headers["Location"]))
                continue
            if response.status != 200:
                raise FetchFailed(f"the image host answered {response.status}")
            kind = response.content_type
            if not kind.startswith("image/"):
                raise FetchFailed(f"the URL is not an image (content type {kind!r})")
            if (response.content_length or 0) > max_bytes:
                raise FetchFailed(f"the image is larger than {max_bytes} bytes")
            return kind, await _read(response, max_bytes)
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


def _check_url(url: URL, policy: AddressPolicy) -> None:
    """Only http(s); an address literal (which aiohttp connects to without resolving)
    checked here, a name by the resolver."""
    if url.scheme not in ("http", "https") or not url.host:
        raise FetchRefused("only http and https image URLs can be fetched")
    try:
        address = ipaddress.ip_address(url.host.strip("[]").partition("%")[0])
    except ValueError:
        return
    if not policy.permits(address):
        raise FetchRefused(f"{url.host} is not a public address")


async def _read(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise FetchFailed(f"the image is larger than {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)
