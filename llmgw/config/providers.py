"""The ``providers`` section of gateway.yaml: one model per provider type (and the
presets of OpenAI-compatible services), their timeouts, headers, proxy and TLS files.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator

from llmgw.config.fields import Duration, Frozen, FrozenMap, Names, Optional, check_url, empty_map

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
    headers: FrozenMap[str, str] = Field(default_factory=empty_map)
    proxy: Optional = None
    ca_file: Optional = None
    client_cert: Optional = None
    client_key: Optional = None
    # The model a simple-API request naming this provider (``provider``) is served by.
    default_model: Optional = None

    _url = field_validator("base_url")(check_url)
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
