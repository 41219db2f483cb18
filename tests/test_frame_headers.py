"""The gateway's own response headers (server/middleware.py ``add_headers``), at the
edges of the fast path that sets them: names that are not printable text."""

from __future__ import annotations

from tests.conftest import PROVIDER_KEY, GatewayFactory
from tests.fakes import FakeOpenAI

ASK = [{"role": "user", "content": "What is 2+2?"}]


def config(url: str, model: str) -> str:
    return f"""
providers:
  up: {{type: openai, base_url: {url}, api_key: {PROVIDER_KEY}, models: ["{model}"], max_retries: 0}}
"""


async def test_a_model_name_that_is_not_printable_yet_safe_is_still_named(
    gateway: GatewayFactory, fake: FakeOpenAI
) -> None:
    # U+00A0 (no-break space) is not "printable" to Python, yet no control character:
    # the header carries it, as it always did.
    model = "m\u00a0x"
    gw = await gateway(config(fake.url, "m\\u00a0x"))
    response = await gw.post("/v1/chat/completions", json={"model": model, "messages": ASK})
    assert response.status == 200
    assert response.headers["X-LLMGW-Provider"] == "up"
    raw = dict(response.raw_headers)
    assert raw[b"X-LLMGW-Model"] == model.encode("utf-8")
