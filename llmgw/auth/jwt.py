"""Bearer JWTs as client credentials (``auth.jwt``), checked with PyJWT.

HS256 tokens are checked with ``secret``; RS256/ES256 tokens with the public keys
at ``jwks_url``, fetched once at start and kept: an unknown ``kid`` refetches the
set (at most every 10 s, so a flood of forged ``kid``s cannot make the gateway
hammer its identity provider) and never does a request fetch otherwise. The
signature, ``exp`` (required), ``nbf``, ``iss`` and ``aud`` (when configured) are
checked; the ``claims.name`` claim becomes the principal's name and the
``claims.models`` claim (a list, or a space-separated string) its model allowlist.
A refusal is a 401 that says why and never echoes the token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt

from llmgw.config.store import JwtConfig
from llmgw.core import Principal
from llmgw.errors import AuthenticationFailed

log = logging.getLogger(__name__)
ASYMMETRIC = ("RS256", "ES256")
REFETCH_EVERY = 10.0


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


class JwtVerifier:
    """The check for one ``auth.jwt`` section, with its cached signing keys."""

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self._keys: dict[str, Any] = {}  # kid -> key object
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> None:
        """Fetch the JWKS (rate-limited to one fetch per ``REFETCH_EVERY`` s)."""
        url = self.config.jwks_url
        if url is None:
            return
        async with self._lock:
            if not force and time.monotonic() - self._fetched < REFETCH_EVERY:
                return
            self._fetched = time.monotonic()
            try:
                timeout = aiohttp.ClientTimeout(total=5)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(url) as response,
                ):
                    response.raise_for_status()
                    document = await response.json(content_type=None)
                keys = jwt.PyJWKSet.from_dict(document)
            except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
                log.warning("auth.jwt: cannot fetch the signing keys from %s: %s", url, exc)
                return
            self._keys = {k.key_id: k for k in keys.keys if k.key_id is not None}
            log.info("auth.jwt: %d signing keys from %s", len(self._keys), url)

    async def verify(self, token: str) -> Principal:
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationFailed("Invalid token: malformed JWT") from None
        algorithm = header.get("alg")
        if config.secret is not None:
            if algorithm != "HS256":
                raise AuthenticationFailed(f"Invalid token: algorithm {algorithm!r} not accepted")
            key: Any = config.secret
        else:
            if algorithm not in ASYMMETRIC:
                raise AuthenticationFailed(f"Invalid token: algorithm {algorithm!r} not accepted")
            kid = header.get("kid")
            if not isinstance(kid, str):
                raise AuthenticationFailed("Invalid token: no 'kid' in its header")
            found = self._keys.get(kid)
            if found is None:
                await self.refresh()
                found = self._keys.get(kid)
            if found is None:
                raise AuthenticationFailed("Invalid token: unknown signing key")
            key = found.key
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway,
                options={"require": ["exp"], "verify_aud": config.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("Invalid token: expired") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("Invalid token: bad signature") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed("Invalid token: wrong audience") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed("Invalid token: wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(f"Invalid token: no '{exc.claim}' claim") from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("Invalid token: malformed JWT") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        names = self.config.claims
        name = claims.get(names.name)
        if not isinstance(name, str) or not name:
            raise AuthenticationFailed(f"Invalid token: no '{names.name}' claim")
        models: frozenset[str] | None = None
        if names.models is not None:
            value = claims.get(names.models, [])
            if isinstance(value, str):
                value = value.split()
            if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
                raise AuthenticationFailed(f"Invalid token: '{names.models}' is not a list")
            models = frozenset(value)
        return Principal(name, models)
