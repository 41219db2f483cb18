"""Client key → principal: who is calling, which models it may use, its limits (SPEC §3).

The key is read from ``Authorization: Bearer <key>``, ``X-API-Key`` (also what the
Anthropic SDK sends as ``x-api-key``) or ``x-goog-api-key``, in that order. It is
never compared as text: its SHA-256 digest is looked up among the configured keys'
digests (``key`` or ``key_sha256``) and confirmed with ``hmac.compare_digest``, so
neither the lookup nor the comparison depends on how much of a guess was right.
Only the key's configured *name* ever leaves this module.

With no keys configured the gateway is open: every caller is the anonymous
principal (``Runtime.announce`` warns about it at every load). It has one tenant, so
the anonymous principal may refresh shared cache entries; with keys, only those with
``cache_refresh: true`` may.

Managed keys (``/api/v1/keys``, kept in the database, see ``auth.managed``) are
looked up the same way after the configured ones, and refused once expired. With
``auth.jwt`` a bearer token shaped like a JWT is checked by ``auth.jwt`` instead
(``identify``). The gateway is open only when there are no configured keys, no
managed keys and no ``auth.jwt``.

A key's ``models`` allowlist names what clients send: an alias, a provider's model
name or ``provider/model``; ``*`` allows every model and ``provider/*`` every
``provider/...`` name. Omitted, every model is allowed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from llmgw.auth.jwt import JwtVerifier, looks_like_jwt
from llmgw.auth.managed import ManagedKeys
from llmgw.config.schema import AuthConfig, ClientKey
from llmgw.core import ANONYMOUS, Principal
from llmgw.errors import AuthenticationFailed, ModelNotAllowed

KEY_HEADERS = ("X-API-Key", "x-goog-api-key")  # after Authorization: Bearer


class Keyring:
    """The digest table of the running ``auth:`` section, rebuilt only when the
    section changes (config snapshots are immutable, so identity tells)."""

    __slots__ = ("_auth", "_jwt", "_table", "managed")

    def __init__(self) -> None:
        self._auth: AuthConfig | None = None
        self._table: Mapping[bytes, tuple[bytes, Principal]] = {}
        self._jwt: JwtVerifier | None = None
        self.managed = ManagedKeys()

    def jwt(self, auth: AuthConfig) -> JwtVerifier | None:
        """The verifier of the running ``auth.jwt`` (its keys kept while it is unchanged)."""
        if auth.jwt is None:
            return None
        if self._jwt is None or self._jwt.config != auth.jwt:
            self._jwt = JwtVerifier(auth.jwt)
        return self._jwt

    def is_open(self, auth: AuthConfig) -> bool:
        return not auth.keys and not self.managed.names and auth.jwt is None

    def table(self, auth: AuthConfig) -> Mapping[bytes, tuple[bytes, Principal]]:
        if auth is not self._auth:
            entries = ((_digest_of(k), _principal(k)) for k in auth.keys)
            self._table = {digest: (digest, principal) for digest, principal in entries}
            self._auth = auth
        return self._table


async def identify(headers: Mapping[str, str], auth: AuthConfig, keyring: Keyring) -> Principal:
    """``authenticate``, and bearer JWTs when ``auth.jwt`` is set."""
    verifier = keyring.jwt(auth)
    if verifier is not None:
        presented = presented_key(headers)
        if presented is not None and looks_like_jwt(presented):
            return await verifier.verify(presented)
    return authenticate(headers, auth, keyring)


def authenticate(headers: Mapping[str, str], auth: AuthConfig, keyring: Keyring) -> Principal:
    """The caller's principal, or 401 ``invalid_api_key``."""
    if keyring.is_open(auth):
        return ANONYMOUS
    presented = presented_key(headers)
    if presented is None:
        raise AuthenticationFailed(
            "Missing API key: send it as 'Authorization: Bearer <key>', 'X-API-Key' "
            "or 'x-goog-api-key'"
        )
    # Header bytes that are not UTF-8 arrive as surrogate escapes: hash them as sent.
    digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
    entry = keyring.table(auth).get(digest)
    if entry is not None and hmac.compare_digest(entry[0], digest):
        return entry[1]
    managed = keyring.managed.by_digest.get(digest)
    if managed is None or not hmac.compare_digest(managed.digest, digest):
        raise AuthenticationFailed("Invalid API key")
    if managed.expires_at is not None and time.time() >= managed.expires_at:
        raise AuthenticationFailed("This API key has expired")
    return managed.principal


def may_use(principal: Principal, model: str) -> bool:
    """Whether the key's allowlist names ``model`` (exactly, as ``provider/*`` or ``*``)."""
    allowed = principal.models
    if allowed is None or model in allowed or "*" in allowed:
        return True
    provider, sep, _ = model.partition("/")
    return bool(sep) and f"{provider}/*" in allowed


def allow_model(principal: Principal, model: str) -> None:
    """Raise 403 ``model_not_allowed`` unless the key's allowlist names ``model``."""
    if may_use(principal, model):
        return
    allowed = principal.models or frozenset()
    names = ", ".join(sorted(allowed)) or "none"
    raise ModelNotAllowed(
        f"The API key '{principal.name}' may not use the model '{model}' (allowed: {names})",
        param="model",
    )


def presented_key(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for name in KEY_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            return value
    return None


def _digest_of(client: ClientKey) -> bytes:
    if client.key_sha256 is not None:
        return bytes.fromhex(client.key_sha256)
    assert client.key is not None  # the schema requires exactly one of the two
    return hashlib.sha256(client.key.encode("utf-8", "surrogateescape")).digest()


def _principal(client: ClientKey) -> Principal:
    models = frozenset(client.models) if client.models is not None else None
    return Principal(client.name, models, client.limits, client.cache_refresh, client.budget)
