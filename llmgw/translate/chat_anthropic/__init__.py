"""OpenAI chat client → Anthropic Messages provider: the request (``request``, with
``options`` for structured output and reasoning and ``prompt_cache`` for cache marks),
the answer and the stream back (``answer``), and the provider's errors in OpenAI's
dialect. Pure, no I/O."""

from __future__ import annotations

from typing import Any

import orjson

from llmgw.config import AnthropicProvider, ProviderConfig
from llmgw.core import Call, StreamTranslator
from llmgw.errors import openai_error, openai_error_type
from llmgw.translate import openai_chat as oa
from llmgw.translate import params
from llmgw.translate.chat_anthropic import options
from llmgw.translate.chat_anthropic.answer import ChatStream, chat_completion
from llmgw.translate.chat_anthropic.request import messages_request

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients may omit it


class ChatToAnthropic:
    """``chat`` calls sent as Anthropic ``messages`` calls, answers brought back."""

    def request(
        self, call: Call, model: str, provider: ProviderConfig
    ) -> tuple[Call, tuple[str, ...]]:
        default_max = DEFAULT_MAX_TOKENS
        if isinstance(provider, AnthropicProvider):
            default_max = provider.default_max_tokens
        dropped = params.sort(call.body, "anthropic")
        out = messages_request(call.body, model, default_max)
        dropped += options.apply(call.body, out)
        return Call("messages", model, call.stream, out, orjson.dumps(out), call.headers), dropped

    def response(
        self, call: Call, model: str, body: bytes, parsed: dict[str, Any] | None = None
    ) -> bytes:
        message = oa.load(body) if parsed is None else parsed
        return chat_completion(options.answer_message(call.body, message), model)

    def error_body(self, call: Call, status: int, body: bytes) -> bytes:
        error = oa.obj(oa.load(body).get("error"))
        message = str(error.get("message") or f"the provider answered {status}")
        return openai_error(message, str(error.get("type") or openai_error_type(status)))

    def stream(self, call: Call, model: str) -> StreamTranslator:
        return options.answer_stream(call.body, ChatStream(call, model))


CHAT_TO_ANTHROPIC = ChatToAnthropic()
