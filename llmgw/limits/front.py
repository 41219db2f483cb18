"""rpm / tpm / concurrency, per key, per model and globally (SPEC §5).

A request is checked against every *scope* that has a limit for it — its key
(``auth.keys[].limits``), every ``limits.models`` entry that applies to it, and
``limits.global`` — all at once: either it fits in all of them and is recorded in
all of them, or it is refused (429) and recorded in none.

``limits.per_ip`` is a scope per client address (``ip:<address>``, the address from
``limits.clientip``) and ``limits.endpoints`` one per client surface
(``endpoint:<name>``, the endpoint label: ``simple`` for the simple prompt APIs).

A ``limits.models`` entry applies when it names the model the client sent (an alias,
say) or one of the request's resolved targets, as ``model`` or ``provider/model``: a
limit on ``gpt-4o`` holds whether clients write ``gpt-4o``, ``openai/gpt-4o`` or an
alias leading to it. Admission comes before the fallback loop (a refusal is a 429
before anything goes upstream), so which target will answer is not known yet: every
distinct limited model among the targets is charged, each once. A fallback chain
over two limited models counts against both; exact and conservative.

- ``rpm``: requests in the last 60 s: a sliding window, not fixed minutes, counted in
  tenths of a second (a request leaves it at most 0.1 s before its 60 s are up), so
  a scope's counters stay a few kilobytes and O(1) per request however busy it is.
- ``tpm``: tokens in the last 60 s. The prompt's estimate is reserved at admission
  and replaced by the real total (prompt + completion, streamed ones included)
  when the response ends. A request whose estimate alone exceeds ``tpm`` still
  passes when the window is empty, so it is slowed down, never refused forever.
- ``concurrency``: requests in flight.

The limits come from the request's config snapshot; the counters live here, in
objects made once per app and keyed by scope id (``key:<name>``, ``model:<name>``,
``global``), so a reload changes a limit at once without resetting what was counted.
The ``memory`` backend counts in this process. The ``redis`` backend
(``limits.redis``) runs one atomic script per request across every scope, so a limit
holds exactly across replicas; while Redis cannot be reached,
``limits.on_redis_error`` decides (``local`` | ``allow`` | ``deny``).

Every response that a limit applies to carries OpenAI's ``x-ratelimit-*`` headers
for the most constrained scope, and the same scope's requests (tokens when only
``tpm`` applies) as ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (unix seconds); a 429 also carries ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmgw.config.schema import LimitsConfig
from llmgw.core import Call, Principal, RequestContext, estimate_prompt_tokens
from llmgw.errors import RateLimited
from llmgw.limits.memory import MemoryCounters
from llmgw.limits.types import LEASE, Background, Scope, Target, Verdict, format_reset
from llmgw.observe.metrics import Metrics
from llmgw.observe.usage import Spend

if TYPE_CHECKING:
    from llmgw.limits.redis import RedisCounters

# RedisCounters.settle's arguments: scopes, member, tokens reserved, used, spends.
SharedSettle = tuple[tuple[Scope, ...], str, int, int, tuple[Spend, ...]]
REASONS = ("requests per minute", "tokens per minute", "requests in flight")  # by Verdict.reason
__all__ = ["REASONS", "Admission", "Limiter", "format_reset", "limited_models", "scopes_for"]


@dataclass(slots=True)
class Admission:
    """What ``settle`` needs to undo or correct what the admission recorded (``gate.admit``)."""

    scopes: tuple[Scope, ...] = ()
    member: str = ""  # its name in Redis
    reserved: int = 0  # tokens reserved for the prompt
    local: bool = False  # recorded in this process's counters
    tick: int = 0  # ... at this tick
    shared: RedisCounters | None = None  # holds this request's scopes and usage in Redis
    in_shared: bool = False  # the scopes were recorded in Redis


def limited_models(limits: LimitsConfig, model: str, targets: Iterable[Target]) -> tuple[str, ...]:
    """The ``limits.models`` entries that apply: the name sent, then each target's
    ``model`` and ``provider/model``, each entry once."""
    configured = limits.models
    if not configured:
        return ()
    names = [model]
    for target in targets:
        names += (target.model, f"{target.provider}/{target.model}")
    return tuple(dict.fromkeys(name for name in names if name in configured))


def scopes_for(
    limits: LimitsConfig, principal: Principal, models: tuple[str, ...]
) -> tuple[Scope, ...]:
    """The scopes of a request by ``principal`` whose limited models are ``models``."""
    scopes: list[Scope] = []
    if principal.limits is not None and principal.name is not None:
        scopes.append(Scope("key", f"key:{principal.name}", principal.limits))
    scopes += (Scope("model", f"model:{name}", limits.models[name]) for name in models)
    if limits.global_ is not None:
        scopes.append(Scope("global", "global", limits.global_))
    return tuple(s for s in scopes if s.spec.rpm or s.spec.tpm or s.spec.concurrency)


class Limiter:
    """Admission and settlement for every request; one per app, kept across reloads."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.memory = MemoryCounters(clock)
        self._shared: dict[str, RedisCounters] = {}  # by redis_url
        self._background = Background()
        self._memo: dict[tuple[object, ...], tuple[LimitsConfig, tuple[Scope, ...], bool]] = {}
        # Request ids, unique across replicas: a random prefix per process, then a count.
        self._ids = itertools.count()
        self._prefix = secrets.token_hex(6)

    def prepare(
        self,
        limits: LimitsConfig,
        principal: Principal,
        call: Call,
        targets: Iterable[Target],
        ctx: RequestContext,
    ) -> Admission:
        """The request's scopes and estimate, nothing recorded yet (``decide`` does)."""
        scopes, counts_tokens = self._scopes(limits, principal, call.model, tuple(targets), ctx)
        shared = self._shared_for(limits)
        if not scopes:
            return Admission(shared=shared)
        tokens = estimate_prompt_tokens(call) if counts_tokens else 0
        admission = Admission(scopes, reserved=tokens, shared=shared)
        if shared is not None:
            admission.member = f"{self._prefix}{next(self._ids):x}"
        return admission

    def decide(
        self,
        limits: LimitsConfig,
        admission: Admission,
        verdict: Verdict | None,
        ctx: RequestContext,
    ) -> Admission:
        """Admit or raise 429 on Redis's ``verdict`` (None: it cannot be reached, or
        there is no Redis: then ``limits.on_redis_error``, or this process's counters)."""
        scopes = admission.scopes
        if not scopes:
            return admission
        if admission.shared is not None:
            admission.in_shared = verdict is not None
            if verdict is None and limits.on_redis_error == "allow":
                return admission
            if verdict is None and limits.on_redis_error == "deny":
                self.metrics.ratelimit_rejections.labels(scopes[0].kind).inc()
                raise RateLimited(
                    "Rate limits cannot be checked right now; retry shortly",
                    headers={"Retry-After": "1"},
                )
        if verdict is None:
            verdict = self.memory.admit(scopes, admission.reserved)
            admission.local = verdict.binding < 0
            admission.tick = verdict.tick
        # (the header text is made when the response is prepared)
        ctx.ratelimit = None if verdict.rate is None else verdict.rate.headers
        if verdict.binding >= 0:
            scope = scopes[verdict.binding]
            self.metrics.ratelimit_rejections.labels(scope.kind).inc()
            retry = max(1, math.ceil(round(verdict.wait, 3)))
            raise RateLimited(
                f"Rate limit reached for {_describe(scope)}: {REASONS[verdict.reason]}. "
                f"Retry after {retry}s.",
                headers={"Retry-After": str(retry)},
            )
        return admission

    async def settle(
        self, admission: Admission, spend: Spend, losers: tuple[Spend, ...] = ()
    ) -> None:
        """The request is over: replace the token reservation by what was used,
        free its concurrency slot, and add its usage to the shared totals.
        ``losers``: what its hedged racers that lost used, paid for all the same (and
        the calls made for it: ``gate.settle``)."""
        shared = admission.shared
        parts = self.settle_here(admission, spend, losers)
        if shared is not None and parts is not None:
            work = shared.settle(*parts)
            # Shielded: a second cancellation of the handler must not lose the release.
            await asyncio.shield(self._background.spawn(work))

    def give_back(self, admission: Admission) -> None:
        """Undo what the admission of a request that never ran recorded: its token
        reservation and its concurrency slot (its request stays in ``rpm``, and no
        usage is added); Redis's part started (and waited for at shutdown)."""
        if admission.local:
            self.memory.settle(admission.scopes, admission.tick, admission.reserved, 0)
        shared = admission.shared
        if shared is not None and admission.in_shared and admission.scopes:
            work = shared.settle(admission.scopes, admission.member, admission.reserved, 0, ())
            self._background.spawn(work)

    def settle_here(
        self, admission: Admission, spend: Spend, losers: tuple[Spend, ...] = ()
    ) -> SharedSettle | None:
        """``settle`` in this process's counters; what is left to settle in Redis
        (``RedisCounters.settle``'s arguments), if anything."""
        used = spend.prompt_tokens + spend.completion_tokens
        for loser in losers:
            used += loser.prompt_tokens + loser.completion_tokens
        if admission.local:
            self.memory.settle(admission.scopes, admission.tick, admission.reserved, used)
        if admission.shared is None:
            return None
        scopes = admission.scopes if admission.in_shared else ()
        return scopes, admission.member, admission.reserved, used, (spend, *losers)

    async def shared_usage(self, limits: LimitsConfig) -> dict[str, Any] | None:
        """Usage totals of every replica (redis backend), or None."""
        shared = self._shared_for(limits)
        return None if shared is None else await shared.usage()

    async def maintain(self) -> None:
        """Background: keep this replica's concurrency leases alive in Redis."""
        while True:
            await asyncio.sleep(LEASE / 3)
            for shared in list(self._shared.values()):
                await shared.renew()

    async def close(self) -> None:
        await self._background.drain(5)
        for shared in self._shared.values():
            await shared.close()
        self._shared.clear()

    def _scopes(
        self,
        limits: LimitsConfig,
        principal: Principal,
        model: str,
        targets: tuple[Target, ...],
        ctx: RequestContext,
    ) -> tuple[tuple[Scope, ...], bool]:
        """The request's scopes (its address's and endpoint's, then ``scopes_for`` the
        ``limited_models``) and whether any counts tokens, remembered per config
        snapshot, key, model, targets, address and endpoint: the same tuple each time
        (bounded: past 4096 entries the memo starts afresh)."""
        by_request = limits.per_ip is not None or bool(limits.endpoints)
        memo: tuple[object, ...] = (
            id(limits),
            principal.name,
            id(principal.limits),
            model,
            targets,
        )
        if by_request:
            memo += (ctx.client_ip, ctx.endpoint)
        found = self._memo.get(memo)
        if found is not None and found[0] is limits:
            return found[1], found[2]
        if len(self._memo) > 4096:  # old snapshots' entries, or many addresses: start afresh
            self._memo.clear()
        scopes = scopes_for(limits, principal, limited_models(limits, model, targets))
        if by_request:
            scopes = _request_scopes(limits, ctx) + scopes
        counts_tokens = any(scope.spec.tpm for scope in scopes)
        self._memo[memo] = (limits, scopes, counts_tokens)
        return scopes, counts_tokens

    def _shared_for(self, limits: LimitsConfig) -> RedisCounters | None:
        if limits.backend != "redis" or not limits.redis_url:
            return None
        shared = self._shared.get(limits.redis_url)
        if shared is None:
            # Imported here: a gateway that never uses Redis never loads its client.
            from llmgw.limits.redis import RedisCounters

            shared = self._shared[limits.redis_url] = RedisCounters(limits.redis_url)
        return shared


