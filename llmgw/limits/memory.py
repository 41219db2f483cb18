"""The ``memory`` limits backend: this process's sliding windows, counted in ticks.

It answers with the ``Verdict`` of ``limits.types``, as the ``redis`` backend does.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from llmgw.limits.types import CONCURRENCY_RETRY, PER_SECOND, TICKS, Count, Scope, Verdict


class _Window:
    """A scope's requests (or tokens) in the last ``WINDOW`` seconds, summed per tick
    (1 / ``PER_SECOND`` seconds), oldest first: at most ``TICKS`` entries however busy the scope,
    and nothing allocated for a request that lands in the current tick."""

    __slots__ = ("ticks", "total")

    def __init__(self) -> None:
        self.ticks: deque[list[int]] = deque()  # [tick, amount]
        self.total = 0

    def expire(self, tick: int) -> int:
        """Count out what was recorded ``TICKS`` ticks or more before ``tick``: the total."""
        ticks = self.ticks
        while ticks and ticks[0][0] <= tick - TICKS:
            self.total -= ticks.popleft()[1]
        return self.total

    def add(self, tick: int, amount: int) -> None:
        ticks = self.ticks
        if ticks and ticks[-1][0] == tick:
            ticks[-1][1] += amount
        else:
            ticks.append([tick, amount])
        self.total += amount

    def reset(self, now: float) -> float:
        """Seconds until the oldest tick leaves the window (0 when it is empty)."""
        ticks = self.ticks
        return max(0.0, (ticks[0][0] + TICKS) / PER_SECOND - now) if ticks else 0.0

    def correct(self, tick: int, delta: int) -> bool:
        """Add ``delta`` to what ``tick`` holds; False once ``tick`` has left the window."""
        ticks = self.ticks
        if not ticks or not ticks[0][0] <= tick <= ticks[-1][0]:
            return False
        # One entry per tick, in order: the entry sits within these bounds, a single
        # place when every tick since has had requests (a busy scope).
        low = max(0, len(ticks) - 1 - (ticks[-1][0] - tick))
        high = min(len(ticks) - 1, tick - ticks[0][0])
        while low < high:
            middle = (low + high) // 2
            if ticks[middle][0] < tick:
                low = middle + 1
            else:
                high = middle
        entry = ticks[low]
        if entry[0] != tick:
            return False
        entry[1] += delta
        self.total += delta
        return True

    def leaves(self, excess: int) -> float:
        """When (in clock seconds) ``excess`` will have been counted out, oldest first."""
        freed, last = 0, 0
        for tick, amount in self.ticks:
            freed, last = freed + amount, tick
            if freed >= excess:
                break
        return (last + TICKS) / PER_SECOND


class ScopeCounters:
    """One scope's counters: its request and token windows and its requests in flight."""

    __slots__ = ("inflight", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = _Window()
        self.tokens = _Window()
        self.inflight = 0


class MemoryCounters:
    """This process's counters, by scope id. Each call runs without awaiting, so
    check-then-record is atomic within the process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.scopes: dict[str, ScopeCounters] = {}

    def admit(self, scopes: tuple[Scope, ...], tokens: int) -> Verdict:
        now = self.clock()
        tick = math.floor(now * PER_SECOND)
        verdict = Verdict([], tick=tick)
        counters = []
        for index, scope in enumerate(scopes):
            spec = scope.spec
            state = self.scopes.get(scope.id)
            if state is None:
                state = self.scopes[scope.id] = ScopeCounters()
            counters.append(state)
            count = Count(inflight=state.inflight)
            need, reason = -1.0, 0
            if spec.rpm:
                count.requests = total = state.requests.expire(tick)
                if total >= spec.rpm:
                    need = state.requests.leaves(total + 1 - spec.rpm) - now
            if spec.tpm:
                count.tokens = total = state.tokens.expire(tick)
                if total > 0 and total + tokens > spec.tpm:
                    wait = state.tokens.leaves(total + tokens - spec.tpm) - now
                    if wait > need:
                        need, reason = wait, 1
            if spec.concurrency and state.inflight >= spec.concurrency and need < CONCURRENCY_RETRY:
                need, reason = CONCURRENCY_RETRY, 2
            if need >= 0 and (verdict.binding < 0 or need > verdict.wait):
                verdict.binding, verdict.wait, verdict.reason = index, need, reason
            verdict.counts.append(count)
        admitted = verdict.binding < 0
        for scope, state, count in zip(scopes, counters, verdict.counts, strict=True):
            spec = scope.spec
            if spec.rpm:
                if admitted:
                    state.requests.add(tick, 1)
                    count.requests += 1
                count.requests_reset = state.requests.reset(now)
            if spec.tpm:
                if admitted:
                    state.tokens.add(tick, tokens)
                    count.tokens += tokens
                count.tokens_reset = state.tokens.reset(now)
            if spec.concurrency and admitted:
                state.inflight = count.inflight = count.inflight + 1
        return verdict

    def settle(self, scopes: tuple[Scope, ...], tick: int, reserved: int, used: int) -> None:
        """Replace the reservation made at ``tick`` by what was used; if that tick has
        left the window, what was used beyond the reservation counts from now."""
        now_tick = math.floor(self.clock() * PER_SECOND)
        for scope in scopes:
            state = self.scopes.get(scope.id)
            if state is None:
                continue
            if scope.spec.tpm:
                window = state.tokens
                window.expire(now_tick)  # first: a tick about to leave must not be corrected
                if not window.correct(tick, used - reserved) and used > reserved:
                    window.add(now_tick, used - reserved)
            if scope.spec.concurrency:
                state.inflight = state.inflight - 1 if state.inflight > 0 else 0
