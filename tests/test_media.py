"""``/v1/moderations``, ``/v1/images/generations`` and ``/v1/audio/speech`` with the
official openai SDK: relayed to OpenAI (speech's audio streamed through with its
content type), answered deterministically by the mock, skipped on provider types that
cannot serve them, ``400 unsupported_endpoint`` when none can."""

from __future__ import annotations

import base64
import io
import wave
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.conftest import PROVIDER_KEY, one_provider
from tests.fakes import FakeOpenAI, openai_error, reply_json

MOCK = "providers:\n  demo: {type: mock, models: [echo]}\n"
AUDIO = [b"ID3\x04\x00" + bytes(range(200)), bytes(range(256)) * 40, b"\xff\xfb" * 300]


def anthropic_first(url: str) -> str:
    """One alias over an Anthropic target, then the mock."""
    return f"""
providers:
  claude: {{type: anthropic, base_url: {url}, api_key: {PROVIDER_KEY}, models: [claude-x]}}
  demo: {{type: mock, models: [echo]}}
models:
  media: [claude/claude-x, demo/echo]
  claude-only: claude/claude-x
"""


def audio_reply() -> Any:
    async def behave(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        await response.prepare(request)
        for chunk in AUDIO:
            await response.write(chunk)
        await response.write_eof()
        return response

    return behave


async def test_mock_moderation_flags_nothing(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK)
    result = await sdk(gw).moderations.create(model="echo", input=["hello", "there"])
    assert [r.flagged for r in result.results] == [False, False]
    assert result.results[0].categories.violence is False
    assert result.model == "echo"


async def test_mock_image_is_a_png(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK)
    client = sdk(gw)
    answer = await client.images.generate(model="echo", prompt="a cat", n=2)
    assert answer.data is not None and len(answer.data) == 2
    assert base64.b64decode(answer.data[0].b64_json or "").startswith(b"\x89PNG\r\n\x1a\n")
    linked = await client.images.generate(model="echo", prompt="a cat", response_format="url")
    assert linked.data is not None and (linked.data[0].url or "").startswith(
        "data:image/png;base64,"
    )


async def test_mock_speech_is_a_valid_wav(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK)
    async with sdk(gw).audio.speech.with_streaming_response.create(
        model="echo", voice="alloy", input="Hello there"
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        audio = await response.read()
    with wave.open(io.BytesIO(audio)) as read:
        assert (read.getnchannels(), read.getsampwidth()) == (1, 2)
        assert read.getnframes() > 0


async def test_openai_speech_streamed_through_with_its_type(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    fake.then(audio_reply())
    gw = await gateway(one_provider(fake.url))
    async with sdk(gw).audio.speech.with_streaming_response.create(
        model="gpt-4o-mini", voice="alloy", input="Hi", response_format="mp3"
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        received = b"".join([chunk async for chunk in response.iter_bytes()])
    assert received == b"".join(AUDIO)
    assert fake.seen[0].path == "/v1/audio/speech"
    assert fake.seen[0].body["voice"] == "alloy"


async def test_openai_rejection_of_a_voice_is_relayed(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    fake.then(reply_json(openai_error(400, "Invalid voice 'nobody'"), status=400))
    gw = await gateway(one_provider(fake.url))
    with pytest.raises(openai.BadRequestError):
        await sdk(gw).audio.speech.create(model="gpt-4o-mini", voice="nobody", input="Hi")  # type: ignore[arg-type]


async def test_openai_images_and_moderations_relayed(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    image = {"created": 1, "data": [{"url": "https://example.com/cat.png"}]}
    moderation = {"id": "modr-1", "model": "omni", "results": [{"flagged": True}]}
    fake.then(reply_json(image), reply_json(moderation))
    gw = await gateway(one_provider(fake.url))
    client = sdk(gw)
    answer = await client.images.generate(model="gpt-4o-mini", prompt="a cat")
    assert answer.data is not None and answer.data[0].url == "https://example.com/cat.png"
    result = await client.moderations.create(model="gpt-4o-mini", input="hm")
    assert result.results[0].flagged is True
    assert [s.path for s in fake.seen] == ["/v1/images/generations", "/v1/moderations"]


async def test_types_without_the_endpoint_are_skipped(gateway: Any, sdk: Any) -> None:
    gw = await gateway(anthropic_first("http://127.0.0.1:9"))
    result = await sdk(gw).moderations.create(model="media", input="hi")
    assert result.results[0].flagged is False  # answered by the mock, Anthropic skipped


async def test_none_left_is_unsupported_endpoint(gateway: Any, sdk: Any) -> None:
    gw = await gateway(anthropic_first("http://127.0.0.1:9"))
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(gw).images.generate(model="claude-only", prompt="a cat")
    body = refused.value.body
    assert body["code"] == "unsupported_endpoint"  # type: ignore[index]
    assert "/v1/images/generations" in body["message"]  # type: ignore[index]
    assert "claude-only" in body["message"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/images/generations", {"model": "echo"}, "prompt"),
        ("/v1/audio/speech", {"model": "echo", "input": "hi"}, "voice"),
        ("/v1/moderations", {"model": "echo", "input": []}, "input"),
        ("/v1/moderations", {"input": "hi"}, "model"),
    ],
)
async def test_bad_media_requests_name_the_field(
    gateway: Any, path: str, body: dict[str, Any], param: str
) -> None:
    gw = await gateway(MOCK)
    response = await gw.post(path, json=body)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param


async def test_speech_limited_under_audio(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK + "limits:\n  endpoints:\n    audio: {rpm: 1}\n")
    client = sdk(gw)
    await client.audio.speech.create(model="echo", voice="alloy", input="one")
    with pytest.raises(openai.RateLimitError):
        await client.audio.speech.create(model="echo", voice="alloy", input="two")
    metrics = await (await gw.get("/metrics")).text()
    assert 'endpoint="audio_speech"' in metrics
