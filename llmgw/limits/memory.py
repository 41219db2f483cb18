"""The ``memory`` limits backend: this process's sliding windows, counted in ticks.

It answers with the ``Verdict`` of ``limits.types``, as the ``redis`` backend does.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from llmgw.limits.types import (
    CONCURRENCY_RETRY,
    PER_SECOND,
    TICKS,
    Figures,
    RateLimits,
    Scope,
    Verdict,
)


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
        if not ticks:
            return False
        last = ticks[-1]
        if last[0] == tick:  # usual: the request ended within the tick it began in
            last[1] += delta
            self.total += delta
            return True
        if not ticks[0][0] <= tick < last[0]:
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
        self.scopes: dict[str, ScopeCounters] = {}  # never dropped: a scope's counts last
        # Each scopes tuple's plan, by the tuple's identity (the limits' front hands
        # out the same tuple for the same request shape): no lookup per scope. Bounded.
        self._plans: dict[int, tuple[tuple[Scope, ...], Plan]] = {}

    def admit(self, scopes: tuple[Scope, ...], tokens: int) -> Verdict:
        now = self.clock()
        tick = math.floor(now * PER_SECOND)
        plan = self._plan_of(scopes)
        binding, wait, reason = -1, 0.0, 0
        for index, (state, rpm, tpm, concurrency) in enumerate(plan):
            need, why = -1.0, 0
            if rpm:
                total = state.requests.expire(tick)
                if total >= rpm:
                    need = state.requests.leaves(total + 1 - rpm) - now
            if tpm:
                total = state.tokens.expire(tick)
                if total > 0 and total + tokens > tpm:
                    late = state.tokens.leaves(total + tokens - tpm) - now
                    if late > need:
                        need, why = late, 1
            if concurrency and state.inflight >= concurrency and need < CONCURRENCY_RETRY:
                need, why = CONCURRENCY_RETRY, 2
            if need >= 0 and (binding < 0 or need > wait):
                binding, wait, reason = index, need, why
        if binding < 0:
            for state, rpm, tpm, concurrency in plan:
                if rpm:
                    state.requests.add(tick, 1)
                if tpm:
                    state.tokens.add(tick, tokens)
                if concurrency:
                    state.inflight += 1
        return Verdict(_rate_limits(plan, now), binding, wait, reason, tick)

    def settle(self, scopes: tuple[Scope, ...], tick: int, reserved: int, used: int) -> None:
        """Replace the reservation made at ``tick`` by what was used; if that tick has
        left the window, what was used beyond the reservation counts from now."""
        now_tick = math.floor(self.clock() * PER_SECOND)
        delta = used - reserved
        for state, _, tpm, concurrency in self._plan_of(scopes):
            if tpm:
                window = state.tokens
                window.expire(now_tick)  # first: a tick about to leave must not be corrected
                # (nothing to correct when the reservation was right)
                if delta and not window.correct(tick, delta) and delta > 0:
                    window.add(now_tick, delta)
            if concurrency:
                state.inflight = state.inflight - 1 if state.inflight > 0 else 0

    def _plan_of(self, scopes: tuple[Scope, ...]) -> Plan:
        """Each scope's counters and its limits as plain ints (0: none); reading them
        from the config's models costs more than the counting."""
        held = self._plans.get(id(scopes))
        if held is not None and held[0] is scopes:
            return held[1]
        if len(self._plans) > 4096:  # old snapshots' tuples, or many client addresses
            self._plans.clear()
        counters = self.scopes
        plan = tuple(
            (
                counters.get(s.id) or counters.setdefault(s.id, ScopeCounters()),
                s.spec.rpm or 0,
                s.spec.tpm or 0,
                s.spec.concurrency or 0,
            )
            for s in scopes
        )
        self._plans[id(scopes)] = (scopes, plan)
        return plan


# Per scope: its counters, rpm, tpm and concurrency (0 where not limited).
Plan = tuple[tuple[ScopeCounters, int, int, int], ...]


def _rate_limits(plan: Plan, now: float) -> RateLimits | None:
    """``most_constrained`` read straight from the windows: a scope's reset is worked
    out only when its remaining count could make it the most constrained (the
    requests' and the tokens' ``_tighter``, written out: it runs for every window)."""
    requests: Figures | None = None
    tokens: Figures | None = None
    for state, rpm, tpm, _ in plan:
        if rpm:
            window = state.requests
            total = window.total
            left = rpm - total if total < rpm else 0
            if requests is None or left <= requests[0]:
                ticks = window.ticks
                reset = max(0.0, (ticks[0][0] + TICKS) / PER_SECOND - now) if ticks else 0.0
                if requests is None or left < requests[0] or reset > requests[1]:
                    requests = (left, reset, rpm)
        if tpm:
            tokens = _tighter(state.tokens, tpm, tokens, now)
    if requests is None and tokens is None:
        return None
    return RateLimits(requests, tokens, time.time())


def _tighter(window: _Window, limit: int, best: Figures | None, now: float) -> Figures | None:
    """``best`` or ``window``'s figures, whichever leaves fewer (on a tie, the later
    reset); the reset is worked out only when the window could be the tighter."""
    total = window.total
    left = limit - total if total < limit else 0
    if best is not None and left > best[0]:
        return best
    reset = window.reset(now)
    if best is None or left < best[0] or reset > best[1]:
        return (left, reset, limit)
    return best
