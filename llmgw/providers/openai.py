"""OpenAI, and every OpenAI-compatible server (vLLM, Ollama, LiteLLM, ...) at its own
``base_url``: the gateway's own wire format, relayed unchanged."""

from llmgw.providers.base import ProviderType

OPENAI = ProviderType("openai")
