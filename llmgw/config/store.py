"""The config of SPEC §11: ``database``, ``budgets`` and ``auth.jwt``.

Kept beside ``schema.py`` (which imports these models) so that neither grows past
what one reader holds in mind.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


def _empty_to_none(value: object) -> object:
    return None if value == "" else value


Optional = Annotated[str | None, BeforeValidator(_empty_to_none)]
_DATABASE_URL = re.compile(r"(sqlite:///.+|postgres(ql)?(\+asyncpg)?://\S+)")
DEFAULT_DATABASE_URL = "sqlite:///llmgw.db"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, populate_by_name=True)


class DatabaseConfig(_Frozen):
    """Where usage, managed keys and budgets are kept. A relative SQLite path is taken
    from the config file's folder; ``url: ""`` runs without a database (usage in
    memory only, no managed keys, no budgets)."""

    url: Optional = DEFAULT_DATABASE_URL
    # Requests held while the database cannot be written; past it they are dropped
    # (llmgw_ledger_dropped_total).
    buffer: int = Field(100_000, ge=1)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not _DATABASE_URL.fullmatch(value):
            raise ValueError(
                f"unsupported database URL {value!r}: use sqlite:///<file> or postgresql://..."
            )
        return value


class BudgetSpec(_Frozen):
    """A monthly budget (calendar month, UTC); unset parts do not limit."""

    monthly_usd: float | None = Field(None, ge=0)
    monthly_tokens: int | None = Field(None, ge=0)


def _fractions(value: tuple[float, ...]) -> tuple[float, ...]:
    for fraction in value:
        if not 0 < fraction <= 1:
            raise ValueError(f"alert fraction {fraction} must be in (0, 1]")
    return tuple(sorted(set(value)))


class BudgetsConfig(_Frozen):
    alerts: tuple[float, ...] = (0.8, 0.95)
    webhook: Optional = None
    global_: BudgetSpec | None = Field(None, alias="global")
    # The budget of each distinct ``x-budget-key`` a client sends (none: the header
    # is not budgeted).
    per_budget_key: BudgetSpec | None = None

    _alerts = field_validator("alerts")(_fractions)

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value):
            raise ValueError(f"invalid URL {value!r}: must start with http:// or https://")
        return value


class JwtClaims(_Frozen):
    name: str = "sub"
    models: str | None = None  # the claim holding the model allowlist; unset = every model


class JwtConfig(_Frozen):
    """Bearer JWTs as client credentials: HS256 with ``secret``, or RS256/ES256 with
    the signing keys at ``jwks_url``."""

    issuer: Optional = None
    audience: Optional = None
    jwks_url: Optional = None
    secret: Optional = None
    claims: JwtClaims = Field(default_factory=JwtClaims)
    leeway: float = Field(30.0, ge=0)  # seconds of clock skew allowed on exp/nbf

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtConfig:
        if (self.jwks_url is None) == (self.secret is None):
            raise ValueError("give exactly one of jwks_url (RS256/ES256) or secret (HS256)")
        if self.jwks_url is not None and not re.match(r"https?://[^/\s]+", self.jwks_url):
            raise ValueError(f"invalid jwks_url {self.jwks_url!r}")
        return self
