"""Speech and images answered from the cache by exact request (SPEC §4, §12), with the
official openai SDK against a fake OpenAI: speech's bytes and content type kept, a hit
free of cost, a failed answer never stored, uploads (transcriptions) never cached."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import CLIENT_KEY
from tests.fakes import FakeOpenAI, openai_error, reply_error, reply_json
from tests.test_media import AUDIO, audio_reply
from tests.test_media_costs import access_costs, media_config, usage_of

CACHED = "cache:\n  enabled: true\n"


async def test_speech_answered_from_the_cache(
    fake: FakeOpenAI, gateway: Any, sdk: Any, caplog: Any
) -> None:
    caplog.set_level("INFO", logger="llmgw.access")
    fake.then(audio_reply())
    gw = await gateway(media_config(fake.url, CACHED))
    client = sdk(gw)
    answers = []
    for user in ("a", "b"):  # ``user`` is not part of the key
        async with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="Hello there", extra_body={"user": user}
        ) as response:
            answers.append(
                (
                    response.headers["x-cache"],
                    response.headers["content-type"],
                    await response.read(),
                )
            )
    assert answers == [
        ("MISS", "audio/mpeg", b"".join(AUDIO)),
        ("HIT", "audio/mpeg", b"".join(AUDIO)),
    ]
    assert len(fake.seen) == 1
    assert await access_costs(caplog, 2) == [pytest.approx(11 * 15 / 1e6), 0.0]  # a hit is free
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="echo", input="Hello there"
    ) as response:  # another voice, another answer
        assert response.headers["x-cache"] == "MISS"
        await response.read()
    assert len(fake.seen) == 2


async def test_images_answered_from_the_cache(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    image = {"created": 1, "data": [{"url": "https://x.test/cat.png"}]}
    fake.then(reply_json(image))
    gw = await gateway(media_config(fake.url, CACHED))
    client = sdk(gw)
    seen = []
    for _ in range(2):
        raw = await client.images.with_raw_response.generate(model="dall-e-3", prompt="a cat")
        seen.append((raw.headers["x-cache"], raw.headers["content-type"], raw.parse().data))
    assert [s[0] for s in seen] == ["MISS", "HIT"]
    assert seen[0][1:] == seen[1][1:]
    assert len(fake.seen) == 1
    report = await usage_of(gw)
    assert report["models"]["dall-e-3"]["requests"] == 2
    assert report["models"]["dall-e-3"]["cost_usd"] == pytest.approx(0.04)  # one paid image


async def test_failed_speech_is_not_cached(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    fake.then(
        reply_json(openai_error(400, "Invalid voice"), status=400),
        reply_error(500),
        audio_reply(),
        audio_reply(),
    )
    gw = await gateway(media_config(fake.url, CACHED))
    client = sdk(gw)
    with pytest.raises(openai.BadRequestError):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi")
    with pytest.raises(openai.APIStatusError):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi")
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hi"
    ) as response:
        assert response.headers["x-cache"] == "MISS"
        assert await response.read() == b"".join(AUDIO)
    assert len(fake.seen) == 3


async def test_uploads_are_never_cached(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(media_config(fake.url, CACHED))
    for _ in range(2):
        form = aiohttp.FormData()
        form.add_field("model", "whisper-1")
        form.add_field("file", b"same bytes", filename="a.wav")
        headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
        response = await gw.post("/v1/audio/transcriptions", data=form, headers=headers)
        assert response.status == 200
        assert response.headers["X-Cache"] == "BYPASS"
    assert len(fake.seen) == 2
