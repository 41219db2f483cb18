"""The provider HTTP client's errors, in their own module so that the pool
(``client``), the response (``response``) and the connecting helpers
(``connect``, ``proxy``, ``tls``) share them without an import circle.

::

    HttpError                      kind             outcome (metric label)
    ├── ConnectError               connect_error    connect_error
    │   ├── DnsError                                dns_error
    │   ├── TlsError                                tls_error
    │   ├── ConnectRefused                          connect_refused
    │   └── ProxyError                              proxy_error
    ├── NoResponse                 connect_error    connect_error
    │   ├── ConnectReset                            connect_reset
    │   └── HeadTooLarge                            head_too_large
    ├── Disconnected               stream_error     stream_error
    ├── BadResponse                stream_error     stream_error
    ├── BodyTooLarge               stream_error     stream_error
    ├── (TlsError, too, when TLS 1.3 refuses a client certificate after the handshake)
    ├── InvalidRequest             connect_error    connect_error
    ├── ReadTimeout (TimeoutError) timeout          timeout
    └── HeadTimeout (TimeoutError) timeout          timeout
        └── ConnectTimeout                          connect_timeout

``kind`` is the fallback condition (``routing.fallback_on``) an error matches, so
``connect_error`` keeps matching every way a connection can fail; ``outcome`` says
which, for ``llmgw_upstream_attempts_total`` and the failure's log line. Messages
name no URL path or query (a Gemini key travels in one) and no proxy credentials.
"""

from __future__ import annotations

from typing import ClassVar


class HttpError(Exception):
    """A request failed below HTTP semantics."""

    kind: ClassVar[str] = "connect_error"
    outcome: ClassVar[str] = "connect_error"


class ConnectError(HttpError):
    """No connection could be opened."""


class DnsError(ConnectError):
    """The host name did not resolve."""

    outcome = "dns_error"


class TlsError(ConnectError):
    """The TLS handshake failed: an unknown CA, a name not on the certificate, a
    client certificate the server refused."""

    outcome = "tls_error"


class ConnectRefused(ConnectError):
    """Every address refused the connection (nothing listens there)."""

    outcome = "connect_refused"


class ProxyError(ConnectError):
    """The proxy could not be used: a bad proxy URL, or it refused the tunnel."""

    outcome = "proxy_error"


class NoResponse(HttpError):
    """The connection closed, broke or carried no HTTP/1.1 before the response's head."""


class ConnectReset(NoResponse):
    """The connection was reset (RST) while connecting or before the response's head."""

    outcome = "connect_reset"


class HeadTooLarge(NoResponse):
    """The response's head went over ``MAX_HEAD`` bytes without ending."""

    outcome = "head_too_large"


class Disconnected(HttpError):
    """The connection closed or broke after the head, before the body was whole."""

    kind = outcome = "stream_error"


class BadResponse(HttpError):
    """The body's framing or coding was not valid (a broken chunk, a cut gzip stream)."""

    kind = outcome = "stream_error"


class InvalidRequest(HttpError):
    """The request cannot be written: a header holds a line break."""


class BodyTooLarge(HttpError):
    """A body read whole, or a decoded body, went over the pool's ``max_body``."""

    kind = outcome = "stream_error"


class ReadTimeout(HttpError, TimeoutError):
    """No byte of the body arrived within the read timeout."""

    kind = outcome = "timeout"


class HeadTimeout(HttpError, TimeoutError):
    """The connection and the response's head took longer than the head timeout."""

    kind = outcome = "timeout"


class ConnectTimeout(HeadTimeout):
    """No connection (name, TCP, a proxy's tunnel, TLS) within the connect timeout:
    unlike a slow head, evidence that the provider cannot be reached."""

    outcome = "connect_timeout"
