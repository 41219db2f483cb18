"""The field types every section of gateway.yaml is built from.

Frozen models that forbid unknown keys, read-only mappings, durations and sizes as
people write them, a single string taken as a one-item list, ``""`` read as unset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from llmgw.config.units import parse_duration, parse_size

K = TypeVar("K")
V = TypeVar("V")


def _freeze(mapping: Mapping[K, V]) -> Mapping[K, V]:
    return MappingProxyType(dict(mapping))


def empty_to_none(value: object) -> object:
    """``${VAR:-}`` resolves to an empty string: for optional settings that means unset."""
    return None if value == "" else value


def empty_map() -> Mapping[Any, Any]:
    return MappingProxyType({})


def _as_tuple(value: object) -> object:
    """A single string where a list is expected is taken as a one-item list."""
    return (value,) if isinstance(value, str) else value


FrozenMap = Annotated[
    Mapping[K, V], AfterValidator(_freeze), PlainSerializer(dict, return_type=dict)
]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Names = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]
Optional = Annotated[str | None, BeforeValidator(empty_to_none)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


def check_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"https?://[^/\s]+", value):
        raise ValueError(f"invalid URL {value!r}: must start with http:// or https://")
    return value.rstrip("/")
