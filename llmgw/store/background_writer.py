"""The loop the usage ledger and the budget spend writer share: wake every
``INTERVAL`` seconds (or when asked), write what is held, back off (doubling, up to
``MAX_BACKOFF``) while the database refuses; and ``close``, which stops the loop
without cancelling a write mid-way (that would strand a connection), retries what is
held for a while, then gives up on it, counted and logged by the subclass."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

INTERVAL = 0.25  # seconds between writes
MAX_BACKOFF = 5.0


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class BackgroundWriter:
    """Subclasses say how to write (``flush``), what one turn of the loop does
    (``_cycle``: a flush unless overridden), what is still held and how to drop it."""

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False

    bound: int  # what may be held at once, set by the subclass
    dropped: int  # what could not be held, since start

    def _refuse_one(self, counter: _Counter, log: logging.Logger, message: str, what: str) -> None:
        """One more item not held, the buffer being full: counted, and logged (with
        ``message``'s bound, ``what`` and the count so far) the first time and then
        every thousandth, so a full buffer cannot flood the log."""
        self.dropped += 1
        counter.inc()
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.error(message, self.bound, what, self.dropped)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        backoff = INTERVAL
        wake = self._wake
        while not self._stopping:
            if not wake.is_set():  # a timeout, not ``wait_for``: no task made per turn
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await wake.wait()
            wake.clear()
            if self._stopping:
                return
            backoff = INTERVAL if await self._cycle() else min(MAX_BACKOFF, backoff * 2)

    async def _cycle(self) -> bool:
        return await self.flush()

    async def flush(self) -> bool:
        """Write everything held; False when the database refused (kept)."""
        raise NotImplementedError

    def _held(self) -> int:
        raise NotImplementedError

    def _drop_held(self, count: int) -> None:
        raise NotImplementedError

    async def close(self, within: float = 10.0) -> None:
        """Stop the writer, then write what is held (retrying for up to ``within`` s)."""
        if self._task is not None:
            # Not cancelled mid-write (that would strand a connection): asked to stop.
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), within)
        deadline = time.monotonic() + within
        for _ in range(max(1, int(within / 0.2))):  # bounded: a dead database ends it
            if await self.flush() or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        held = self._held()
        if held:
            self._drop_held(held)
