"""Request extensions (SPEC §10): in the body, or as headers of the same name.

``x-routing-strategy``, ``x-prefer-provider``, ``x-cache``, ``x-budget-key`` and
``x-gateway: {cache, timeout, provider, strategy, metadata, metadata_in_body}``. The
body's value wins over a header's. They are validated here (a bad one is a 400 naming
the field) and removed from the body before it goes upstream. Whether a strategy or a
provider exists depends on the config and is checked by the planner (routing/plan.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from llmgw.config.routing import POOL_ONLY, SCORING
from llmgw.config.units import parse_duration
from llmgw.core import NO_EXTENSIONS, Extensions
from llmgw.errors import InvalidRequest

NAMES = ("x-routing-strategy", "x-prefer-provider", "x-cache", "x-budget-key", "x-gateway")
GATEWAY_FIELDS = frozenset(
    {"cache", "timeout", "provider", "strategy", "metadata", "metadata_in_body"}
)
MAX_TAGS = 8
MAX_TAG_VALUE = 64
MAX_NAME = 128  # a strategy, provider or budget key name
STRATEGIES = (*SCORING, *POOL_ONLY)


def extract(
    body: dict[str, Any], headers: Mapping[str, str] | None
) -> tuple[Extensions, dict[str, Any] | None]:
    """The request's extensions and, when its body held some, the body without them
    (None: the body is unchanged, and goes upstream as the client's exact bytes)."""
    given: dict[str, object] = {}
    if headers is not None:
        for name in NAMES:
            value = headers.get(name)
            if value is not None:
                given[name] = _header_gateway(value) if name == "x-gateway" else value
    stripped = None
    if any(name in body for name in NAMES):
        stripped = {k: v for k, v in body.items() if k not in NAMES}
        given.update((name, body[name]) for name in NAMES if name in body)
    if not given:
        return NO_EXTENSIONS, None
    return _parse(given), stripped


def _parse(given: dict[str, object]) -> Extensions:
    gateway = given.get("x-gateway", {})
    if not isinstance(gateway, dict):
        raise InvalidRequest("'x-gateway' must be an object", param="x-gateway")
    unknown = sorted(set(gateway) - GATEWAY_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"'x-gateway.{unknown[0]}' is not an extension (known: "
            f"{', '.join(sorted(GATEWAY_FIELDS))})",
            param=f"x-gateway.{unknown[0]}",
        )
    strategy, field = _name(given, "x-routing-strategy"), "x-routing-strategy"
    if strategy is None:
        strategy, field = _name(gateway, "strategy", "x-gateway."), "x-gateway.strategy"
    if strategy is not None and strategy not in STRATEGIES:
        raise InvalidRequest(
            f"'{field}' is '{strategy}': use one of {', '.join(STRATEGIES)}", param=field
        )
    provider, provider_field = _name(given, "x-prefer-provider"), "x-prefer-provider"
    if provider is None:
        provider, provider_field = _name(gateway, "provider", "x-gateway."), "x-gateway.provider"
    cache = _flag(gateway, "cache", "x-gateway.")
    if "x-cache" in given:
        cache = _flag(given, "x-cache")
    return Extensions(
        strategy=strategy,
        prefer_provider=provider,
        provider_field=provider_field,
        cache=cache is not False,
        budget_key=_name(given, "x-budget-key"),
        timeout=_timeout(gateway.get("timeout")),
        metadata=_metadata(gateway.get("metadata")),
        metadata_in_body=_flag(gateway, "metadata_in_body", "x-gateway.") is True,
    )


def _header_gateway(value: str) -> object:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "The 'x-gateway' header must be a JSON object", param="x-gateway"
        ) from None


def _name(values: Mapping[str, object], key: str, prefix: str = "") -> str | None:
    value = values.get(key)
    if value is None:
        return None
    field = f"{prefix}{key}"
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"'{field}' must be a non-empty string", param=field)
    if len(value) > MAX_NAME or not (value.isascii() and value.isprintable()):
        raise InvalidRequest(
            f"'{field}' must be printable ASCII of at most {MAX_NAME} characters", param=field
        )
    return value.strip()


def _flag(values: Mapping[str, object], key: str, prefix: str = "") -> bool | None:
    value = values.get(key)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    field = f"{prefix}{key}"
    raise InvalidRequest(f"'{field}' must be true or false", param=field)


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("not a duration")
        seconds = parse_duration(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InvalidRequest(
            "'x-gateway.timeout' must be a positive number of seconds or a duration like '10s'",
            param="x-gateway.timeout",
        )
    return seconds


def _metadata(value: object) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    field = "x-gateway.metadata"
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{field}' must be an object of strings", param=field)
    if len(value) > MAX_TAGS:
        raise InvalidRequest(
            f"'{field}' has {len(value)} keys; at most {MAX_TAGS} are allowed", param=field
        )
    for key, tag in value.items():
        if not isinstance(tag, str) or len(tag) > MAX_TAG_VALUE or len(key) > MAX_TAG_VALUE:
            raise InvalidRequest(
                f"'{field}.{key[:MAX_TAG_VALUE]}' must be a string of at most "
                f"{MAX_TAG_VALUE} characters",
                param=field,
            )
    return MappingProxyType(dict(value))
