"""The typed, immutable shape of gateway.yaml (SPEC §2).

Every model is frozen and forbids unknown keys; sequences are tuples and mappings
are read-only views (``fields.py``), so a snapshot can be shared by every request in
flight and swapped whole on reload. The document's root is here, with routing, cache,
limits, auth, telemetry and prices; bigger sections have a module each: ``server.py``,
``providers.py``, ``routing.py`` (smart routing), ``store.py`` (database, budgets,
JWT). Cross-field rules that need the whole document (alias targets naming real
providers, unique key names) live in ``checks.py`` so that their errors can be
located like any other.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from llmgw.config.fields import (
    Duration,
    Frozen,
    FrozenMap,
    Names,
    Optional,
    Size,
    check_url,
    empty_map,
)
from llmgw.config.providers import ProviderConfig
from llmgw.config.routing import (
    VIRTUAL_MODELS,
    AliasPool,
    HedgeConfig,
    MinQuality,
    ModelProfile,
    ScoringStrategy,
)
from llmgw.config.semantic import SemanticConfig
from llmgw.config.server import LoggingConfig, ServerConfig
from llmgw.config.store import BudgetsConfig, BudgetSpec, DatabaseConfig, JwtConfig

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
FALLBACK_WORDS = frozenset({"connect_error", "timeout"})
DEFAULT_FALLBACK_ON: tuple[str | int, ...] = (
    "connect_error",
    "timeout",
    408,
    429,
    500,
    502,
    503,
    504,
)


def _fallback_item(value: object) -> object:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


class CircuitBreakerConfig(Frozen):
    failures: int = Field(5, ge=0)
    cooldown: Duration = 30.0


class RoutingConfig(Frozen):
    fallback_on: tuple[Annotated[str | int, BeforeValidator(_fallback_item)], ...] = (
        DEFAULT_FALLBACK_ON
    )
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    # Smart routing (SPEC §10, config/routing.py)
    candidates: Names | None = None  # None: every chat model of the enabled providers
    virtual_models: FrozenMap[str, ScoringStrategy] = Field(default_factory=lambda: VIRTUAL_MODELS)
    hedge: HedgeConfig | None = None
    min_quality: MinQuality = Field(default_factory=MinQuality)
    response_metadata: bool = False

    @field_validator("fallback_on")
    @classmethod
    def _known(cls, items: tuple[str | int, ...]) -> tuple[str | int, ...]:
        for item in items:
            if isinstance(item, int) and not 400 <= item <= 599:
                raise ValueError(f"status {item} is not an HTTP error status (400-599)")
            if isinstance(item, str) and item not in FALLBACK_WORDS:
                raise ValueError(
                    f"unknown condition {item!r} (use connect_error, timeout or a status code)"
                )
        return items


class CacheConfig(Frozen):
    enabled: bool = False
    backend: Literal["memory", "redis"] = "memory"
    redis_url: Optional = None
    ttl: Duration = 3600.0
    max_size: Size = 256 * 1024**2
    scope: Literal["global", "key"] = "global"
    semantic: SemanticConfig = Field(default_factory=SemanticConfig)


class LimitSpec(Frozen):
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    concurrency: int | None = Field(None, ge=1)


LimitedEndpoint = Literal[
    "chat",
    "completions",
    "embeddings",
    "messages",
    "audio",
    "images",
    "responses",
    "simple",
    "moderations",
]


class LimitsConfig(Frozen):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: Optional = None
    # What the redis backend does while Redis cannot be reached: ``local`` enforces
    # every limit in this replica's memory (each replica then allows the whole limit)
    # and every budget in the database, ``allow`` admits without limits or budgets,
    # ``deny`` answers 429 to every limited or budgeted request.
    on_redis_error: Literal["local", "allow", "deny"] = "local"
    global_: LimitSpec | None = Field(None, alias="global")
    models: FrozenMap[str, LimitSpec] = Field(default_factory=empty_map)
    per_ip: LimitSpec | None = None  # each client address (server.trusted_proxies)
    endpoints: FrozenMap[LimitedEndpoint, LimitSpec] = Field(default_factory=empty_map)


class ClientKey(Frozen):
    name: str = Field(min_length=1)
    key: str | None = None
    key_sha256: str | None = None
    models: Names | None = None
    limits: LimitSpec | None = None
    budget: BudgetSpec | None = None
    # May this key's ``Cache-Control: no-cache`` (or ``max-age=0``) replace an entry
    # other keys share (``cache.scope: global``)? Without it, such a request still
    # skips reading the cache but stores nothing.
    cache_refresh: bool = False

    @field_validator("key_sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.fullmatch(value):
            raise ValueError("must be the 64-character hex SHA-256 digest of the key")
        return value.lower() if value else value

    @model_validator(mode="after")
    def _one_secret(self) -> ClientKey:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of key or key_sha256")
        if self.key is not None and not self.key:
            raise ValueError("key is empty (is its environment variable set?)")
        return self


class AuthConfig(Frozen):
    admin_key: Optional = None
    keys: tuple[ClientKey, ...] = ()
    jwt: JwtConfig | None = None


class TelemetryConfig(Frozen):
    """OpenTelemetry tracing (SPEC §15): off while ``otlp_endpoint`` is unset."""

    otlp_endpoint: Optional = None  # an OTLP/HTTP collector, e.g. http://otel-collector:4318
    service_name: str = Field("llmgw", min_length=1)
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # Finished spans waiting for the exporter; past it they are dropped (and counted).
    max_queue_size: int = Field(2048, ge=1, le=1_000_000)
    export_timeout: Duration = 5.0

    _url = field_validator("otlp_endpoint")(check_url)

    @field_validator("otlp_endpoint")
    @classmethod
    def _sdk_installed(cls, value: str | None) -> str | None:
        if value is not None and importlib.util.find_spec("opentelemetry.sdk") is None:
            raise ValueError("tracing needs the OpenTelemetry SDK: pip install 'llmgw[tracing]'")
        return value


class Price(Frozen):
    """USD per unit. Tokens (chat, completions, embeddings, responses, and any answer
    that reports token usage): ``input`` and ``output`` per 1M, given together. The
    endpoints that are not priced by the token: ``per_minute`` of audio transcribed or
    translated (the duration the provider reports), ``per_1m_characters`` of speech
    input, ``per_image`` generated. Each is optional; a price names at least one."""

    input: float | None = Field(None, ge=0)
    output: float | None = Field(None, ge=0)
    per_minute: float | None = Field(None, ge=0)
    per_1m_characters: float | None = Field(None, ge=0)
    per_image: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _units(self) -> Price:
        if (self.input is None) != (self.output is None):
            raise ValueError("give input and output together (USD per 1M tokens)")
        if self.input is None and not any(
            unit is not None for unit in (self.per_minute, self.per_1m_characters, self.per_image)
        ):
            raise ValueError(
                "give a price: input and output, per_minute, per_1m_characters or per_image"
            )
        return self

    @property
    def tokens(self) -> tuple[float, float] | None:
        """(input, output) USD per 1M tokens, when this price has them."""
        if self.input is None or self.output is None:
            return None
        return self.input, self.output


class SimpleApiConfig(Frozen):
    """/api/chat, /api/chat/stream and /gateway/query (SPEC §9)."""

    enabled: bool = True
    model: Optional = None  # unset: the first configured model name


class GatewayConfig(Frozen):
    server: ServerConfig = Field(default_factory=ServerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    providers: FrozenMap[str, ProviderConfig] = Field(min_length=1)
    models: FrozenMap[str, Names | AliasPool] = Field(default_factory=empty_map)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    prices: FrozenMap[str, Price] = Field(default_factory=empty_map)
    profiles: FrozenMap[str, ModelProfile] = Field(default_factory=empty_map)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    # None: the default SQLite file beside the config file (none without a file)
    database: DatabaseConfig | None = None
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    simple_api: SimpleApiConfig = Field(default_factory=SimpleApiConfig)
