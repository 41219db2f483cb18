"""Property-based tests of request validation and of everything that reads a request
or a provider's answer after it (pure functions, so thousands of cases run in seconds).

- Any bytes: ``parse_call`` returns a ``Call`` or raises ``InvalidRequest`` (400).
- Any accepted call: the cache key, the usage estimate, the prompt excerpt and every
  adapter's upstream request are computed without an error, and the upstream URL keeps
  the configured host and path: no client input chooses where a request goes.
- Any bytes from a provider: every adapter's answer, usage, error and stream
  translation is computed without an error (garbage in, an error or nothing out).
"""

from __future__ import annotations

import contextlib
import os
import string
from typing import Any
from urllib.parse import urlsplit

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from yarl import URL

from llmgw.adapter import Adapter
from llmgw.api.calls import parse_call, prompt_excerpt
from llmgw.cache.keys import cache_key
from llmgw.config import parse
from llmgw.core import Call, Unsupported
from llmgw.errors import InvalidRequest
from llmgw.observe.usage import estimate_prompt_tokens
from llmgw.providers import PROVIDER_TYPES
from llmgw.upstream import retry_after

EXAMPLES = int(os.environ.get("LLMGW_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
ENDPOINTS = ("chat", "completions", "embeddings", "messages")
CONFIG = parse(
    """
providers:
  openai: {type: openai, base_url: "https://openai.test/v1", api_key: k}
  azure: {type: azure, base_url: "https://azure.test", api_key: k}
  anthropic: {type: anthropic, base_url: "https://anthropic.test", api_key: k}
  gemini: {type: gemini, base_url: "https://gemini.test/v1beta", api_key: k}
  mock: {type: mock}
""",
    environ={},
)
HOSTS = {"openai": "openai.test", "azure": "azure.test", "anthropic": "anthropic.test"}
HOSTS["gemini"] = "gemini.test"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
part = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "file", "refusal", "x"])},
    optional={"text": json_values, "image_url": json_values, "file": json_values},
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "x"])},
    optional={
        "content": st.one_of(json_values, st.lists(part, max_size=3)),
        "tool_calls": json_values,
        "tool_call_id": json_values,
        "name": json_values,
    },
)
KNOWN = [
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "seed",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stream_options",
    "user",
    "logprobs",
    "system",
    "metadata",
    "thinking",
    "stop_sequences",
    "top_k",
    "encoding_format",
    "dimensions",
    "parallel_tool_calls",
    "reasoning_effort",
]
model_names = st.one_of(
    st.sampled_from(["gpt-4o", "claude-x", "gemini-2.5-flash", "models/gemini-2.5-pro"]),
    st.text(alphabet=string.printable, min_size=1, max_size=30),
)
bodies = st.fixed_dictionaries(
    {"model": model_names},
    optional={
        "messages": st.lists(message, min_size=1, max_size=4),
        "prompt": json_values,
        "input": json_values,
        "stream": st.booleans(),
        **{name: json_values for name in KNOWN},
    },
)


@FUZZ
@given(st.binary(max_size=200))
@example(b"[" * 300 + b"]" * 300)
@example(b'{"model": "m", "messages": [{"role": "user"}], "x": ' + b"[" * 250 + b"]" * 250 + b"}")
def test_any_bytes_are_a_call_or_a_400(raw: bytes) -> None:
    for endpoint in ENDPOINTS:
        with contextlib.suppress(InvalidRequest):
            parse_call(endpoint, raw)  # type: ignore[arg-type]


@FUZZ
@given(body=bodies, endpoint=st.sampled_from(ENDPOINTS), target=model_names)
@example(
    body={"model": "gemini/x?alt=json#", "messages": [{"role": "user"}]},
    endpoint="chat",
    target="x?key=1#",
)
@example(body={"model": "m", "messages": [{"role": "user"}]}, endpoint="chat", target="../../files")
@example(
    body={"model": "m", "messages": [{"role": "user"}]}, endpoint="embeddings", target="a/../../b"
)
def test_accepted_calls_flow_through_every_stage(
    body: dict[str, Any], endpoint: str, target: str
) -> None:
    raw = orjson.dumps(body)
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "x"}
    try:
        call = parse_call(endpoint, raw, headers)  # type: ignore[arg-type]
    except InvalidRequest:
        return
    cache_key(call, None)
    cache_key(call, "team")
    orjson.loads(call.body_for("another-model"))
    assert estimate_prompt_tokens(call) >= 1
    assert len(prompt_excerpt(call)) <= 200
    for name, provider in CONFIG.providers.items():
        try:
            request = Adapter.of(provider.type).request(call, target, provider)
        except Unsupported:
            continue
        orjson.loads(request.body)
        if name in HOSTS:
            assert_stays_on(request.url, name)


