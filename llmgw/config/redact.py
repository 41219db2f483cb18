"""The running config with every secret replaced, for ``/api/v1/config``."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from llmgw.config.providers import ProviderConfig
from llmgw.config.schema import GatewayConfig

REDACTED = "[redacted]"
_SECRET_KEYS = frozenset({"api_key", "key", "admin_key"})
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|password|signature", re.IGNORECASE)


def redacted(config: GatewayConfig) -> dict[str, Any]:
    """The config as JSON-ready data: keys, secret headers and URL passwords hidden."""
    data: dict[str, Any] = _walk(config.model_dump(mode="json", by_alias=True), None)
    return data


def provider_secrets(provider: ProviderConfig) -> tuple[str, ...]:
    """What must never be shown of a provider: its key and its secret headers' values."""
    headers = (v for name, v in provider.headers.items() if _SECRET_HEADER.search(name))
    return tuple(v for v in (provider.api_key, *headers) if v)


def _walk(value: Any, key: str | None) -> Any:
    if isinstance(value, dict):
        if key == "headers":
            return {
                name: REDACTED if _SECRET_HEADER.search(name) else _walk(v, name)
                for name, v in value.items()
            }
        return {
            name: REDACTED if name in _SECRET_KEYS and v else _walk(v, name)
            for name, v in value.items()
        }
    if isinstance(value, list):
        return [_walk(item, key) for item in value]
    if isinstance(value, str) and "@" in value and "://" in value:
        return _hide_password(value)
    return value


def _hide_password(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    userinfo = f"{user}:{REDACTED}" if parts.password is not None else REDACTED
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))
