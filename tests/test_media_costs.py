"""Cost of the endpoints not priced by the token (SPEC §5, §12), with the official
openai SDK against a fake OpenAI: transcriptions and translations per minute of the
audio the provider reports (none reported: no cost, not a guess), speech per
character, images per image returned (or by the tokens a token-priced model reports)
— in the metric, the usage totals, the access log and the key's budget."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from llmgw.config import ConfigError, parse
from tests.conftest import CLIENT_KEY, provider_config
from tests.fakes import FakeOpenAI, reply_json, wait_for
from tests.test_media import AUDIO, audio_reply
from tests.test_usage import usage_of

ADMIN = "admin-secret-1"
MODELS = "whisper-1, tts-1, dall-e-3, dall-e-2, gpt-image-1"
METRIC = 'llmgw_cost_usd_total{{key="team-a",model="{model}",provider="up"}} {cost}'


def media_config(url: str, extra: str = "") -> str:
    return (
        provider_config(url, "up", "openai", MODELS, max_retries=0)
        + f"""
auth:
  admin_key: {ADMIN}
  keys:
    - {{name: team-a, key: {CLIENT_KEY}}}
{extra}"""
    )


async def metrics_of(gw: Any) -> str:
    text: str = await (
        await gw.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    ).text()
    return text


async def access_costs(caplog: Any, count: int) -> list[float | None]:
    def lines() -> list[Any]:
        return [r for r in caplog.records if r.name == "llmgw.access"]

    await wait_for(lambda: len(lines()) >= count)
    return [r.cost_usd for r in lines()]


async def test_transcription_costs_the_reported_minutes(
    fake: FakeOpenAI, gateway: Any, sdk: Any, caplog: Any
) -> None:
    caplog.set_level("INFO", logger="llmgw.access")
    fake.then(
        reply_json({"text": "hello", "usage": {"type": "duration", "seconds": 90}}),
        reply_json({"text": "hello", "language": "en", "duration": 30.0, "segments": []}),
    )
    gw = await gateway(media_config(fake.url))
    client = sdk(gw)
    await client.audio.transcriptions.create(file=("a.wav", b"RIFF"), model="whisper-1")
    verbose = await client.audio.transcriptions.create(
        file=("a.wav", b"RIFF"), model="whisper-1", response_format="verbose_json"
    )
    assert verbose.duration == 30.0
    # whisper-1 at its list price, $0.006 a minute: 1.5 minutes, then half a minute
    assert await access_costs(caplog, 2) == [pytest.approx(0.009), pytest.approx(0.003)]
    report = await usage_of(gw)
    assert report["models"]["whisper-1"]["cost_usd"] == pytest.approx(0.012)
    assert report["keys"]["team-a"]["cost_usd"] == pytest.approx(0.012)
    assert METRIC.format(model="whisper-1", cost=0.012) in await metrics_of(gw)


async def test_transcript_without_a_duration_has_no_cost(
    fake: FakeOpenAI, gateway: Any, sdk: Any, caplog: Any
) -> None:
    caplog.set_level("INFO", logger="llmgw.access")
    gw = await gateway(media_config(fake.url))
    fake.then(reply_json({"text": "no usage here"}))
    await sdk(gw).audio.transcriptions.create(file=("a.wav", b"RIFF"), model="whisper-1")
    assert await access_costs(caplog, 1) == [None]  # not guessed
    report = await usage_of(gw)
    assert report["total"]["requests"] == 1
    assert report["total"]["cost_usd"] == 0
    assert 'llmgw_cost_usd_total{key="team-a",model="whisper-1"' not in await metrics_of(gw)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
async def test_translation_costs_by_a_configured_minute_price(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    fake.then(reply_json({"text": "hi", "usage": {"type": "duration", "seconds": 120}}))
    gw = await gateway(media_config(fake.url, "prices:\n  whisper-1: {per_minute: 0.01}\n"))
    await sdk(gw).audio.translations.create(file=("a.wav", b"RIFF"), model="whisper-1")
    assert (await usage_of(gw))["total"]["cost_usd"] == pytest.approx(0.02)


async def test_speech_costs_its_characters(
    fake: FakeOpenAI, gateway: Any, sdk: Any, caplog: Any
) -> None:
    caplog.set_level("INFO", logger="llmgw.access")
    fake.then(audio_reply())
    gw = await gateway(media_config(fake.url))
    speech = await sdk(gw).audio.speech.create(model="tts-1", voice="alloy", input="é" * 1000)
    assert speech.content == b"".join(AUDIO)
    # tts-1 at its list price, $15 per 1M characters
    assert await access_costs(caplog, 1) == [pytest.approx(0.015)]
    assert (await usage_of(gw))["models"]["tts-1"]["cost_usd"] == pytest.approx(0.015)
    assert METRIC.format(model="tts-1", cost=0.015) in await metrics_of(gw)


async def test_images_cost_per_image_returned(fake: FakeOpenAI, gateway: Any, sdk: Any) -> None:
    two = {"created": 1, "data": [{"url": "https://x.test/1.png"}, {"url": "https://x.test/2.png"}]}
    fake.then(reply_json(two), reply_json(two))
    gw = await gateway(media_config(fake.url, "prices:\n  dall-e-2: {per_image: 0.05}\n"))
    client = sdk(gw)
    # dall-e-3's list price depends on the size: $0.08 an image at 1024x1792
    await client.images.generate(model="dall-e-3", prompt="a cat", size="1024x1792", n=2)
    await client.images.generate(model="dall-e-2", prompt="a cat", n=2)  # configured: $0.05
    report = await usage_of(gw)
    assert report["models"]["dall-e-3"]["cost_usd"] == pytest.approx(0.16)
    assert report["models"]["dall-e-2"]["cost_usd"] == pytest.approx(0.10)
    metrics = await metrics_of(gw)
    assert METRIC.format(model="dall-e-3", cost=0.16) in metrics
    assert METRIC.format(model="dall-e-2", cost=0.1) in metrics


async def test_token_priced_images_cost_their_reported_tokens(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    answer = {
        "created": 1,
        "data": [{"b64_json": "aGk="}],
        "usage": {"input_tokens": 100, "output_tokens": 1000, "total_tokens": 1100},
    }
    fake.then(reply_json(answer))
    gw = await gateway(media_config(fake.url))
    await sdk(gw).images.generate(model="gpt-image-1", prompt="a cat")
    # gpt-image-1: $5 per 1M tokens in, $40 out
    expected = (100 * 5 + 1000 * 40) / 1e6
    assert (await usage_of(gw))["models"]["gpt-image-1"]["cost_usd"] == pytest.approx(expected)


@pytest.mark.parametrize("unit", ["per_minute", "per_1m_characters", "per_image", "input"])
def test_negative_price_is_a_config_error_naming_the_key(unit: str) -> None:
    other = ", output: 1" if unit == "input" else ""
    text = f"providers:\n  demo: {{type: mock, models: [echo]}}\nprices:\n  m1: {{{unit}: -1{other}}}\n"
    with pytest.raises(ConfigError) as raised:
        parse(text, environ={})
    assert f"prices.m1.{unit}: Input should be greater than or equal to 0" in str(raised.value)


def test_a_price_names_a_unit() -> None:
    with pytest.raises(ConfigError) as raised:
        parse("providers:\n  demo: {type: mock, models: [echo]}\nprices:\n  m1: {}\n", environ={})
    assert "prices.m1" in str(raised.value)


async def test_a_transcription_spends_the_key_budget(
    fake: FakeOpenAI, gateway: Any, sdk: Any, tmp_path: Any
) -> None:
    fake.then(reply_json({"text": "hi", "usage": {"type": "duration", "seconds": 120}}))
    config = (
        provider_config(fake.url, "up", "openai", "whisper-1", max_retries=0)
        + f"""
database: {{url: "sqlite:///{tmp_path / "b.db"}"}}
auth:
  admin_key: {ADMIN}
  keys:
    - {{name: team-a, key: {CLIENT_KEY}, budget: {{monthly_usd: 0.01}}}}
"""
    )
    gw = await gateway(config)
    client = sdk(gw)
    await client.audio.transcriptions.create(file=("a.wav", b"RIFF"), model="whisper-1")
    with pytest.raises(openai.RateLimitError) as refused:  # 2 minutes: $0.012 > $0.01
        await client.audio.transcriptions.create(file=("a.wav", b"RIFF"), model="whisper-1")
    assert refused.value.code == "budget_exceeded"
    assert len(fake.seen) == 1
    report = await (
        await gw.get("/api/v1/budget", headers={"Authorization": f"Bearer {ADMIN}"})
    ).json()
    (entry,) = [b for b in report["budgets"] if b["scope"] == "key:team-a"]
    assert entry["spent_usd"] == pytest.approx(0.012)
