"""How a client's format reaches each provider type (``translate.chain``), the one
registry of provider types, and the one place error bodies are rendered."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types import Message

from llmgw import relay
from llmgw.adapter import Adapter
from llmgw.config import parse
from llmgw.config.providers import PROVIDER_TYPES as CONFIG_TYPES
from llmgw.core import Call, Unsupported
from llmgw.errors import (
    InvalidRequest,
    Overloaded,
    anthropic_error,
    openai_error,
    stream_error_event,
)
from llmgw.providers import PROVIDER_TYPES
from llmgw.providers.base import ProviderType
from llmgw.translate.chain import BRIDGES, plan
from llmgw.translate.chat_anthropic import CHAT_TO_ANTHROPIC
from llmgw.translate.chat_gemini import CHAT_TO_GEMINI
from llmgw.translate.messages_chat import MESSAGES_TO_CHAT
from llmgw.translate.responses_chat import RESPONSES_TO_CHAT

CONFIG = parse(
    """
providers:
  local: {type: openai, base_url: "http://127.0.0.1:9/v1"}
""",
    environ={},
)


def call(endpoint: Any, body: dict[str, Any]) -> Call:
    return Call(endpoint, "m", bool(body.get("stream")), body, orjson.dumps(body))


def test_the_config_and_the_registry_know_the_same_provider_types() -> None:
    assert set(PROVIDER_TYPES) == set(CONFIG_TYPES)
    assert all(kind.name == name for name, kind in PROVIDER_TYPES.items())


def test_each_client_format_on_each_provider_type() -> None:
    def stages(kind: str, endpoint: Any) -> tuple[object, ...] | None:
        found = plan(endpoint, PROVIDER_TYPES[kind].native, PROVIDER_TYPES[kind].translators)
        return None if found is None else (*found.bridges, found.translator)

    assert stages("openai", "chat") == (None,)  # pass-through
    assert stages("openai", "messages") == (MESSAGES_TO_CHAT, None)
    assert stages("mock", "messages") == (MESSAGES_TO_CHAT, None)
    assert stages("azure", "messages") == (MESSAGES_TO_CHAT, None)
    assert stages("anthropic", "messages") == (None,)
    assert stages("anthropic", "chat") == (CHAT_TO_ANTHROPIC,)
    assert stages("anthropic", "embeddings") is None
    assert stages("gemini", "chat") == (CHAT_TO_GEMINI,)
    assert stages("gemini", "messages") == (MESSAGES_TO_CHAT, CHAT_TO_GEMINI)
    assert stages("gemini", "completions") is None
    assert stages("openai", "responses") == (None,)  # the Responses API spoken natively
    assert stages("azure", "responses") == (RESPONSES_TO_CHAT, None)
    assert stages("groq", "responses") == (RESPONSES_TO_CHAT, None)
    assert stages("mock", "responses") == (RESPONSES_TO_CHAT, None)
    assert stages("anthropic", "responses") == (RESPONSES_TO_CHAT, CHAT_TO_ANTHROPIC)
    assert stages("gemini", "responses") == (RESPONSES_TO_CHAT, CHAT_TO_GEMINI)
    assert set(BRIDGES) == {"messages", "responses"}


def test_a_new_chat_speaking_type_serves_messages_with_no_code_of_its_own() -> None:
    """The /v1/messages surface is composed for any type that serves chat: declaring the
    formats is enough (no per-provider branch to write)."""
    adapter = Adapter(ProviderType("compatible", default_base_url="http://127.0.0.1:9/v1"))
    asked = call(
        "messages", {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "Hi"}]}
    )
    request = adapter.request(asked, "served", CONFIG.providers["local"])
    assert request.url == "http://127.0.0.1:9/v1/chat/completions"
    assert orjson.loads(request.body)["messages"] == [{"role": "user", "content": "Hi"}]
    assert not adapter.passes_through(asked)
    answer = {
        "id": "chatcmpl-1",
        "model": "served",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    message = Message.model_validate_json(adapter.response(asked, "served", orjson.dumps(answer)))
    assert message.content[0].type == "text" and message.content[0].text == "Hello"
    assert message.usage.input_tokens == 3
    error = orjson.loads(
        adapter.error_body(asked, 404, openai_error("no such model", "not_found_error"))
    )
    assert error == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "no such model"},
    }
    with pytest.raises(Unsupported, match="narrow providers do not serve messages"):
        Adapter(ProviderType("narrow", native=frozenset({"embeddings"}))).request(
            asked, "m", CONFIG.providers["local"]
        )


def test_error_bodies_in_each_dialect_are_rendered_in_one_place() -> None:
    error = InvalidRequest("bad thing", param="n")
    assert error.openai_body() == openai_error(
        "bad thing", "invalid_request_error", "invalid_request", "n"
    )
    assert orjson.loads(error.openai_body()) == {
        "error": {
            "message": "bad thing",
            "type": "invalid_request_error",
            "param": "n",
            "code": "invalid_request",
        }
    }
    assert Overloaded("busy").anthropic_body() == anthropic_error("overloaded_error", "busy")
    assert orjson.loads(anthropic_error("api_error", "x")) == {
        "type": "error",
        "error": {"type": "api_error", "message": "x"},
    }
    # The relay's midway stream error is the same event, until it moves onto errors.py.
    for dialect in ("openai", "anthropic"):
        assert stream_error_event("cut off", dialect) == relay.stream_error_event(
            "cut off", dialect
        )
    assert stream_error_event("cut off", "anthropic").startswith(b"event: error\ndata: ")
