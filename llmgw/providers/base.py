"""What every provider type declares: its transport facts, and nothing else.

A ``ProviderType`` says where a provider lives (``default_base_url``), which wire
formats it speaks (``native``), which translator it uses for a client format it does
not speak (``translators``), how a call in its own format is addressed and
authenticated (``request``: URL, path, headers), how its failures and usage read. The
base is OpenAI's wire format; each provider module refines what differs. How a client
call is composed from these (pass-through, translator, bridge) is ``llmgw.adapter``'s.
Nothing here imports aiohttp or touches the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from llmgw.config import ProviderConfig
from llmgw.core import Call, StreamTranslator, Unsupported, UpstreamRequest, Usage, WireFormat
from llmgw.multipart import MultipartBody
from llmgw.sse import Event
from llmgw.translate.chain import Translator

OPENAI_PATHS: Mapping[WireFormat, str] = MappingProxyType(
    {
        "chat": "/chat/completions",
        "completions": "/completions",
        "embeddings": "/embeddings",
        # only where ``native`` has them:
        "responses": "/responses",
        "moderations": "/moderations",
        "images": "/images/generations",
        "audio_speech": "/audio/speech",
        "audio_transcriptions": "/audio/transcriptions",
        "audio_translations": "/audio/translations",
    }
)


@dataclass(frozen=True, slots=True)
class LocalReply:
    """An answer made in-process (no network), with the pacing the transport applies."""

    status: int
    content_type: str
    chunks: tuple[bytes, ...]
    latency: float = 0.0  # before the head
    chunk_delay: float = 0.0  # between chunks


# A provider answered in-process: its answer to an upstream request, given its config.
LocalAnswer = Callable[[UpstreamRequest, ProviderConfig], LocalReply]


def _openai_formats() -> frozenset[WireFormat]:
    return frozenset({"chat", "completions", "embeddings"})


@dataclass(frozen=True)
class ProviderType:
    """OpenAI's wire format at OpenAI's URL (the base every provider type refines)."""

    name: str
    default_base_url: str = "https://api.openai.com/v1"
    native: frozenset[WireFormat] = field(default_factory=_openai_formats)
    translators: Mapping[WireFormat, Translator] = field(
        default_factory=lambda: MappingProxyType({})
    )
    requires_key: bool = True
    ends_with_done: bool = True  # its streams end with ``data: [DONE]``
    local: LocalAnswer | None = None  # answered in-process, not over the network
    # False: chat image parts must reach it inline (the gateway fetches http(s) URLs)
    fetches_image_urls: bool = True

    def needs_key(self, provider: ProviderConfig) -> bool:
        """Whether an empty key disables this provider.

        A key written in the config but resolving to nothing always disables it. An
        OpenAI-compatible server at its own ``base_url`` with no key at all (Ollama,
        vLLM) is fine.
        """
        if "api_key" in provider.model_fields_set:
            return True
        return self.requires_key and (provider.base_url or self.default_base_url) == (
            self.default_base_url
        )

    def request(self, call: Call, model: str, provider: ProviderConfig) -> UpstreamRequest:
        """The HTTP request for ``call``, already in one of this provider's ``native``
        formats: URL, headers and auth, the body naming ``model``."""
        path = OPENAI_PATHS.get(call.endpoint)
        if path is None:
            raise Unsupported(f"{self.name} providers do not serve {call.endpoint}")
        headers = {"Content-Type": "application/json", **provider.headers}
        if provider.api_key:
            headers["Authorization"] = f"Bearer {provider.api_key}"
        base = provider.base_url or self.default_base_url
        if call.upload is not None:  # the form's fields, the file streamed from its spool
            fields = {name: str(value) for name, value in call.body.items()}
            form = MultipartBody({**fields, "model": model}, call.upload)
            headers["Content-Type"] = form.content_type
            return UpstreamRequest("POST", base + path, headers, form)
        return UpstreamRequest("POST", base + path, headers, call.body_for(model))

    def relay(self, call: Call) -> StreamTranslator | None:
        """A reader for a native stream relayed unchanged, when the gateway's own
        pass-through (which reads OpenAI's events) cannot read it."""
        return None

    def failure_status(self, status: int) -> int:
        """The provider's error status as the gateway judges it (e.g. 529 → 503)."""
        return status

    def stream_error(self, event: Event) -> str | None:
        """The error carried by a stream event, if it is one (SPEC §2 first-event check)."""
        if event.event == "error":
            return "the provider sent an error event"
        if event.data.startswith(b'{"error"') or b'"error"' in event.data[:64]:
            try:
                parsed = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                return None
            if isinstance(parsed, dict) and parsed.get("error"):
                return "the provider sent an error event"
        return None

    def usage_of(self, parsed: Mapping[str, Any]) -> Usage:
        """Token usage from a parsed JSON answer (or stream event) in its format."""
        usage = parsed.get("usage")
        if not isinstance(usage, dict):
            return Usage()
        # chat and completions count prompt/completion tokens, the Responses API input/output
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        return Usage(
            prompt if isinstance(prompt, int) else None,
            completion if isinstance(completion, int) else None,
        )
