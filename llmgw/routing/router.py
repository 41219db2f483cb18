"""Model name → ordered targets; which failures fall back; circuit breakers (SPEC §2).

Resolution, for the ``model`` a client sends:
1. an alias under ``models:`` → its targets, in order (a pool's: as listed; the
   planner, routing/plan.py, orders them by the pool's strategy);
2. ``provider/model`` naming a configured provider → that one target;
3. every enabled provider listing the name, in config order, then those with "*";
4. nothing → ``ModelNotFound`` listing what is available.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from llmgw.config import GatewayConfig
from llmgw.config.routing import AliasPool
from llmgw.errors import ModelNotFound
from llmgw.upstream import AttemptFailure

MAX_RETRY_AFTER = 10.0
OTHER = "other"  # metric label for model names that are not configured


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str  # the name sent upstream

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


class Router:
    """Resolution tables built once per config snapshot; lookups are O(1)."""

    __slots__ = (
        "_aliases",
        "_listed",
        "_names",
        "_owners",
        "_providers",
        "_virtual",
        "_wildcards",
        "chat_targets",
        "pools",
    )

    def __init__(self, config: GatewayConfig, enabled: Mapping[str, bool]) -> None:
        self._providers = frozenset(config.providers)
        self.pools = {
            alias: value for alias, value in config.models.items() if isinstance(value, AliasPool)
        }
        self._aliases = {
            alias: tuple(
                Target(*t.split("/", 1))
                for t in (
                    (p.target for p in targets.targets)
                    if isinstance(targets, AliasPool)
                    else targets
                )
            )
            for alias, targets in config.models.items()
        }
        # A virtual model (auto, fast, cheap) gives way to an alias of the same name.
        self._virtual = {
            name: strategy
            for name, strategy in config.routing.virtual_models.items()
            if name not in self._aliases
        }
        on: dict[str, list[Target]] = {}
        off: dict[str, list[Target]] = {}
        wildcards: list[str] = []
        for name, provider in config.providers.items():
            for model in provider.models or ():
                if model == "*":
                    if enabled[name]:
                        wildcards.append(name)
                else:
                    (on if enabled[name] else off).setdefault(model, []).append(Target(name, model))
        self._wildcards = tuple(wildcards)
        # The default candidates of virtual models: chat models the enabled providers list.
        self.chat_targets = tuple(
            target
            for targets in on.values()
            for target in targets
            if "embed" not in target.model.lower()
        )
        # Enabled listers, then enabled wildcards, then disabled listers (so that a
        # model whose every provider is disabled answers 503, not 404).
        self._listed = {
            model: (
                *on.get(model, ()),
                *(
                    Target(w, model)
                    for w in wildcards
                    if w not in {t.provider for t in on.get(model, ())}
                ),
                *off.get(model, ()),
            )
            for model in (*on, *off)
        }
        self._names = (
            *self._aliases,
            *self._virtual,
            *(m for m in on if m not in self._aliases and m not in self._virtual),
        )
        self._owners = {model: tuple(t.provider for t in targets) for model, targets in on.items()}

    def virtual(self, model: str) -> str | None:
        """The strategy of the virtual model ``model`` (auto, fast, cheap), or None."""
        return self._virtual.get(model)

    def resolve(self, model: str) -> tuple[Target, ...]:
        targets = self._aliases.get(model) or self._listed.get(model)
        if targets is not None:
            return targets
        provider, sep, upstream_model = model.partition("/")
        if sep and upstream_model and provider in self._providers:
            return (Target(provider, upstream_model),)
        if self._wildcards:
            return tuple(Target(name, model) for name in self._wildcards)
        shown = ", ".join(self._names[:50]) + (", ..." if len(self._names) > 50 else "")
        raise ModelNotFound(
            f"The model '{model}' does not exist or is not served here. "
            f"Available models: {shown or 'none'}",
            param="model",
            details={"requested_model": model, "available_models": list(self._names)},
        )

    def label(self, model: str) -> str:
        """The model as a metric label: a configured name, never arbitrary client text."""
        if model in self._aliases or model in self._listed or model in self._virtual:
            return model
        provider, _, upstream_model = model.partition("/")
        if provider in self._providers and upstream_model in self._listed:
            return model
        return OTHER

    def owners(self, model: str) -> tuple[str, ...]:
        """The enabled providers that list ``model`` by name."""
        return self._owners.get(model, ())

    def names(self) -> tuple[str, ...]:
        """Aliases, then models listed by enabled providers (for /v1/models and 404s)."""
        return self._names


def falls_back(failure: AttemptFailure, fallback_on: frozenset[str | int]) -> bool:
    """Whether a failed attempt moves on (retry, then next target) or ends the request."""
    if failure.kind in ("stream_error", "unsupported", "busy"):
        return True
    if failure.kind == "status":
        return failure.status in (401, 403) or failure.status in fallback_on
    return failure.kind in fallback_on


def retries(failure: AttemptFailure) -> bool:
    """Whether trying the same target again can help: not when it asked for a longer
    wait than the gateway holds a request for (the client is told the wait instead)."""
    if failure.kind in ("unsupported", "busy"):
        return False
    if failure.retry_after is not None and failure.retry_after > MAX_RETRY_AFTER:
        return False
    return not (failure.kind == "status" and failure.status in (401, 403))


def backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds before retry ``attempt`` (1-based): Retry-After up to 10 s, else
    exponential from 250 ms with full jitter, capped at 4 s."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    ceiling: float = min(0.25 * 2.0 ** (attempt - 1), 4.0)
    return random.uniform(0.5, 1.0) * ceiling


class CircuitBreaker:
    """Skip a provider after ``failures`` consecutive failures for ``cooldown``,
    then let one trial request through: success closes, failure re-opens."""

    __slots__ = ("_clock", "_failures", "_opened_at", "_trial", "state")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False
        self.state = "closed"

    def allow(self, threshold: int, cooldown: float) -> bool:
        if threshold <= 0 or self.state == "closed":
            return True
        if self.state == "open" and self._clock() - self._opened_at >= cooldown:
            self.state = "half_open"
        if self.state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def is_open(self, cooldown: float) -> bool:
        """Open and still cooling down (no trial would be let through): read only."""
        return self.state == "open" and self._clock() - self._opened_at < cooldown

    def success(self) -> None:
        self._failures = 0
        self._trial = False
        self.state = "closed"

    def failure(self, threshold: int) -> None:
        self._failures += 1
        self._trial = False
        if threshold > 0 and (self.state == "half_open" or self._failures >= threshold):
            self.state = "open"
            self._opened_at = self._clock()

    def abandon(self) -> None:
        """A trial ended without a verdict (the client left): let the next one try."""
        self._trial = False
