"""The contract every provider adapter shares: pure translation, no I/O.

An ``Adapter`` turns the client's ``Call`` into an ``UpstreamRequest`` for one
provider and turns what came back into what the client expects. The OpenAI wire
format is the gateway's own, so this base class is the pass-through: other formats
override what differs. Nothing here imports aiohttp or touches the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmgw.config import ProviderConfig
from llmgw.core import (
    Call,
    Endpoint,
    StreamTranslator,
    Unsupported,
    UpstreamRequest,
    Usage,
    estimate_prompt_tokens,
)
from llmgw.sse import Event

OPENAI_PATHS: Mapping[Endpoint, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


@dataclass(frozen=True)
class Adapter:
    """OpenAI's wire format, relayed unchanged (the base every adapter refines)."""

    type: str
    default_base_url: str = "https://api.openai.com/v1"
    endpoints: frozenset[Endpoint] = field(
        default_factory=lambda: frozenset({"chat", "completions", "embeddings"})
    )
    requires_key: bool = True
    ends_with_done: bool = True  # its streams end with ``data: [DONE]``

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

    # A /v1/messages client (Anthropic's format) is served through OpenAI's chat
    # format: ``anthropic_reverse`` rewrites the request and every kind of answer.
    # Each branch calls this adapter's own chat translation first, so an adapter
    # that translates chat itself (Gemini) serves /v1/messages by composition.
    # (Imported where used: that module builds on this one.)

    def request(self, call: Call, model: str, provider: ProviderConfig) -> UpstreamRequest:
        if call.endpoint == "messages":
            from llmgw.translate.anthropic_chat import chat_call

            return self.request(chat_call(call), model, provider)
        path = OPENAI_PATHS.get(call.endpoint)
        if path is None or call.endpoint not in self.endpoints:
            raise Unsupported(f"{self.type} providers do not serve {call.endpoint}")
        headers = {"Content-Type": "application/json", **provider.headers}
        if provider.api_key:
            headers["Authorization"] = f"Bearer {provider.api_key}"
        base = provider.base_url or self.default_base_url
        return UpstreamRequest("POST", base + path, headers, call.body_for(model))

    def passes_through(self, call: Call) -> bool:
        """True when the upstream's bytes go to the client unchanged."""
        return call.endpoint != "messages"

    def failure_status(self, status: int) -> int:
        """The provider's error status as the gateway judges it (e.g. 529 → 503)."""
        return status

    def response(
        self, call: Call, model: str, body: bytes, parsed: dict[str, Any] | None = None
    ) -> bytes:
        """A successful non-streamed body, in the client's format; ``parsed`` is the body
        already parsed (by the caller, once), when it was."""
        if call.endpoint == "messages":
            from llmgw.translate.anthropic_chat import chat_call, message

            return message(self.response(chat_call(call), model, body, parsed), model)
        return body

    def error_body(self, call: Call, status: int, body: bytes) -> bytes:
        """A provider's 4xx body about the request, in the client's error dialect."""
        if call.endpoint == "messages":
            from llmgw.translate.anthropic_chat import chat_call, error

            return error(status, self.error_body(chat_call(call), status, body))
        return body

    def stream(self, call: Call, model: str) -> StreamTranslator | None:
        """A translator for this streamed call, or None to relay bytes unchanged."""
        if call.endpoint == "messages":
            from llmgw.translate.anthropic_chat import MessagesStream, chat_call

            inner = self.stream(chat_call(call), model)
            return MessagesStream(model, inner, prompt_estimate=estimate_prompt_tokens(call))
        return None

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

    def usage(self, body: bytes) -> Usage:
        """Token usage from a whole JSON response or from one stream event's data."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Usage()
        return self.usage_of(parsed if isinstance(parsed, dict) else {})

    def usage_of(self, parsed: Mapping[str, Any]) -> Usage:
        """Token usage from a parsed JSON response."""
        usage = parsed.get("usage")
        if not isinstance(usage, dict):
            return Usage()
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return Usage(
            prompt if isinstance(prompt, int) else None,
            completion if isinstance(completion, int) else None,
        )
