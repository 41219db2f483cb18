"""OpenAI, and every OpenAI-compatible server (vLLM, Ollama, LiteLLM, ...) at its own
``base_url``: the gateway's own wire format, relayed unchanged. The ``openai`` type
also speaks the Responses API (``/v1/responses``), moderations, images, speech and
transcriptions (multipart uploads, streamed from their spool). A
Responses stream, which ends with ``response.completed`` rather than ``[DONE]``, is
read on the side by ``ResponsesRelay``. Compatible servers (the presets) reach
Responses through chat and serve none of the media endpoints."""

from dataclasses import dataclass, field

from llmgw.core import Call, StreamTranslator, WireFormat
from llmgw.providers.base import ProviderType
from llmgw.translate.responses_wire import ResponsesRelay


def _formats() -> frozenset[WireFormat]:
    return frozenset(
        {
            "chat",
            "completions",
            "embeddings",
            "responses",
            "moderations",
            "images",
            "audio_speech",
            "audio_transcriptions",
            "audio_translations",
        }
    )


@dataclass(frozen=True)
class OpenAI(ProviderType):
    native: frozenset[WireFormat] = field(default_factory=_formats)

    def relay(self, call: Call) -> StreamTranslator | None:
        return ResponsesRelay() if call.endpoint == "responses" else None


OPENAI = OpenAI("openai")
