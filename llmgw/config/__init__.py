"""Configuration: gateway.yaml parsed into one immutable, validated snapshot.

This package depends on nothing else in llmgw.
"""

from llmgw.config.loader import ConfigError, digest, load, parse, read_text
from llmgw.config.providers import (
    AnthropicProvider,
    AzureProvider,
    GeminiProvider,
    MockProvider,
    OpenAIProvider,
    ProviderConfig,
)
from llmgw.config.schema import GatewayConfig, LimitSpec

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
