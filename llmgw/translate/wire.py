"""The JSON the translators read, as typed dictionaries (``total=False``: any field may
be missing, as it may on the wire; readers still check each value's type).

Types only: nothing here runs. A reader annotated with one of these says which wire
format it reads; ``cast`` at the point where parsed JSON enters a translator costs
nothing at run time.
"""

from __future__ import annotations

from typing import Any, TypedDict

# OpenAI chat ---------------------------------------------------------------------


class ChatMessage(TypedDict, total=False):
    role: str
    content: str | list[dict[str, Any]] | None
    name: str
    tool_calls: list[dict[str, Any]]
    tool_call_id: str
    refusal: str | None
    reasoning_content: str


class ChatRequest(TypedDict, total=False):
    model: str
    messages: list[ChatMessage]
    stream: bool
    stream_options: dict[str, Any]
    max_tokens: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    stop: str | list[str]
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    response_format: dict[str, Any]
    reasoning_effort: str
    user: str
    safety_identifier: str


class ChatUsage(TypedDict, total=False):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, Any]
    completion_tokens_details: dict[str, Any]


class ChatChoice(TypedDict, total=False):
    index: int
    message: ChatMessage
    delta: ChatMessage
    finish_reason: str | None


class ChatCompletion(TypedDict, total=False):
    """A ``chat.completion`` answer, or one ``chat.completion.chunk`` of a stream."""

    id: str
    object: str
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    error: dict[str, Any]


ChatChunk = ChatCompletion


# Anthropic Messages --------------------------------------------------------------


class AnthropicUsage(TypedDict, total=False):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


class AnthropicBlock(TypedDict, total=False):
    type: str
    text: str
    thinking: str
    id: str
    name: str
    input: dict[str, Any]
    tool_use_id: str
    content: str | list[dict[str, Any]]
    source: dict[str, Any]


class AnthropicMessage(TypedDict, total=False):
    """A ``message`` answer, or the body of a ``/v1/messages`` request."""

    id: str
    type: str
    role: str
    model: str
    content: list[AnthropicBlock]
    stop_reason: str | None
    usage: AnthropicUsage
    # request fields
    system: str | list[AnthropicBlock]
    messages: list[dict[str, Any]]
    max_tokens: int
    stop_sequences: list[str]
    temperature: float
    top_p: float
    tools: list[dict[str, Any]]
    tool_choice: dict[str, Any]
    thinking: dict[str, Any]
    metadata: dict[str, Any]
    stream: bool


class AnthropicEvent(TypedDict, total=False):
    """One event of a Messages stream (its ``type`` names it)."""

    type: str
    index: int
    message: AnthropicMessage
    content_block: AnthropicBlock
    delta: dict[str, Any]
    usage: AnthropicUsage
    error: dict[str, Any]


# Gemini ----------------------------------------------------------------------------


class GeminiCandidate(TypedDict, total=False):
    index: int
    content: dict[str, Any]
    finishReason: str


class GeminiResponse(TypedDict, total=False):
    """A ``GenerateContentResponse``: a whole answer, or one event of a stream."""

    responseId: str
    modelVersion: str
    candidates: list[GeminiCandidate]
    promptFeedback: dict[str, Any]
    usageMetadata: dict[str, Any]
    error: dict[str, Any]


class GeminiEmbeddings(TypedDict, total=False):
    embeddings: list[dict[str, Any]]
