"""Provider adapters, one module per wire format, and the registry of types.

Adding a provider type is one module and one line in ``ADAPTERS``.
"""

from collections.abc import Mapping
from types import MappingProxyType

from .base import Adapter, Call, Endpoint, Unsupported, UpstreamRequest, Usage
from .mock import MOCK_URL, MockAdapter

ADAPTERS: Mapping[str, Adapter] = MappingProxyType(
    {
        "openai": Adapter("openai"),
        "mock": MockAdapter("mock", default_base_url=MOCK_URL),
    }
)

__all__ = ["ADAPTERS", "Adapter", "Call", "Endpoint", "Unsupported", "UpstreamRequest", "Usage"]
