"""The typed, immutable shape of gateway.yaml (SPEC §2).

Every model is frozen and forbids unknown keys; sequences are tuples and mappings
are read-only views, so a snapshot can be shared by every request in flight and
swapped whole on reload. Cross-field rules that need the whole document (alias
targets naming real providers, unique key names) live in ``checks.py`` so that
their errors can be located like any other.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from llmgw.config.routing import (
    VIRTUAL_MODELS,
    AliasPool,
    HedgeConfig,
    MinQuality,
    ModelProfile,
    ScoringStrategy,
)
from llmgw.config.store import BudgetsConfig, BudgetSpec, DatabaseConfig, JwtConfig
from llmgw.config.units import parse_duration, parse_size

K = TypeVar("K")
V = TypeVar("V")


def _freeze(mapping: Mapping[K, V]) -> Mapping[K, V]:
    return MappingProxyType(dict(mapping))


def _empty_to_none(value: object) -> object:
    """``${VAR:-}`` resolves to an empty string: for optional settings that means unset."""
    return None if value == "" else value


def _empty_map() -> Mapping[Any, Any]:
    return MappingProxyType({})


def _as_tuple(value: object) -> object:
    """A single string where a list is expected is taken as a one-item list."""
    return (value,) if isinstance(value, str) else value


FrozenMap = Annotated[
    Mapping[K, V], AfterValidator(_freeze), PlainSerializer(dict, return_type=dict)
]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Names = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]
Optional = Annotated[str | None, BeforeValidator(_empty_to_none)]

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


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"https?://[^/\s]+", value):
        raise ValueError(f"invalid URL {value!r}: must start with http:// or https://")
    return value.rstrip("/")


# The provider client writes these itself (framing, keep-alive, the coding it accepts):
# a configured copy would make two of them on the wire.
CLIENT_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}
)


def _check_proxy(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"http://([^@/\s]+@)?[^@/\s:]+(:\d{1,5})?/?", value):
        raise ValueError("must be an http:// proxy URL: http://[user:pass@]host[:port]")
    return value


def _check_file(value: str | None) -> str | None:
    if value is not None and not os.path.isfile(value):
        raise ValueError(f"no such file: {value}")
    return value


class ServerConfig(Frozen):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    max_body_size: Size = 20 * 1024**2
    # Bytes held by request bodies still arriving, all together (0 = unbounded; never
    # less than max_body_size, so that one body of the largest size can always arrive).
    max_pending_body_bytes: Size = 128 * 1024**2
    # Open client connections (0 = unbounded); a change needs a restart.
    max_connections: int = Field(10_000, ge=0)
    shutdown_timeout: Duration = 30.0
    # the longest a write to a client may make no progress before its response is ended
    write_timeout: Duration = 60.0
    cors_origins: Names = ()
    # A second listener, on the same host, that serves /metrics only (and the main
    # port then answers 404 there). Unset: /metrics is on the main port, admin only.
    metrics_port: Annotated[int | None, BeforeValidator(_empty_to_none)] = Field(
        None, ge=1, le=65535
    )
    # Peers (CIDRs) whose X-Forwarded-For names the client's address (limits.per_ip).
    trusted_proxies: Names = ()

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or CIDR range") from None
        return values

    @model_validator(mode="after")
    def _two_ports(self) -> ServerConfig:
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise ValueError("metrics_port must differ from port")
        return self

    @field_validator("write_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value


class LoggingConfig(Frozen):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    log_prompts: bool = False


class _ProviderBase(Frozen):
    api_key: Optional = None
    base_url: Optional = None
    models: Names | None = None
    timeout: Duration = 30.0  # a stream: connect + response headers (time to first byte)
    read_timeout: Duration = 120.0  # longest silence between bytes of a response
    connect_timeout: Duration = 10.0  # name, TCP, a proxy's tunnel, TLS
    response_timeout: Duration = 600.0  # a non-streamed answer, whole (reasoning takes minutes)
    max_retries: int = Field(1, ge=0, le=10)
    max_concurrency: int = Field(0, ge=0)
    headers: FrozenMap[str, str] = Field(default_factory=_empty_map)
    proxy: Optional = None
    ca_file: Optional = None
    client_cert: Optional = None
    client_key: Optional = None
    # The model a simple-API request naming this provider (``provider``) is served by.
    default_model: Optional = None

    _url = field_validator("base_url")(_check_url)
    _proxy = field_validator("proxy")(_check_proxy)
    _files = field_validator("ca_file", "client_cert", "client_key")(_check_file)

    @field_validator("headers")
    @classmethod
    def _not_the_clients(cls, headers: Mapping[str, str]) -> Mapping[str, str]:
        owned = sorted(name for name in headers if name.lower() in CLIENT_HEADERS)
        if owned:
            raise ValueError(f"{', '.join(owned)}: set by llmgw itself, remove from headers")
        return headers

    @model_validator(mode="after")
    def _tls_files(self) -> _ProviderBase:
        """The CA file and the client certificate must load, not only exist."""
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        tls = ssl.create_default_context()
        if self.ca_file is not None:
            try:
                tls.load_verify_locations(cafile=self.ca_file)
            except (ssl.SSLError, ValueError, OSError) as exc:
                raise ValueError(f"ca_file: not a PEM CA bundle ({exc})") from None
        if self.client_cert is not None:
            try:
                tls.load_cert_chain(self.client_cert, self.client_key)
            except (ssl.SSLError, ValueError, OSError) as exc:
                raise ValueError(
                    f"client_cert/client_key: not a PEM certificate and its key ({exc})"
                ) from None
        return self

    @field_validator("timeout", "read_timeout", "connect_timeout", "response_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value


class OpenAIProvider(_ProviderBase):
    type: Literal["openai"]


class AzureProvider(_ProviderBase):
    type: Literal["azure"]
    api_version: str = "2024-10-21"

    @model_validator(mode="after")
    def _needs_endpoint(self) -> AzureProvider:
        if self.base_url is None:
            raise ValueError("base_url is required for azure (https://<resource>.openai.azure.com)")
        return self


class AnthropicProvider(_ProviderBase):
    type: Literal["anthropic"]
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = Field(4096, ge=1)


class GeminiProvider(_ProviderBase):
    type: Literal["gemini"]


class MockProvider(_ProviderBase):
    """Built in, no network: echoes the last user message."""

    type: Literal["mock"]
    latency: Duration = 0.0
    chunk_delay: Duration = 0.0
    embedding_dimensions: int = Field(16, ge=1, le=8192)


# OpenAI-compatible services whose default base_url is in providers/presets.py.
PresetType = Literal[
    "groq", "openrouter", "together", "huggingface", "mistral", "deepseek", "ollama", "vllm"
]
PRESET_TYPES: tuple[str, ...] = get_args(PresetType)


class PresetProvider(_ProviderBase):
    type: PresetType


ProviderConfig = Annotated[
    OpenAIProvider
    | AzureProvider
    | AnthropicProvider
    | GeminiProvider
    | MockProvider
    | PresetProvider,
    Field(discriminator="type"),
]
PROVIDER_MODELS: Mapping[str, type[_ProviderBase]] = MappingProxyType(
    {
        "openai": OpenAIProvider,
        "azure": AzureProvider,
        "anthropic": AnthropicProvider,
        "gemini": GeminiProvider,
        "mock": MockProvider,
        **dict.fromkeys(PRESET_TYPES, PresetProvider),
    }
)
PROVIDER_TYPES = tuple(PROVIDER_MODELS)


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
    models: FrozenMap[str, LimitSpec] = Field(default_factory=_empty_map)
    per_ip: LimitSpec | None = None  # each client address (server.trusted_proxies)
    endpoints: FrozenMap[LimitedEndpoint, LimitSpec] = Field(default_factory=_empty_map)


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

    _url = field_validator("otlp_endpoint")(_check_url)

    @field_validator("otlp_endpoint")
    @classmethod
    def _sdk_installed(cls, value: str | None) -> str | None:
        if value is not None and importlib.util.find_spec("opentelemetry.sdk") is None:
            raise ValueError("tracing needs the OpenTelemetry SDK: pip install 'llmgw[tracing]'")
        return value


class Price(Frozen):
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class SimpleApiConfig(Frozen):
    """/api/chat, /api/chat/stream and /gateway/query (SPEC §9)."""

    enabled: bool = True
    model: Optional = None  # unset: the first configured model name


class GatewayConfig(Frozen):
    server: ServerConfig = Field(default_factory=ServerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    providers: FrozenMap[str, ProviderConfig] = Field(min_length=1)
    models: FrozenMap[str, Names | AliasPool] = Field(default_factory=_empty_map)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    prices: FrozenMap[str, Price] = Field(default_factory=_empty_map)
    profiles: FrozenMap[str, ModelProfile] = Field(default_factory=_empty_map)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    # None: the default SQLite file beside the config file (none without a file)
    database: DatabaseConfig | None = None
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    simple_api: SimpleApiConfig = Field(default_factory=SimpleApiConfig)
