"""Cost of the endpoints not priced by the token (SPEC §5, §12): audio transcribed or
translated (per minute, from the duration the provider reports), speech (per 1M
characters of ``input``), images (per image returned).

Pure functions over the request's body and the provider's parsed answer. Where the
measure is missing (a transcript answered as ``text``, ``srt`` or ``vtt`` reports no
duration), the cost is unknown (``None``), never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from llmgw.core import Call

NANO = 1_000_000_000
UNIT_ENDPOINTS = frozenset({"audio_transcriptions", "audio_translations", "audio_speech", "images"})
_AUDIO_IN = frozenset({"audio_transcriptions", "audio_translations"})


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """USD per minute of audio in, per 1M characters of speech, per image; an image's
    price may depend on its ``quality`` and ``size`` (``per_image_by``), the request's
    or else the model's defaults."""

    per_minute: float | None = None
    per_1m_characters: float | None = None
    per_image: float | None = None
    per_image_by: Mapping[tuple[str, str], float] = field(
        default_factory=lambda: MappingProxyType({})
    )
    default_quality: str = "standard"
    default_size: str = "1024x1024"

    def image_price(self, body: Mapping[str, Any]) -> float | None:
        quality = body.get("quality") or self.default_quality
        size = body.get("size") or self.default_size
        if isinstance(quality, str) and isinstance(size, str):
            found = self.per_image_by.get((quality, size))
            if found is not None:
                return found
        return self.per_image if not self.per_image_by else None


# List prices as published on platform.openai.com/docs/pricing (2026-11-23), for the
# models priced per unit. gpt-image-1 and gpt-4o-mini-tts are priced by the token
# (gpt-image-1's answers report their tokens: see DEFAULT_PRICES in usage.py;
# gpt-4o-mini-tts's audio answer reports none, so it has no built-in price).
DEFAULT_UNIT_PRICES: Mapping[str, UnitPrice] = MappingProxyType(
    {
        "whisper-1": UnitPrice(per_minute=0.006),
        "tts-1": UnitPrice(per_1m_characters=15.00),
        "tts-1-hd": UnitPrice(per_1m_characters=30.00),
        "dall-e-2": UnitPrice(
            per_image_by=MappingProxyType(
                {
                    ("standard", "1024x1024"): 0.020,
                    ("standard", "512x512"): 0.018,
                    ("standard", "256x256"): 0.016,
                }
            )
        ),
        "dall-e-3": UnitPrice(
            per_image_by=MappingProxyType(
                {
                    ("standard", "1024x1024"): 0.040,
                    ("standard", "1024x1792"): 0.080,
                    ("standard", "1792x1024"): 0.080,
                    ("hd", "1024x1024"): 0.080,
                    ("hd", "1024x1792"): 0.120,
                    ("hd", "1792x1024"): 0.120,
                }
            )
        ),
    }
)


def unit_cost_nano(price: UnitPrice, call: Call, answer: Mapping[str, Any] | None) -> int | None:
    """The cost in nano-USD of ``call`` answered with ``answer`` (its parsed JSON), or
    None when this price or the answer lacks what it takes. Without an answer (at
    admission) an image request is costed at the ``n`` it asks for."""
    if call.endpoint == "audio_speech":
        text = call.body.get("input")
        if price.per_1m_characters is None or not isinstance(text, str):
            return None
        return round(len(text) * price.per_1m_characters * 1000)
    if call.endpoint in _AUDIO_IN:
        seconds = audio_seconds(answer)
        if price.per_minute is None or seconds is None:
            return None
        return round(seconds * price.per_minute * NANO / 60)
    if call.endpoint == "images":
        each = price.image_price(call.body)
        count = image_count(answer) if answer is not None else _asked_images(call.body)
        if each is None or count is None:
            return None
        return round(count * each * NANO)
    return None


def audio_seconds(answer: Mapping[str, Any] | None) -> float | None:
    """The audio's duration as the provider reports it: ``usage: {type: "duration",
    seconds}`` (newer answers), else ``duration`` (``verbose_json``)."""
    if answer is None:
        return None
    usage = answer.get("usage")
    if isinstance(usage, dict) and usage.get("type") == "duration":
        seconds = _seconds(usage.get("seconds"))
        if seconds is not None:
            return seconds
    return _seconds(answer.get("duration"))


def image_count(answer: Mapping[str, Any]) -> int | None:
    data = answer.get("data")
    return len(data) if isinstance(data, list) else None


def _asked_images(body: Mapping[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _seconds(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
