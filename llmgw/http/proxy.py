"""HTTP proxies for provider calls: which proxy an origin goes through, and the
``CONNECT`` tunnel an ``https`` origin is reached by.

A provider's ``proxy`` setting wins; without it ``HTTPS_PROXY`` / ``HTTP_PROXY`` (by
the target's scheme) and ``NO_PROXY`` apply, upper or lower case, read by
``urllib.request.getproxies`` and matched as urllib's ``proxy_bypass_environment``
does (``NO_PROXY`` entries are host suffixes, ``host:port`` or ``*``, as curl and
requests read them; no CIDR ranges). The environment is read once per route (a provider of a config
snapshot) and the answer kept per URL with the rest of the request's target: the hot
path never looks at ``os.environ``.

Only ``http://`` proxies: the request to the proxy is plain HTTP/1.1 and an ``https``
target is tunnelled with ``CONNECT``, TLS running end to end through it. An
``http`` target is sent to the proxy in absolute form (``POST http://host/path``).
A proxy URL's ``user:pass`` becomes ``Proxy-Authorization: Basic``. httpx does the
same; aiohttp reads the environment only with ``trust_env=True``, llmgw always does,
as SPEC §9 asks ("honoured when unset").
"""

from __future__ import annotations

import asyncio
import base64
import socket
import urllib.request
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from llmgw.http.errors import ProxyError

MAX_CONNECT_HEAD = 16 * 1024  # bytes of a proxy's answer to CONNECT


class Proxy:
    """A parsed ``http://[user:pass@]host[:port]`` proxy URL."""

    __slots__ = ("auth", "host", "key", "port")

    def __init__(self, url: str) -> None:
        if "://" not in url:
            url = f"http://{url}"  # HTTPS_PROXY=proxy:3128, as curl reads it
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ProxyError(f"the proxy must be an http:// URL, not {parts.scheme}://")
        try:
            self.port = parts.port or 80
        except ValueError:
            raise ProxyError("the proxy URL's port is not a number") from None
        self.host = parts.hostname
        self.auth = ""
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(pair.encode()).decode("ascii")
            self.auth = f"Proxy-Authorization: Basic {token}\r\n"
        self.key = f"{self.host}:{self.port} {self.auth}"  # the pool's; never shown

    def __repr__(self) -> str:
        return f"Proxy({self.host}:{self.port})"  # never the credentials


def environment() -> Mapping[str, str]:
    """The proxy variables as urllib reads them: ``{"https": ..., "no": ...}``."""
    return urllib.request.getproxies()


def choose(scheme: str, host: str, port: int, environ: Mapping[str, str]) -> Proxy | None:
    """The environment's proxy for an origin, or None (none set, or ``NO_PROXY``)."""
    url = environ.get(scheme)
    if not url:
        return None
    if bypassed(host, port, environ.get("no", "")):
        return None
    return Proxy(url)


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """``NO_PROXY`` as urllib's ``proxy_bypass_environment`` reads it: ``*`` for every
    host; else each entry (a leading dot ignored) matches the host and its subdomains,
    and an entry with ``:port`` only that port."""
    host = host.lower().rstrip(".")
    for entry in no_proxy.lower().split(","):
        entry = entry.strip().lstrip(".")
        if entry == "*":
            return True
        name, _, only = entry.partition(":") if entry.count(":") == 1 else (entry, "", "")
        if not name or (only and only != str(port)):
            continue
        if host == name or host.endswith(f".{name}"):
            return True
    return False


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def tunnel(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, target: str, proxy: Proxy
) -> None:
    """Ask the proxy on ``sock`` for a tunnel to ``target`` (``host:port``); return
    once it answered 2xx, the socket then carrying bytes to the target."""
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{proxy.auth}\r\n"
    await loop.sock_sendall(sock, head.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        if len(answer) > MAX_CONNECT_HEAD:
            raise ProxyError("the proxy's answer to CONNECT is too long")
        data = await loop.sock_recv(sock, 4096)
        if not data:
            raise ProxyError("the proxy closed the connection instead of opening a tunnel")
        answer += data
    status_line = answer.partition(b"\r\n")[0]
    fields = status_line.split(b" ", 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/1.") or not fields[1].isdigit():
        raise ProxyError("the proxy's answer to CONNECT is not HTTP/1.1")
    status = int(fields[1])
    if status == 407:
        raise ProxyError("the proxy wants credentials (407): check the proxy URL's user:pass")
    if not 200 <= status < 300:
        raise ProxyError(f"the proxy refused the tunnel ({status})")
    if answer.index(b"\r\n\r\n") + 4 != len(answer):
        raise ProxyError("the proxy sent bytes before the tunnel was used")
