"""Provider presets: OpenAI-compatible services known by name (SPEC §9).

A preset ``type`` is the OpenAI adapter with the service's documented base URL as
its default, so a provider entry needs only ``type`` and ``api_key`` (the local
servers, Ollama and vLLM, not even a key). ``base_url`` still overrides it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple


class Preset(NamedTuple):
    base_url: str
    requires_key: bool = True


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "groq": Preset("https://api.groq.com/openai/v1"),
        "openrouter": Preset("https://openrouter.ai/api/v1"),
        "together": Preset("https://api.together.xyz/v1"),
        "huggingface": Preset("https://router.huggingface.co/v1"),
        "mistral": Preset("https://api.mistral.ai/v1"),
        "deepseek": Preset("https://api.deepseek.com"),
        "ollama": Preset("http://127.0.0.1:11434/v1", requires_key=False),
        "vllm": Preset("http://127.0.0.1:8000/v1", requires_key=False),
    }
)
