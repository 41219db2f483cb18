"""Google's Gemini API: no client format spoken natively; OpenAI chat and embeddings
through ``translate.chat_gemini``.

Chat → ``models/{model}:generateContent`` (streamed:
``:streamGenerateContent?alt=sse``); embeddings → ``models/{model}:batchEmbedContents``.
The key goes in ``x-goog-api-key``. Legacy completions are not served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from llmgw.config import ProviderConfig
from llmgw.core import Call, Unsupported, UpstreamRequest, Usage, WireFormat
from llmgw.providers.base import ProviderType
from llmgw.translate import openai_chat as oa
from llmgw.translate.chain import Translator
from llmgw.translate.chat_gemini import CHAT_TO_GEMINI, EMBEDDINGS_TO_GEMINI
from llmgw.translate.chat_gemini.answer import read_usage

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"


@dataclass(frozen=True)
class Gemini(ProviderType):
    default_base_url: str = DEFAULT_BASE_URL
    native: frozenset[WireFormat] = frozenset({"gemini_generate", "gemini_embed"})
    translators: Mapping[WireFormat, Translator] = field(
        default_factory=lambda: MappingProxyType(
            {"chat": CHAT_TO_GEMINI, "embeddings": EMBEDDINGS_TO_GEMINI}
        )
    )
    ends_with_done: bool = False
    fetches_image_urls: bool = False  # inlineData, or fileData for files Gemini hosts

    def request(self, call: Call, model: str, provider: ProviderConfig) -> UpstreamRequest:
        if call.endpoint == "gemini_embed":
            action = "batchEmbedContents"
        elif call.endpoint == "gemini_generate":
            action = "streamGenerateContent?alt=sse" if call.stream else "generateContent"
        else:
            raise Unsupported(f"{self.name} providers do not serve {call.endpoint}")
        headers = {"Content-Type": "application/json", **provider.headers}
        if provider.api_key:
            headers["x-goog-api-key"] = provider.api_key
        # Quoted: a client's model name must not reach another path or add a query.
        name = quote(model.removeprefix("models/"), safe="")
        url = f"{provider.base_url or self.default_base_url}/models/{name}:{action}"
        return UpstreamRequest("POST", url, headers, call.body_for(model))

    def usage_of(self, parsed: Mapping[str, Any]) -> Usage:
        return read_usage(oa.obj(parsed.get("usageMetadata")))


GEMINI = Gemini("gemini")
