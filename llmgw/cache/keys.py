"""Exact-match cache keys and the client's cache policy (SPEC §4).

The key is a hash of the endpoint, the requested model and the canonical request
body (keys sorted at every depth; ``stream`` and ``stream_options`` in it, since a
replay must carry exactly the chunks the client asked for; ``user`` out), plus the
client key's name when ``cache.scope`` is ``key``. An entry holds
the exact bytes sent to the client (a stream's events joined in one piece), so a hit
replays them identically.

Every client header the gateway forwards upstream (``Call.headers``, e.g.
``anthropic-beta``) is part of the key too: names lower-cased, values as sent. What
can change the provider's answer must change the key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from llmgw.cache.entry import Entry
from llmgw.core import Call

_IGNORED_FIELD = "user"
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)")


@dataclass(frozen=True, slots=True)
class Policy:
    """What the client's Cache-Control allows for this request."""

    read: bool = True
    write: bool = True
    max_age: int | None = None

    @classmethod
    def from_header(cls, header: str | None) -> Policy:
        if not header:
            return _DEFAULT_POLICY
        value = header.lower()
        match = _MAX_AGE.search(value)
        max_age = int(match.group(1)) if match else None
        return cls(
            read="no-cache" not in value and max_age != 0,
            write="no-store" not in value,
            max_age=max_age,
        )

    def accepts(self, entry: Entry, now: float) -> bool:
        return self.max_age is None or entry.age(now) <= self.max_age


_DEFAULT_POLICY = Policy()


def cache_key(call: Call, scope: str | None) -> str:
    """The entry's key; ``scope`` is the client key's name under ``scope: key``."""
    body: Mapping[str, Any] = call.body
    if _IGNORED_FIELD in body:
        body = {k: v for k, v in body.items() if k != _IGNORED_FIELD}
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(canonical)
    digest.update(b"\x00" + call.endpoint.encode() + b"\x00" + call.model.encode())
    if call.headers:  # what reaches the provider besides the body (e.g. anthropic-beta)
        sent = sorted((name.lower(), value) for name, value in call.headers.items())
        digest.update(b"\x00headers:" + orjson.dumps(sent))
    if scope is not None:
        digest.update(b"\x00key:" + scope.encode())
    return "llmgw:cache:" + digest.hexdigest()