def assert_stays_on(url: str, provider: str) -> None:
    """The URL aiohttp would request is on the provider's host, under its base path,
    with no query but the adapter's own."""
    parsed = URL(url)  # as the client session parses it
    assert parsed.host == HOSTS[provider], url
    assert urlsplit(url).netloc == HOSTS[provider], url
    base = {"openai": "/v1/", "azure": "/openai/deployments/", "anthropic": "/v1/messages"}
    base["gemini"] = "/v1beta/models/"
    assert parsed.path.startswith(base[provider]), url
    assert set(parsed.query) <= {"alt", "api-version"}, url
    assert not parsed.fragment, url


# A provider's answers -------------------------------------------------------------------------

answers = st.one_of(
    st.binary(max_size=200),
    json_values.map(orjson.dumps),
    st.sampled_from(
        [
            b'{"usage": {"prompt_tokens": "9"}}',
            b'{"choices": [{"message": 5}], "content": [{"text": []}]}',
            b'{"candidates": [{"content": {"parts": [{"functionCall": {"args": 5}}]}}]}',
            b'{"error": "x"}',
            b"[]",
        ]
    ),
)


def calls() -> list[Call]:
    found = []
    for endpoint in ENDPOINTS:
        for stream in (False, True):
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            body |= {"max_tokens": 5, "prompt": "hi", "input": "hi"}
            body["stream_options"] = {"include_usage": True}
            found.append(parse_call(endpoint, orjson.dumps(body)))  # type: ignore[arg-type]
    return found


CALLS = calls()


@FUZZ
@given(answer=answers, status=st.sampled_from([200, 400, 404, 422, 500]))
def test_any_answer_is_translated_without_error(answer: bytes, status: int) -> None:
    for adapter in map(Adapter, PROVIDER_TYPES.values()):
        adapter.usage(answer)
        for call in CALLS:
            try:
                adapter.request(call, "m", CONFIG.providers["openai"])
            except Unsupported:
                continue
            adapter.response(call, "m", answer)
            adapter.error_body(call, status, answer)


sse_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [b"data: [DONE]", b"event: error", b": ping", b"", b"data: {}", b"retry: 5"]
        ),
        json_values.map(lambda value: b"data: " + orjson.dumps(value)),
        st.sampled_from(
            [
                b'event: message_start\ndata: {"type": "message_start", "message": []}',
                b'data: {"type": "content_block_delta", "index": "0", "delta": {"type": "input_json_delta", "partial_json": 5}}',
                b'data: {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": [], "name": {}}}',
                b'data: {"type": "message_delta", "delta": [], "usage": {"output_tokens": "x"}}',
                b'data: {"candidates": [{"index": "a", "content": {"parts": 5}, "finishReason": 3}]}',
                b'data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": "x", "function": 5}]}}]}',
                b'data: {"choices": [{"delta": {"content": ["a"]}, "finish_reason": []}], "usage": 5}',
            ]
        ),
        st.binary(max_size=40),
    ),
    max_size=12,
)


@FUZZ
@given(lines=sse_lines, size=st.integers(min_value=1, max_value=64))
def test_any_stream_is_translated_without_error(lines: list[bytes], size: int) -> None:
    data = b"\n\n".join(lines)
    for adapter in map(Adapter, PROVIDER_TYPES.values()):
        for call in CALLS:
            if not call.stream or not adapter.serves(call):
                continue  # never asked of this provider: its request is refused first
            translator = adapter.stream(call, "m")
            if translator is None:
                continue
            for start in range(0, len(data), size):
                translator.feed(data[start : start + size])
            translator.finish()


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["Retry-After", "retry-after-ms"]),
        st.one_of(
            st.text(max_size=40),
            st.sampled_from(
                [
                    "nan",
                    "inf",
                    "-1",
                    "1e999",
                    "Wed, 21 Oct 2015 07:28:00 GMT",
                    "Mon, 99 Foo 0000 99:99:99",
                ]
            ),
        ),
    )
)
def test_retry_after_is_a_finite_delay_or_none(headers: dict[str, str]) -> None:
    delay = retry_after(headers)
    assert delay is None or 0 <= delay <= 86400  # finite: it becomes a whole-second header
