"""``cache.semantic`` (SPEC §13): answering a paraphrase from an earlier answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from llmgw.config.units import parse_duration


class SemanticConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    enabled: bool = False
    embedding_model: str = Field("embed", min_length=1)  # a model this gateway serves
    threshold: float = Field(0.95, gt=0.0, le=1.0)  # cosine similarity
    max_entries: int = Field(100_000, ge=1, le=10_000_000)
    # A slower (or failing) embedding skips the lookup; the request goes on without it.
    lookup_timeout: Annotated[float, BeforeValidator(parse_duration)] = Field(0.25, gt=0.0)
