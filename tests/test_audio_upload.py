"""``/v1/audio/transcriptions`` and ``/v1/audio/translations`` with the official openai
SDK: multipart uploads relayed to an OpenAI-type upstream as multipart (the file and
fields intact, ``model`` wherever it sat in the form), answered by the mock with the
upload's size, skipped on types that cannot serve them, bounded by
``server.max_upload_size``, and never cached."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.conftest import CLIENT_KEY, one_provider
from tests.fakes import FakeOpenAI
from tests.test_media import MOCK, anthropic_first

SOUND = bytes(range(256)) * 300 + b"\x00tail"  # not text, and longer than one read
# openai 3.x marks ``audio.translations`` deprecated (it warns on each call); OpenAI still
# serves the endpoint, and clients still call it.
translations_warn = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


async def test_transcription_relayed_as_multipart(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    result = await sdk(gw).audio.transcriptions.create(
        file=("talk.mp3", SOUND, "audio/mpeg"),
        model="gpt-4o-mini",
        language="de",
        prompt="a talk about gateways",
        temperature=0.2,
    )
    assert result.text == f"heard {len(SOUND)} bytes"
    seen = fake.seen[0]
    assert seen.path == "/v1/audio/transcriptions"
    assert seen.headers["Authorization"].startswith("Bearer ")
    assert seen.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert int(seen.headers["Content-Length"]) > len(SOUND)
    body = seen.body
    assert body["file"] == SOUND
    assert (body["filename"], body["file_type"]) == ("talk.mp3", "audio/mpeg")
    assert body["model"] == "gpt-4o-mini"
    assert (body["language"], body["prompt"], body["temperature"]) == (
        "de",
        "a talk about gateways",
        "0.2",
    )


@translations_warn
async def test_translation_relayed_to_its_path(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    result = await sdk(gw).audio.translations.create(
        file=("a.wav", b"RIFF1234"), model="gpt-4o-mini"
    )
    assert result.text == "heard 8 bytes"
    assert fake.seen[0].path == "/v1/audio/translations"
    assert fake.seen[0].body["file"] == b"RIFF1234"


async def test_provider_text_answer_relayed(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    async def plain(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        return web.Response(text="hello there\n", content_type="text/plain")

    fake.then(plain)
    gw = await gateway(one_provider(fake.url))
    text = await sdk(gw).audio.transcriptions.create(
        file=("a.wav", b"RIFF"), model="gpt-4o-mini", response_format="text"
    )
    assert text.strip() == "hello there"
    assert fake.seen[0].body["response_format"] == "text"


async def test_model_after_file_in_the_form(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    form = aiohttp.FormData()
    form.add_field("file", SOUND, filename="late.ogg", content_type="audio/ogg")
    form.add_field("response_format", "json")
    form.add_field("model", "gpt-4o-mini")
    response = await gw.post(
        "/v1/audio/transcriptions", data=form, headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["text"] == f"heard {len(SOUND)} bytes"
    assert fake.seen[0].body["file"] == SOUND
    assert fake.seen[0].body["model"] == "gpt-4o-mini"


@translations_warn
async def test_mock_names_the_upload_size(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK)
    client = sdk(gw)
    result = await client.audio.transcriptions.create(file=("a.wav", SOUND), model="echo")
    assert result.text == f"mock transcription of {len(SOUND)} bytes"
    text = await client.audio.translations.create(
        file=("a.wav", b"12345"), model="echo", response_format="text"
    )
    assert text == "mock transcription of 5 bytes"
    verbose = await client.audio.transcriptions.create(
        file=("a.wav", b"123"), model="echo", response_format="verbose_json"
    )
    assert verbose.text == "mock transcription of 3 bytes"
    assert verbose.language == "english"


async def test_types_without_audio_are_skipped(gateway: Any, sdk: Any) -> None:
    gw = await gateway(anthropic_first("http://127.0.0.1:9"))
    result = await sdk(gw).audio.transcriptions.create(file=("a.wav", b"abcd"), model="media")
    assert result.text == "mock transcription of 4 bytes"


async def test_none_left_is_unsupported_endpoint(gateway: Any, sdk: Any) -> None:
    gw = await gateway(anthropic_first("http://127.0.0.1:9"))
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(gw).audio.transcriptions.create(file=("a.wav", b"abcd"), model="claude-only")
    body = refused.value.body
    assert body["code"] == "unsupported_endpoint"  # type: ignore[index]
    assert "/v1/audio/transcriptions" in body["message"]  # type: ignore[index]


async def test_missing_file_or_model_named(gateway: Any) -> None:
    gw = await gateway(MOCK)
    no_file = aiohttp.FormData({"model": "echo"}, default_to_multipart=True)
    response = await gw.post("/v1/audio/transcriptions", data=no_file)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "file"
    no_model = aiohttp.FormData()
    no_model.add_field("file", b"abc", filename="a.wav")
    response = await gw.post("/v1/audio/transcriptions", data=no_model)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "model"


async def test_a_part_header_that_does_not_parse_is_a_400(gateway: Any) -> None:
    gw = await gateway(MOCK)
    body = (
        b"--b\r\nContent-Disposition: form-data; name=\"\xf4\x87\x05\"\r\n\r\nx\r\n"
        b"--b--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    response = await gw.post("/v1/audio/transcriptions", data=body, headers=headers)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_request" and "multipart" in error["message"]


async def test_a_json_body_is_refused(gateway: Any) -> None:
    gw = await gateway(MOCK)
    response = await gw.post("/v1/audio/transcriptions", json={"model": "echo", "file": "x"})
    assert response.status == 400
    assert "multipart/form-data" in (await response.json())["error"]["message"]


async def test_declared_upload_over_the_limit_is_413(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK + "server:\n  max_upload_size: 1KiB\n")
    with pytest.raises(openai.APIStatusError) as refused:
        await sdk(gw).audio.transcriptions.create(file=("a.wav", b"x" * 2048), model="echo")
    assert refused.value.status_code == 413
    fits = await sdk(gw).audio.transcriptions.create(file=("a.wav", b"x" * 500), model="echo")
    assert fits.text == "mock transcription of 500 bytes"


async def test_chunked_upload_growing_past_the_limit_is_413(gateway: Any) -> None:
    gw = await gateway(MOCK + "server:\n  max_upload_size: 4KiB\n")

    async def body() -> Any:  # no Content-Length: sent chunked, cut by the gateway
        boundary = b"--b0undary"
        yield boundary + b'\r\nContent-Disposition: form-data; name="model"\r\n\r\necho\r\n'
        yield (
            boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        )
        for _ in range(8):
            yield b"y" * 1024
        yield b"\r\n" + boundary + b"--\r\n"

    response = await gw.post(
        "/v1/audio/transcriptions",
        data=body(),
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "request_too_large"


@translations_warn
async def test_limited_and_counted_under_audio(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK + "limits:\n  endpoints:\n    audio: {rpm: 1}\n")
    client = sdk(gw)
    await client.audio.transcriptions.create(file=("a.wav", b"1"), model="echo")
    with pytest.raises(openai.RateLimitError):
        await client.audio.translations.create(file=("a.wav", b"2"), model="echo")
    metrics = await (await gw.get("/metrics")).text()
    assert 'endpoint="audio"' in metrics


async def test_never_cached(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    gw = await gateway(one_provider(fake.url) + "cache:\n  enabled: true\n")
    client = sdk(gw)
    for _ in range(2):
        await client.audio.transcriptions.create(file=("a.wav", b"same"), model="gpt-4o-mini")
    assert len(fake.seen) == 2
