"""Who may use the admin API (``/api/v1/*``) and, off its own port, ``/metrics`` (SPEC §3).

With ``auth.admin_key`` set: ``Authorization: Bearer <admin_key>``, compared in constant
time. Without one, only a *direct* local client is admitted, since the peer address
alone proves nothing once something on the host relays traffic (nginx, Envoy, a mesh
sidecar whose inbound source is 127.0.0.6) or a browser on the host is steered here
(CSRF, DNS rebinding). A request is direct and local when all of these hold:

- the peer is on loopback (127.0.0.0/8 or ::1);
- ``Host`` names loopback: ``localhost``, ``127.x.x.x`` or ``[::1]``, with any port;
- it carries no forwarding header (``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``, ...);
- an ``Origin``, if sent, is itself loopback (a page served from elsewhere is refused).

In both modes a browser's ``Sec-Fetch-Site: cross-site`` is refused. A cross-site form
or ``text/plain`` POST can neither add the Bearer header (that needs a preflight, which
``/api/v1/*`` never grants) nor pass the checks above, so it never changes anything.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

from aiohttp import web

from llmgw.errors import AuthenticationFailed, Forbidden

# Headers a proxy adds to say who the real client is. Their presence means the
# connection is relayed, whatever its peer address.
FORWARDING_HEADERS = (
    "Forwarded",
    "X-Real-IP",
    "X-Client-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "X-Envoy-External-Address",
    "X-Original-Forwarded-For",
    "Via",
)
_FORWARDED_PREFIX = "x-forwarded-"
_SET_THE_KEY = "set auth.admin_key and send it as 'Authorization: Bearer <key>'"


def check_admin(request: web.Request, admin_key: str | None) -> None:
    """Raise 401/403 unless the caller may use the admin API guarded by ``admin_key``
    (None: no key configured)."""
    headers = request.headers
    if headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        raise Forbidden("The admin API does not answer cross-site browser requests")
    if admin_key is None:
        reason = why_not_direct_loopback(request.remote, headers)
        if reason is not None:
            raise Forbidden(
                f"Without auth.admin_key the admin API answers only direct loopback "
                f"connections, and this one {reason}: {_SET_THE_KEY}"
            )
        return
    header = headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode("utf-8", "surrogateescape"),
        admin_key.encode("utf-8", "surrogateescape"),
    ):
        raise AuthenticationFailed("A valid admin key is required (Authorization: Bearer ...)")


def why_not_direct_loopback(remote: str | None, headers: Mapping[str, str]) -> str | None:
    """None for a direct local client; else what gave it away, in a few words."""
    if not _is_loopback_ip(remote):
        return "comes from a remote address"
    for name in headers:
        lowered = name.lower()
        if lowered.startswith(_FORWARDED_PREFIX) or any(
            lowered == known.lower() for known in FORWARDING_HEADERS
        ):
            return f"was relayed by a proxy ({name} header)"
    if not is_loopback_host(headers.get("Host", "")):
        return "names a host that is not loopback"
    origin = headers.get("Origin")
    if origin is not None and not _is_loopback_origin(origin):
        return "comes from a web page of another origin"
    return None


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.x.x.x`` or ``[::1]``, with an optional port."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not _is_port(rest)):
            return False
        return _is_loopback_ip(name)
    name, colon, port = host.partition(":")
    if colon and not _is_port(":" + port):
        return False
    if name in ("localhost", "localhost."):
        return True
    return name.count(".") == 3 and _is_loopback_ip(name)


def _is_loopback_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.path or parts.query:
        return False
    return is_loopback_host(parts.netloc) and "@" not in parts.netloc


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit() and len(text) <= 6


def _is_loopback_ip(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # a dual-stack listener's IPv4 peer
    return address.is_loopback
