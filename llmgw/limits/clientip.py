"""The client's address, as ``limits.per_ip`` counts it.

The peer's own address, unless the peer is a trusted proxy (``server.trusted_proxies``):
then ``X-Forwarded-For`` is read from the right, past every trusted proxy, and the
first untrusted address is the client's. Entries left of it were written by the client
itself and prove nothing. An untrusted peer's header is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_HOPS = 32  # X-Forwarded-For entries read at most (the header is the client's to pad)


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """``server.trusted_proxies`` as networks (the config checked that they parse)."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted: tuple[Network, ...]
) -> str:
    """The client's address, normalised (``"unknown"`` when the peer has none)."""
    if not trusted and peer and peer.count(".") == 3 and peer.replace(".", "").isdigit():
        return peer  # a socket's IPv4 peer, as the kernel wrote it: normal already
    current = _parse(peer)
    if current is None:
        return peer or "unknown"
    if not trusted:
        return str(current)
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops[-MAX_HOPS:]):
        if not _within(current, trusted):
            break
        address = _parse(hop)
        if address is None:  # garbage from a proxy's client: stop at the last sure address
            break
        current = address
    return str(current)


def _parse(value: str | None) -> Address | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)
