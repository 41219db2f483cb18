"""OpenAI Responses client → OpenAI chat: the ``/v1/responses`` surface served by any
provider that serves ``chat`` but not the Responses API itself (Anthropic, Gemini,
Azure deployments, OpenAI-compatible servers, the mock).

The request becomes a chat request (``request``); what comes back in chat's format
(JSON, SSE or an error) is rewritten as a ``response`` object (``answer``) or the
Responses event sequence (``stream``). Errors are OpenAI's shape on both surfaces.
Pure, no I/O.
"""

from __future__ import annotations

from llmgw.core import Call, Endpoint, StreamTranslator
from llmgw.translate.responses_chat.answer import response
from llmgw.translate.responses_chat.request import chat_call
from llmgw.translate.responses_chat.stream import ResponsesStream


class ResponsesToChat:
    """A ``responses`` call asked as a ``chat`` call, its answers brought back."""

    target: Endpoint = "chat"

    def request(self, call: Call) -> Call:
        return chat_call(call)

    def response(self, call: Call, model: str, body: bytes) -> bytes:
        return response(call, body, model)

    def error_body(self, call: Call, status: int, body: bytes) -> bytes:
        return body  # the same error shape on both surfaces

    def stream(self, call: Call, model: str, inner: StreamTranslator | None) -> StreamTranslator:
        return ResponsesStream(call, model, inner)


RESPONSES_TO_CHAT = ResponsesToChat()
