"""A provider type composed with the translators a client's call needs: the one
object the fallback loop and the relay use to talk to a provider (pure, no I/O).

For each call, ``translate.chain.plan`` says how the client's format reaches the
provider's: pass-through, the provider's own translator, or a bridge (a
``/v1/messages`` client through chat) followed by either. The request goes down the
stages; the answer, the error body and the stream come back up them. Usage, failure
statuses and stream errors are the provider's own format's, so they are its type's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from llmgw.config import ProviderConfig
from llmgw.core import Call, StreamTranslator, Unsupported, UpstreamRequest, Usage, WireFormat
from llmgw.providers import PROVIDER_TYPES, ProviderType
from llmgw.sse import Event
from llmgw.translate.chain import Plan, plan


@dataclass(frozen=True, slots=True)
class Adapter:
    """One provider type, serving every client format it can reach."""

    kind: ProviderType
    # Each endpoint's stages, worked out on its first call: they depend only on the
    # type (its formats and translators, fixed), never on a config snapshot.
    _plans: dict[str, Plan | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def of(cls, type_name: str) -> Adapter:
        """The adapter of a registered provider type."""
        return cls(PROVIDER_TYPES[type_name])

    @property
    def type(self) -> str:
        return self.kind.name

    @property
    def ends_with_done(self) -> bool:
        return self.kind.ends_with_done

    @property
    def fetches_image_urls(self) -> bool:
        """False when chat image parts must reach the provider inline."""
        return self.kind.fetches_image_urls

    def needs_key(self, provider: ProviderConfig) -> bool:
        return self.kind.needs_key(provider)

    def plan(self, call: Call) -> Plan:
        found = self._stages(call.endpoint)
        if found is None:
            raise Unsupported(f"{self.kind.name} providers do not serve {call.endpoint}")
        return found

    def serves(self, call: Call) -> bool:
        """Whether this provider type can serve ``call``'s format at all."""
        return self._stages(call.endpoint) is not None

    def _stages(self, endpoint: WireFormat) -> Plan | None:
        plans = self._plans
        if endpoint in plans:
            return plans[endpoint]
        found = plans[endpoint] = plan(endpoint, self.kind.native, self.kind.translators)
        return found

    def passes_through(self, call: Call) -> bool:
        """True when the upstream's bytes go to the client unchanged."""
        return self.plan(call).passes_through

    def request(self, call: Call, model: str, provider: ProviderConfig) -> UpstreamRequest:
        stages = self.plan(call)
        for bridge in stages.bridges:
            call = bridge.request(call)
        dropped: tuple[str, ...] = ()
        if stages.translator is not None:
            call, dropped = stages.translator.request(call, model, provider)
        sent = self.kind.request(call, model, provider)
        return replace(sent, dropped=dropped) if dropped else sent

    def _calls(self, call: Call, stages: Plan) -> list[Call]:
        """The call as each stage receives it, the client's first."""
        calls = [call]
        for bridge in stages.bridges:
            calls.append(bridge.request(calls[-1]))
        return calls

    def response(
        self, call: Call, model: str, body: bytes, parsed: dict[str, Any] | None = None
    ) -> bytes:
        """A successful non-streamed body, in the client's format; ``parsed`` is the body
        already parsed (by the caller, once), when it was."""
        stages = self.plan(call)
        if not stages.bridges:  # the usual case: one stage at most, no list of calls
            translator = stages.translator
            return body if translator is None else translator.response(call, model, body, parsed)
        calls = self._calls(call, stages)
        if stages.translator is not None:
            body = stages.translator.response(calls[-1], model, body, parsed)
        for bridge, asked in zip(reversed(stages.bridges), reversed(calls[:-1]), strict=True):
            body = bridge.response(asked, model, body)
        return body

    def error_body(self, call: Call, status: int, body: bytes) -> bytes:
        """A provider's 4xx body about the request, in the client's error dialect."""
        stages = self.plan(call)
        calls = self._calls(call, stages)
        if stages.translator is not None:
            body = stages.translator.error_body(calls[-1], status, body)
        for bridge, asked in zip(reversed(stages.bridges), reversed(calls[:-1]), strict=True):
            body = bridge.error_body(asked, status, body)
        return body

    def stream(self, call: Call, model: str) -> StreamTranslator | None:
        """A translator for this streamed call, or None to relay bytes unchanged."""
        stages = self.plan(call)
        if stages.passes_through:
            return self.kind.relay(call)
        calls = self._calls(call, stages)
        inner = None if stages.translator is None else stages.translator.stream(calls[-1], model)
        for bridge, asked in zip(reversed(stages.bridges), reversed(calls[:-1]), strict=True):
            inner = bridge.stream(asked, model, inner)
        return inner

    def failure_status(self, status: int) -> int:
        return self.kind.failure_status(status)

    def stream_error(self, event: Event) -> str | None:
        return self.kind.stream_error(event)

    def usage(self, body: bytes) -> Usage:
        """Token usage from a whole JSON response or from one stream event's data."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Usage()
        return self.usage_of(parsed if isinstance(parsed, Mapping) else {})

    def usage_of(self, parsed: Mapping[str, Any]) -> Usage:
        """Token usage from a parsed JSON answer, as the provider's format counts it."""
        return self.kind.usage_of(parsed)
