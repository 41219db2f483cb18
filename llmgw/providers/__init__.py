"""Provider types, one module each with its transport facts, and their one registry.

Adding a provider type is one module, one line in ``PROVIDER_TYPES`` (and its config
model in ``config.providers``: a test holds the two lists equal), and its fixture tests.
"""

from collections.abc import Mapping
from types import MappingProxyType

from llmgw.providers.anthropic import ANTHROPIC
from llmgw.providers.azure import AZURE
from llmgw.providers.base import ProviderType
from llmgw.providers.gemini import GEMINI
from llmgw.providers.mock import MOCK
from llmgw.providers.openai import OPENAI
from llmgw.providers.presets import PRESETS

PROVIDER_TYPES: Mapping[str, ProviderType] = MappingProxyType(
    {
        "openai": OPENAI,
        "mock": MOCK,
        "anthropic": ANTHROPIC,
        "gemini": GEMINI,
        "azure": AZURE,
        **{
            name: ProviderType(name, preset.base_url, requires_key=preset.requires_key)
            for name, preset in PRESETS.items()
        },
    }
)

__all__ = ["PROVIDER_TYPES", "ProviderType"]
