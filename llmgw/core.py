"""What every layer shares: the request as parsed (``Call``), what one request did
(``RequestContext``), who asked (``Principal``), token usage, and the contract of a
stream translator. Nothing here imports aiohttp or does I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, Any, Literal, Protocol

import orjson

from llmgw.config.schema import LimitSpec
from llmgw.config.store import BudgetSpec

ANONYMOUS_LABEL = "anonymous"  # metrics and usage name for callers of an open gateway


# The client API surfaces (``/v1/chat/completions`` ... ``/v1/messages``, ``/v1/responses``).
Endpoint = Literal[
    "chat",
    "completions",
    "embeddings",
    "messages",
    "count_tokens",
    "responses",
    "moderations",
    "images",
    "audio_speech",
    "audio_transcriptions",
    "audio_translations",
]
# Each surface's path, for errors that name it.
ENDPOINT_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "chat": "/v1/chat/completions",
        "completions": "/v1/completions",
        "embeddings": "/v1/embeddings",
        "messages": "/v1/messages",
        "count_tokens": "/v1/messages/count_tokens",
        "responses": "/v1/responses",
        "moderations": "/v1/moderations",
        "images": "/v1/images/generations",
        "audio_speech": "/v1/audio/speech",
        "audio_transcriptions": "/v1/audio/transcriptions",
        "audio_translations": "/v1/audio/translations",
    }
)
# The wire formats a call may be sent in: the client surfaces, and the provider formats
# that only translators produce (Gemini's ``generateContent`` and ``batchEmbedContents``).
WireFormat = Literal[Endpoint, "gemini_generate", "gemini_embed"]


@dataclass(frozen=True, slots=True)
class Extensions:
    """The request's gateway extensions (SPEC §10), from its body or headers:
    ``x-routing-strategy``, ``x-prefer-provider``, ``x-cache``, ``x-budget-key`` and
    ``x-gateway``. Validated at ingress (api/extensions.py), never sent upstream."""

    strategy: str | None = None
    prefer_provider: str | None = None
    provider_field: str = "x-prefer-provider"  # where prefer_provider came from (errors)
    cache: bool = True  # False: neither read nor write the cache
    budget_key: str | None = None
    timeout: float | None = None  # seconds; capped by each provider's own timeout
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    metadata_in_body: bool = False


NO_EXTENSIONS = Extensions()


@dataclass(frozen=True, slots=True)
class Upload:
    """A file a client uploaded (audio transcriptions), spooled by the handler that
    received it (to disk past a small size); open for as long as its request lasts."""

    file: IO[bytes]
    size: int
    filename: str
    content_type: str


class Streamed(Protocol):
    """A request body sent upstream as it is read, its length known before."""

    @property
    def length(self) -> int: ...

    def chunks(self) -> AsyncIterator[bytes]: ...


@dataclass(frozen=True, slots=True)
class Call:
    """What a client asked for, parsed once at ingress; or what a translator made of it
    for the next stage (then ``endpoint`` may name a provider's own format)."""

    endpoint: WireFormat
    model: str
    stream: bool
    body: dict[str, Any]
    raw: bytes  # the exact bytes the client sent
    # Client headers an adapter may pass on (e.g. anthropic-version, anthropic-beta);
    # never credentials.
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    extensions: Extensions = NO_EXTENSIONS
    # A multipart upload's file (``body`` then holds the form's other fields).
    upload: Upload | None = None
    # What is worked out of the body once and read by several stages (routing, limits,
    # budgets, usage): the prompt's token estimate. A derived Call starts empty.
    memo: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def client_format(self) -> Literal["openai", "anthropic"]:
        """The wire format the client speaks and must be answered in."""
        return "anthropic" if self.endpoint in ("messages", "count_tokens") else "openai"

    def body_for(self, model: str) -> bytes:
        """The request body naming ``model``: the client's own bytes when unchanged."""
        if model == self.model:
            return self.raw
        return orjson.dumps({**self.body, "model": model})


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | Streamed  # Streamed: sent as it is read (an upload, from disk)
    local: bool = False  # answered in-process by a built-in provider, no network
    # The client's request parameters this translation left out (X-LLMGW-Dropped-Params).
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


CHARS_PER_TOKEN = 4  # OpenAI's own rule of thumb for English text


def tokens_for_chars(chars: int) -> int:
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_tokens(text: str) -> int:
    """A text's tokens, estimated (at least 1 for any text)."""
    return max(1, tokens_for_chars(len(text))) if text else 0


def estimate_prompt_tokens(call: Call) -> int:
    """The prompt's tokens, estimated from its text (at least 1); worked out once per
    call (``Call.memo``)."""
    found = call.memo.get("prompt_tokens")
    if found is None:
        found = call.memo["prompt_tokens"] = _prompt_tokens(call.body)
    return found


def _prompt_tokens(body: dict[str, Any]) -> int:
    chars = 0
    for name in _PROMPT_FIELDS:
        if name in body:
            chars += text_length(body[name])
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")  # mostly a string: no call for it
                chars += len(content) if isinstance(content, str) else text_length(content)
    return max(1, tokens_for_chars(chars))


_PROMPT_FIELDS = ("system", "prompt", "input")


def text_length(value: object) -> int:
    """Characters of text in a message content, prompt or input (strings or parts)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict):
                total += text_length(part.get("text"))
            elif isinstance(part, int):  # token ids
                total += CHARS_PER_TOKEN
        return total
    return 0


def last_user_text(messages: object) -> str:
    """The text of the last ``user`` message of a chat, its text parts joined by spaces."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def content_text(content: object, separator: str = " ") -> str:
    """A message content's text: the string itself, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return separator.join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


class Unsupported(Exception):
    """This provider type cannot serve this request: its endpoint, or ``param`` (a
    request parameter such as ``n``, or a content part such as
    ``messages[0].content[1]``). The message is the gateway's own words."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class StreamTranslator(Protocol):
    """Per-request state of one translated stream: provider SSE bytes in, client SSE
    bytes out. Created by ``Adapter.stream`` for each streamed call; pure (no I/O).

    ``feed`` takes network chunks exactly as they arrive (events may be split across
    chunks or several may share one) and returns the client bytes to write now, which
    may be empty. ``finish`` is called once at the provider's end of stream and
    returns the closing bytes (e.g. ``data: [DONE]``). ``error`` is set when the
    provider sent an error event; if that happens before any output, the gateway
    falls back. ``done`` tells whether the provider ended its stream properly.
    """

    usage: Usage
    error: str | None
    done: bool

    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class Trace(Protocol):
    """A request's trace (``observe.tracing.RequestTrace``), when tracing is on."""

    trace_id: str

    def event(self, name: str, attributes: Mapping[str, str | int | float | bool]) -> None: ...
    def finish(self, ctx: RequestContext) -> None: ...


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float  # perf_counter at ingress
    surface: str = "openai"  # error dialect: "openai" or "anthropic"
    endpoint: str | None = None  # set for client API calls only
    key: str | None = None  # the client key's name, never the key
    model: str | None = None
    model_label: str = "other"
    provider: str | None = None
    upstream_model: str | None = None
    dropped: tuple[str, ...] = ()  # request parameters the provider's translation left out
    status: int = 0
    cache: str | None = None
    cache_match: str | None = None  # a hit's X-Cache-Match: exact | semantic
    cache_similarity: float | None = None  # a semantic hit's cosine similarity
    attempts: int = 0
    first_byte: float | None = None  # perf_counter when the first body byte went out
    upstream_wait: float = 0.0  # seconds spent waiting on providers
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None
    delivered: bool = False  # the client had its whole answer (a stream: its end event)
    prompt: str | None = None  # only when logging.log_prompts is on
    streamed_events: int = 0  # SSE events relayed (estimates tokens when usage never came)
    # The x-ratelimit-* headers, made by add_headers when the response is prepared.
    ratelimit: Callable[[], list[tuple[str, str]]] | None = None
    client_ip: str | None = None  # the client's address as limits.per_ip counts it
    trace: Trace | None = None  # the request's trace, when telemetry is on
    # Smart routing (SPEC §10): how the targets were chosen, for X-LLMGW-Routing.
    strategy: str | None = None  # balanced, cost, ..., ordered; None: not routed
    scores: Mapping[str, float] | None = None  # "provider/model" -> score, scored strategies
    complexity: str | None = None  # simple | medium | complex
    complexity_of: Callable[[], str] | None = None  # works it out when not yet known
    first_target: str | None = None  # the chain's first "provider/model"
    tags: Mapping[str, str] | None = None  # x-gateway.metadata, for usage attribution
    budget_key: str | None = None  # x-budget-key
    # Hedging (llmgw/hedge.py): a racer's commit hook, and the racers that lost (their
    # partial usage is counted too).
    claim: Callable[[], None] | None = None
    hedge_losers: tuple[RequestContext, ...] = ()
    # Bytes a stream writes after its last event, before it ends (the x-gateway comment).
    trailer: Callable[[], bytes] | None = None
    # A whole answer's body (and its content type) as this request sends it: the
    # x-gateway block added to a JSON answer, or the comment to a replayed stream.
    annotate: Callable[[bytes, str], bytes] | None = None

    def routing_line(self) -> str | None:
        """``X-LLMGW-Routing``: ``balanced: openai/gpt-4o-mini (score 0.87, complexity
        simple)``; a cache hit says ``cache``. None when nothing was routed or answered."""
        if self.strategy is None or self.provider is None or self.upstream_model is None:
            return None
        target = f"{self.provider}/{self.upstream_model}"
        strategy = "cache" if self.cache == "HIT" else self.strategy
        score = None if self.scores is None else self.scores.get(target)
        why = f"score {score:.2f}, " if score is not None else ""
        if self.complexity is None and self.complexity_of is not None:
            self.complexity = self.complexity_of()  # once, and only when the line is written
        return f"{strategy}: {target} ({why}complexity {self.complexity})"

    def log_fields(self, latency: float) -> dict[str, Any]:
        ttfb = (
            None if self.first_byte is None else round((self.first_byte - self.started) * 1000, 2)
        )
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "key": self.key,
            "endpoint": self.endpoint,
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "status": self.status,
            "cache": self.cache,
            "attempts": self.attempts,
            "latency_ms": round(latency * 1000, 2),
            "ttfb_ms": ttfb,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "error": self.error,
        }
        if self.tags:  # x-gateway.metadata: attribution per feature, per user
            fields["tags"] = dict(self.tags)
        return fields


@dataclass(frozen=True, slots=True)
class Principal:
    name: str | None  # the key's configured name; None on an open gateway
    models: frozenset[str] | None = None  # allowlist; None = every model
    limits: LimitSpec | None = None
    cache_refresh: bool = False  # its no-cache may replace shared cache entries
    budget: BudgetSpec | None = None  # monthly spend allowed (SPEC §11)

    @property
    def label(self) -> str:
        """The name for metrics and usage: bounded by the config."""
        return self.name or ANONYMOUS_LABEL


ANONYMOUS = Principal(None, cache_refresh=True)
