"""OpenAI client → Gemini provider: chat as ``generateContent`` (streamed:
``streamGenerateContent``), embeddings as ``batchEmbedContents``; the requests in
``request``, the answers, usage and errors back in ``answer``, the stream in
``stream``. Pure, no I/O."""

from __future__ import annotations

from typing import Any

import orjson

from llmgw.config import ProviderConfig
from llmgw.core import Call, StreamTranslator
from llmgw.translate import openai_chat as oa
from llmgw.translate import params
from llmgw.translate.chat_gemini.answer import chat_completion, embeddings, error_body
from llmgw.translate.chat_gemini.request import embed_request, generate_request
from llmgw.translate.chat_gemini.stream import ChatStream


def _model_name(model: str) -> str:
    return model.removeprefix("models/")


class ChatToGemini:
    """``chat`` calls sent as ``gemini_generate`` calls, answers brought back."""

    def request(
        self, call: Call, model: str, provider: ProviderConfig
    ) -> tuple[Call, tuple[str, ...]]:
        dropped = params.sort(call.body, "gemini")
        body = generate_request(call.body)
        native = Call("gemini_generate", model, call.stream, body, orjson.dumps(body), call.headers)
        return native, dropped

    def response(
        self, call: Call, model: str, body: bytes, parsed: dict[str, Any] | None = None
    ) -> bytes:
        return chat_completion(oa.load(body) if parsed is None else parsed, model)

    def error_body(self, call: Call, status: int, body: bytes) -> bytes:
        return error_body(status, body)

    def stream(self, call: Call, model: str) -> StreamTranslator:
        return ChatStream(call, model)


class EmbeddingsToGemini:
    """``embeddings`` calls sent as ``gemini_embed`` calls, vectors brought back."""

    def request(
        self, call: Call, model: str, provider: ProviderConfig
    ) -> tuple[Call, tuple[str, ...]]:
        body = embed_request(call.body, _model_name(model))
        return Call("gemini_embed", model, False, body, orjson.dumps(body), call.headers), ()

    def response(
        self, call: Call, model: str, body: bytes, parsed: dict[str, Any] | None = None
    ) -> bytes:
        return embeddings(call.body, model, oa.load(body) if parsed is None else parsed)

    def error_body(self, call: Call, status: int, body: bytes) -> bytes:
        return error_body(status, body)

    def stream(self, call: Call, model: str) -> StreamTranslator:
        # Embeddings are not streamed; an event stream in answer is read as chat's.
        return ChatStream(call, model)


CHAT_TO_GEMINI = ChatToGemini()
EMBEDDINGS_TO_GEMINI = EmbeddingsToGemini()
