"""TLS for provider calls: the system's CAs, plus a provider's own ``ca_file`` (an
extra bundle, trusted beside the system's, as ``curl --cacert`` with a corporate CA
is usually meant) and a client certificate for mTLS (``client_cert``, ``client_key``).

Contexts are made when a config snapshot is built (reading the files then), never
per request; a provider without any of these settings shares the pool's context.
"""

from __future__ import annotations

import ssl

from llmgw.http.errors import TlsError


def context(
    ca_file: str | None = None, client_cert: str | None = None, client_key: str | None = None
) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, ``ca_file`` too, and the client
    certificate (``client_key`` may be left out when the key is in ``client_cert``)."""
    tls = ssl.create_default_context()
    if ca_file:
        tls.load_verify_locations(cafile=ca_file)
    if client_cert:
        tls.load_cert_chain(client_cert, client_key or None)
    return tls


def failure(exc: ssl.SSLError | ssl.CertificateError) -> TlsError:
    """What an operator needs from a failed handshake: the verification's own words
    (an unknown CA, a host name not on the certificate) or the alert's reason."""
    detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    return TlsError(f"the TLS handshake failed ({detail or type(exc).__name__})")
