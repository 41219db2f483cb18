"""Configuration: gateway.yaml parsed into one immutable, validated snapshot.

``loader`` reads and reports (with YAML lines), ``schema`` is the document's root,
with a module per bigger section (``server``, ``providers``, ``routing``, ``store``)
over the shared ``fields`` and ``units``; ``checks`` holds cross-field rules and
``redact`` the secrets that never leave the process.

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
