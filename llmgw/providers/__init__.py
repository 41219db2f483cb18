"""Provider adapters, one module per wire format, and the registry of types.

Adding a provider type is one module and one line in ``ADAPTERS``.
"""

from collections.abc import Mapping
from types import MappingProxyType

from llmgw.core import Call, Endpoint, Unsupported, UpstreamRequest, Usage
from llmgw.providers.anthropic import AnthropicAdapter
from llmgw.providers.azure import AzureAdapter
from llmgw.providers.base import Adapter
from llmgw.providers.gemini import GeminiAdapter
from llmgw.providers.mock import MOCK_URL, MockAdapter
from llmgw.providers.presets import PRESETS

ADAPTERS: Mapping[str, Adapter] = MappingProxyType(
    {
        "openai": Adapter("openai"),
        "mock": MockAdapter("mock", default_base_url=MOCK_URL),
        "anthropic": AnthropicAdapter("anthropic"),
        "gemini": GeminiAdapter("gemini"),
        "azure": AzureAdapter("azure"),
        **{
            name: Adapter(name, p.base_url, requires_key=p.requires_key)
            for name, p in PRESETS.items()
        },
    }
)

__all__ = ["ADAPTERS", "Adapter", "Call", "Endpoint", "Unsupported", "UpstreamRequest", "Usage"]
