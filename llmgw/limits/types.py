"""What the limits' front and both backends share: the window, the scopes, and the
``Verdict`` a backend answers with (the most constrained scope's figures, as seen
after recording, if admitted, and which scope refused and for how long)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from llmgw.config.schema import LimitSpec

LEASE = 60.0  # seconds a Redis concurrency slot outlives a replica that stopped renewing it
WINDOW = 60.0  # seconds: rpm and tpm are per minute
PER_SECOND = 10  # the memory windows' ticks per second
TICKS = int(WINDOW * PER_SECOND)
CONCURRENCY_RETRY = 1.0  # when a slot frees is unknown: suggest a second

ScopeKind = Literal["key", "ip", "endpoint", "model", "global"]


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    id: str
    spec: LimitSpec


@dataclass(slots=True)
class Count:
    """One scope's counters as a backend saw them (after recording, if admitted)."""

    requests: int = 0
    requests_reset: float = 0.0  # seconds until the oldest counted request leaves
    tokens: int = 0
    tokens_reset: float = 0.0
    inflight: int = 0


# The most constrained scope's (remaining, seconds until its oldest entry leaves, limit).
Figures = tuple[int, float, int]


@dataclass(slots=True)
class RateLimits:
    """What the ``x-ratelimit-*`` headers say, fixed at admission: the requests and the
    tokens of the most constrained scope (None where no scope limits them). The header
    text is made only when the response is prepared (``headers``)."""

    requests: Figures | None
    tokens: Figures | None
    wall: float  # time.time() at admission: X-RateLimit-Reset is counted from it

    def headers(self) -> list[tuple[str, str]]:
        """The headers, in order, as (name, value) pairs (one ``update`` sets them all)."""
        requests, tokens = self.requests, self.tokens
        plain = requests or tokens  # the seed gateways' X-RateLimit-*: requests first
        if plain is None:
            return []
        headers = [
            ("X-RateLimit-Limit", str(plain[2])),
            ("X-RateLimit-Remaining", str(plain[0])),
            ("X-RateLimit-Reset", str(math.ceil(self.wall + plain[1]))),
        ]
        if requests is not None:
            headers += (
                ("x-ratelimit-limit-requests", str(requests[2])),
                ("x-ratelimit-remaining-requests", str(requests[0])),
                ("x-ratelimit-reset-requests", format_reset(requests[1])),
            )
        if tokens is not None:
            headers += (
                ("x-ratelimit-limit-tokens", str(tokens[2])),
                ("x-ratelimit-remaining-tokens", str(tokens[0])),
                ("x-ratelimit-reset-tokens", format_reset(tokens[1])),
            )
        return headers


def format_reset(seconds: float) -> str:
    """A duration as OpenAI writes it: ``20ms``, ``1s``, ``8.64s``, ``6m0s``."""
    ms = math.ceil(seconds * 1000 - 1e-6) if seconds > 0 else 0  # no 30000 from 29999.0000001
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    whole, fraction = divmod(rest, 1000)
    secs = f"{whole}.{fraction:03d}".rstrip("0") if fraction else str(whole)
    if not minutes:
        return f"{secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"


def most_constrained(scopes: tuple[Scope, ...], counts: list[Count]) -> RateLimits | None:
    """The rate limits of the scope with the fewest requests (tokens) remaining, the
    later reset on a tie; None when no scope limits requests or tokens."""
    requests: Figures | None = None
    tokens: Figures | None = None
    for scope, count in zip(scopes, counts, strict=True):
        spec = scope.spec
        if spec.rpm:
            left = spec.rpm - count.requests if count.requests < spec.rpm else 0
            if requests is None or (left, -count.requests_reset) < (requests[0], -requests[1]):
                requests = (left, count.requests_reset, spec.rpm)
        if spec.tpm:
            left = spec.tpm - count.tokens if count.tokens < spec.tpm else 0
            if tokens is None or (left, -count.tokens_reset) < (tokens[0], -tokens[1]):
                tokens = (left, count.tokens_reset, spec.tpm)
    if requests is None and tokens is None:
        return None
    return RateLimits(requests, tokens, time.time())


@dataclass(slots=True)
class Verdict:
    rate: RateLimits | None  # what the x-ratelimit-* headers say
    binding: int = -1  # index of the scope that refused; -1 = admitted
    wait: float = 0.0  # seconds until the request could fit
    reason: int = 0  # index into limits.REASONS
    tick: int = 0  # when it was recorded, in the memory windows' ticks


class Target(Protocol):
    """A resolved target as the limits read it (``routing.Target`` is one)."""

    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...


class Background:
    """Work a request hands off (settling in Redis, a webhook) that must finish even if
    the request is cancelled, and that shutdown waits for."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, within: float) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=within)
