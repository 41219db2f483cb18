"""Anthropic Messages client → OpenAI chat: the ``/v1/messages`` surface served by
any provider that serves ``chat`` (natively or through its own translator).

The request becomes an OpenAI chat request (``request``); what comes back in OpenAI's
format (JSON, SSE or an error) is rewritten as Anthropic's message (``answer``), event
sequence (``stream``) or error. Pure, no I/O.
"""

from __future__ import annotations

from llmgw.core import Call, Endpoint, StreamTranslator, estimate_prompt_tokens
from llmgw.translate.messages_chat.answer import error, message
from llmgw.translate.messages_chat.request import chat_call
from llmgw.translate.messages_chat.stream import MessagesStream


class MessagesToChat:
    """A ``messages`` call asked as a ``chat`` call, its answers brought back."""

    target: Endpoint = "chat"

    def request(self, call: Call) -> Call:
        return chat_call(call)

    def response(self, call: Call, model: str, body: bytes) -> bytes:
        return message(body, model)

    def error_body(self, call: Call, status: int, body: bytes) -> bytes:
        return error(status, body)

    def stream(self, call: Call, model: str, inner: StreamTranslator | None) -> StreamTranslator:
        """``inner``: the provider's own translator to chat chunks, when it has one."""
        return MessagesStream(model, inner, prompt_estimate=estimate_prompt_tokens(call))


MESSAGES_TO_CHAT = MessagesToChat()