# Surfaces limited together under one ``limits.endpoints`` name.
_LIMIT_GROUPS = {"audio_speech": "audio"}


def _request_scopes(limits: LimitsConfig, ctx: RequestContext) -> tuple[Scope, ...]:
    """The scopes of this client address and this endpoint, when limited."""
    scopes: tuple[Scope, ...] = ()
    if limits.per_ip is not None and ctx.client_ip is not None:
        scopes += (Scope("ip", f"ip:{ctx.client_ip}", limits.per_ip),)
    group = _LIMIT_GROUPS.get(ctx.endpoint or "", ctx.endpoint)
    spec = limits.endpoints.get(group) if group else None  # type: ignore[call-overload]
    if spec is not None:
        scopes += (Scope("endpoint", f"endpoint:{group}", spec),)
    return tuple(s for s in scopes if s.spec.rpm or s.spec.tpm or s.spec.concurrency)


def _describe(scope: Scope) -> str:
    if scope.kind == "key":
        return f"API key '{scope.id[4:]}'"
    if scope.kind == "model":
        return f"model '{scope.id[6:]}'"
    if scope.kind == "ip":
        return f"client address {scope.id[3:]}"
    if scope.kind == "endpoint":
        return f"the {scope.id[9:]} endpoint"
    return "the gateway"
