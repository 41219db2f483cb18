"""Anthropic's Messages API: ``/v1/messages`` spoken natively, OpenAI chat through
``translate.chat_anthropic``.

``POST {base}/v1/messages`` with ``x-api-key`` and ``anthropic-version`` (the client's,
else the config's); a client's ``anthropic-beta`` is passed on. A ``/v1/messages``
call (and ``/v1/messages/count_tokens``) is forwarded unchanged but for the model
name and its answer relayed byte for byte; its stream is still read
(``MessagesRelay``) to count tokens. Its 529
(overloaded) is judged as a 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from llmgw.config import AnthropicProvider, ProviderConfig
from llmgw.core import Call, StreamTranslator, Unsupported, UpstreamRequest, Usage, WireFormat
from llmgw.providers.base import ProviderType
from llmgw.translate import openai_chat as oa
from llmgw.translate.anthropic_messages import MessagesRelay, read_usage
from llmgw.translate.chain import Translator
from llmgw.translate.chat_anthropic import CHAT_TO_ANTHROPIC

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
_PATHS = MappingProxyType({"messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens"})


@dataclass(frozen=True)
class Anthropic(ProviderType):
    default_base_url: str = DEFAULT_BASE_URL
    native: frozenset[WireFormat] = frozenset({"messages", "count_tokens"})
    translators: Mapping[WireFormat, Translator] = field(
        default_factory=lambda: MappingProxyType({"chat": CHAT_TO_ANTHROPIC})
    )
    ends_with_done: bool = False

    def request(self, call: Call, model: str, provider: ProviderConfig) -> UpstreamRequest:
        path = _PATHS.get(call.endpoint)
        if path is None:
            raise Unsupported(f"{self.name} providers do not serve {call.endpoint}")
        base = (provider.base_url or self.default_base_url).removesuffix("/v1")
        return UpstreamRequest("POST", base + path, _headers(call, provider), call.body_for(model))

    def relay(self, call: Call) -> StreamTranslator | None:
        return MessagesRelay()

    def failure_status(self, status: int) -> int:
        return 503 if status == 529 else status  # 529 overloaded: a 503 by another name

    def usage_of(self, parsed: Mapping[str, Any]) -> Usage:
        return read_usage(oa.obj(parsed.get("usage")), Usage())


def _headers(call: Call, provider: ProviderConfig) -> dict[str, str]:
    version = provider.anthropic_version if isinstance(provider, AnthropicProvider) else None
    sent = {name.lower(): value for name, value in call.headers.items()}
    headers = {
        "content-type": "application/json",
        "anthropic-version": sent.get("anthropic-version") or version or DEFAULT_VERSION,
        **provider.headers,
    }
    if "anthropic-beta" in sent:
        headers["anthropic-beta"] = sent["anthropic-beta"]
    if provider.api_key:
        headers["x-api-key"] = provider.api_key
    return headers


ANTHROPIC = Anthropic("anthropic")
