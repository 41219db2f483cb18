"""Configuration: gateway.yaml parsed into one immutable, validated snapshot.

This package depends on nothing else in llmgw.
"""

from llmgw.config.loader import ConfigError, digest, load, parse, read_text
from llmgw.config.schema import (
    AnthropicProvider,
    AzureProvider,
    GatewayConfig,
    GeminiProvider,
    LimitSpec,
    MockProvider,
    OpenAIProvider,
    ProviderConfig,
)

__all__ = [
    "AnthropicProvider",
    "AzureProvider",
    "ConfigError",
    "GatewayConfig",
    "GeminiProvider",
    "LimitSpec",
    "MockProvider",
    "OpenAIProvider",
    "ProviderConfig",
    "digest",
    "load",
    "parse",
    "read_text",
]
