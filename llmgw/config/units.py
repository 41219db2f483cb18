"""Durations and sizes as people write them in gateway.yaml.

A duration is ``250ms``, ``30s``, ``5m``, ``1h`` or a sequence such as ``1m30s``;
a bare number means seconds. A size is ``512KiB``, ``20MiB``, ``1GB``; a bare
number means bytes. Both parse to plain numbers (seconds as ``float``, bytes as
``int``) so the rest of the gateway never sees a unit.
"""

from __future__ import annotations

import math
import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1000,
    "KIB": 1024,
    "M": 1024**2,
    "MB": 1000**2,
    "MIB": 1024**2,
    "G": 1024**3,
    "GB": 1000**3,
    "GIB": 1024**3,
    "T": 1024**4,
    "TB": 1000**4,
    "TIB": 1024**4,
}


def parse_duration(value: object) -> float:
    """Seconds from ``30s``-style text or a bare number; ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"invalid duration {value!r}: must be a finite number")
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}")
    text = value.strip()
    try:
        return parse_duration(float(text))
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        raise ValueError(f"invalid duration {value!r} (use e.g. 250ms, 30s, 5m, 1h)")
    return total


def parse_size(value: object) -> int:
    """Bytes from ``20MiB``-style text or a bare number; ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: must not be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"invalid size {value!r}")
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"invalid size {value!r} (use e.g. 512KiB, 20MiB, 1GB)")
    unit = (match.group(2) or "").upper()
    if unit.endswith("I"):  # "Ki", "Mi": Kubernetes' spelling of KiB, MiB
        unit += "B"
    return int(float(match.group(1)) * _SIZE_UNITS[unit])
