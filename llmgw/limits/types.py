"""What the limits' front and both backends share: the window, the scopes, and the
``Verdict`` a backend answers with (one ``Count`` per scope, as seen after recording,
if admitted, and which scope refused and for how long)."""

from __future__ import annotations

import asyncio
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


@dataclass(slots=True)
class Verdict:
    counts: list[Count]
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
