"""The smart-routing part of gateway.yaml (SPEC §10): virtual models, alias pools,
model profiles, hedging. Imported by ``schema``; depends only on ``units``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from llmgw.config.units import parse_duration

# Scoring strategies weigh cost, quality and latency (routing/scoring.py).
SCORING = ("balanced", "cost", "quality", "latency")
# A pool may also pick without scores.
POOL_ONLY = ("ordered", "weighted", "least_latency", "least_busy")
ScoringStrategy = Literal["balanced", "cost", "quality", "latency"]
PoolStrategy = Literal[
    "ordered", "weighted", "least_latency", "least_busy", "balanced", "cost", "quality", "latency"
]
VIRTUAL_MODELS: Mapping[str, ScoringStrategy] = MappingProxyType(
    {"auto": "balanced", "fast": "latency", "cheap": "cost"}
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


_Seconds = Annotated[float, BeforeValidator(parse_duration)]


class PoolTarget(_Frozen):
    target: str
    weight: int = Field(1, ge=1, le=1000)


class AliasPool(_Frozen):
    """``models.<name>: {strategy, targets: [{target, weight}]}``."""

    strategy: PoolStrategy = "ordered"
    targets: tuple[PoolTarget, ...] = Field(min_length=1)


class HedgeConfig(_Frozen):
    after: _Seconds = Field(2.0, gt=0)
    max_extra: int = Field(1, ge=1, le=3)


class MinQuality(_Frozen):
    medium: float = Field(0.6, ge=0, le=1)
    complex: float = Field(0.8, ge=0, le=1)


class ModelProfile(_Frozen):
    """What routing knows of a model; unset fields keep the built-in profile's."""

    quality: float | None = Field(None, ge=0, le=1)
    context_window: int | None = Field(None, ge=1)
    tools: bool | None = None
    vision: bool | None = None
    latency_ms: float | None = Field(None, gt=0)  # the prior until a latency is observed
