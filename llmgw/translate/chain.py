"""How a client's call reaches a provider that may speak another wire format.

Two kinds of translator, each pure and created once:

- a ``Translator`` takes a client format to a provider's own (OpenAI chat → Anthropic
  Messages, chat → Gemini); a provider type names the ones it uses;
- a ``Bridge`` serves one client surface through another that providers serve
  (``/v1/messages`` → chat); ``BRIDGES`` lists them.

``plan`` composes them, once, for every provider alike: the client's format spoken
natively is a pass-through; else the provider's own translator; else a bridge to a
format the provider serves, and that format's plan. A new surface (the Responses
API, audio) is one more bridge, not a branch in each provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from llmgw.config import ProviderConfig
from llmgw.core import Call, Endpoint, StreamTranslator, WireFormat
from llmgw.translate.messages_chat import MESSAGES_TO_CHAT
from llmgw.translate.responses_chat import RESPONSES_TO_CHAT


class Translator(Protocol):
    """A client format asked of a provider in its own format, and answered back."""

    def request(
        self, call: Call, model: str, provider: ProviderConfig
    ) -> tuple[Call, tuple[str, ...]]:
        """The provider-format call naming ``model``, and the parameters left out."""
        ...

    def response(
        self, call: Call, model: str, body: bytes, parsed: dict[str, Any] | None = None
    ) -> bytes:
        """A whole answer in the client's format (``parsed``: ``body`` parsed, if it was)."""
        ...

    def error_body(self, call: Call, status: int, body: bytes) -> bytes:
        """The provider's 4xx error body in the client's dialect."""
        ...

    def stream(self, call: Call, model: str) -> StreamTranslator:
        """The provider's stream as the client's, for one streamed call."""
        ...


class Bridge(Protocol):
    """A client surface asked through another surface (``target``), answered back."""

    target: Endpoint

    def request(self, call: Call) -> Call: ...
    def response(self, call: Call, model: str, body: bytes) -> bytes: ...
    def error_body(self, call: Call, status: int, body: bytes) -> bytes: ...
    def stream(
        self, call: Call, model: str, inner: StreamTranslator | None
    ) -> StreamTranslator: ...


BRIDGES: Mapping[WireFormat, Bridge] = MappingProxyType(
    {"messages": MESSAGES_TO_CHAT, "responses": RESPONSES_TO_CHAT}
)


@dataclass(frozen=True, slots=True)
class Plan:
    """The stages of one client format on one provider: bridges outermost first, then
    the provider's own translator; neither for a pass-through."""

    bridges: tuple[Bridge, ...] = ()
    translator: Translator | None = None

    @property
    def passes_through(self) -> bool:
        return not self.bridges and self.translator is None


def plan(
    endpoint: WireFormat,
    native: frozenset[WireFormat],
    translators: Mapping[WireFormat, Translator],
) -> Plan | None:
    """How ``endpoint`` is served by a provider speaking ``native`` formats and
    translating ``translators``' keys; None when it cannot be."""
    bridges: list[Bridge] = []
    seen: set[WireFormat] = set()
    while endpoint not in seen:  # bounded: each format is visited once
        seen.add(endpoint)
        if endpoint in native:
            return Plan(tuple(bridges))
        if endpoint in translators:
            return Plan(tuple(bridges), translators[endpoint])
        bridge = BRIDGES.get(endpoint)
        if bridge is None:
            return None
        bridges.append(bridge)
        endpoint = bridge.target
    return None
