"""Chat image URLs for providers that cannot fetch them (Gemini): fetched by the gateway
and sent as ``inlineData``, from public addresses only (SSRF guard), bounded in size,
redirects and type. The official openai SDK as the client, a fake Gemini upstream and
image servers on loopback; ``server.image_fetch_allow`` lets one loopback address
(127.0.0.2) stand in for a public host, everything else meets the real policy."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.conftest import PROVIDER_KEY
from tests.provider_fakes import FakeAnthropic, FakeGemini, serve

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
ALLOWED = "127.0.0.2"  # the public host's stand-in (allowed by the config)


class ImageHost:
    """An image server that records every request it receives."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.url = ""
        self.redirect_to = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{name}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        name = request.match_info["name"]
        if name == "cat.png":
            return web.Response(body=PNG, content_type="image/png")
        if name == "away":
            raise web.HTTPFound(self.redirect_to)
        if name.startswith("hop"):  # hop3 → hop2 → hop1 → hop0 → cat.png
            left = int(name[3:])
            raise web.HTTPFound("/cat.png" if left == 0 else f"/hop{left - 1}")
        if name == "page.html":
            return web.Response(text="<html></html>", content_type="text/html")
        if name == "huge.png":  # chunked, no Content-Length: bounded while reading
            response = web.StreamResponse(headers={"Content-Type": "image/png"})
            await response.prepare(request)
            block = b"\0" * (1024 * 1024)
            for _ in range(21):
                await response.write(block)
            return response
        raise web.HTTPNotFound()


async def host_on(aiohttp_server: Any, host: str) -> ImageHost:
    image_host = ImageHost()
    server = await aiohttp_server(image_host.app(), host=host)
    image_host.url = f"http://{host}:{server.port}"
    return image_host


@pytest.fixture
async def gemini(aiohttp_server: Any) -> FakeGemini:
    fake = FakeGemini()
    await serve(aiohttp_server, fake)
    return fake


@pytest.fixture
async def public(aiohttp_server: Any) -> ImageHost:
    """The stand-in for a public image host, on 127.0.0.2."""
    return await host_on(aiohttp_server, ALLOWED)


@pytest.fixture
async def private(aiohttp_server: Any) -> ImageHost:
    """An image server on 127.0.0.1, which the real policy refuses."""
    return await host_on(aiohttp_server, "127.0.0.1")


def config(gemini_url: str, allow: str = "") -> str:
    server = f"server:\n  image_fetch_allow: [{allow}]\n" if allow else ""
    return f"""{server}
providers:
  gem:
    type: gemini
    base_url: {gemini_url}/v1beta
    api_key: {PROVIDER_KEY}
    models: [gemini-2.5-flash]
    max_retries: 0
    timeout: 10s
"""


def asking(url: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
            ],
        },
    ]


async def refused(gw: Any, sdk: Any, url: str) -> str:
    """The 400 the gateway answers for an image at ``url``; its message."""
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gw).chat.completions.create(model="gemini-2.5-flash", messages=asking(url))
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "messages[1].content[1]"
    assert error["type"] == "invalid_request_error"
    return str(error["message"])


async def test_image_url_fetched_and_sent_inline(
    gemini: FakeGemini, public: ImageHost, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(gemini.url, f"{ALLOWED}/32"))
    url = f"{public.url}/hop2"  # two redirects, each hop checked, then the image
    completion = await sdk(gw).chat.completions.create(
        model="gemini-2.5-flash", messages=asking(url)
    )
    assert completion.choices[0].message.content
    assert public.hits == ["/hop2", "/hop1", "/hop0", "/cat.png"]
    assert gemini.problems == []
    parts = gemini.seen[0].body["contents"][0]["parts"]
    assert parts == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
    ]


@pytest.mark.parametrize(
    "where",
    [
        "http://127.0.0.1:{port}/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/cat.png",
        "http://localhost:{port}/cat.png",  # a name that resolves to loopback
        "http://[::ffff:127.0.0.1]:{port}/cat.png",
        "http://10.0.0.1/cat.png",
        "http://100.64.0.1/cat.png",
    ],
)
async def test_non_public_addresses_are_refused_unfetched(
    gemini: FakeGemini, private: ImageHost, gateway: Any, sdk: Any, where: str
) -> None:
    gw = await gateway(config(gemini.url))  # the real policy
    port = private.url.rsplit(":", 1)[1]
    message = await refused(gw, sdk, where.format(port=port))
    assert "refused" in message and "public address" in message
    assert private.hits == []
    assert gemini.seen == []


async def test_redirect_to_loopback_is_refused(
    gemini: FakeGemini, public: ImageHost, private: ImageHost, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(gemini.url, f"{ALLOWED}/32"))
    for target in (f"{private.url}/cat.png", private.url.replace("127.0.0.1", "localhost")):
        public.redirect_to = target
        message = await refused(gw, sdk, f"{public.url}/away")
        assert "refused" in message
    assert public.hits == ["/away", "/away"]  # the allowed first hop, each time
    assert private.hits == []
    assert gemini.seen == []


async def test_bounds_of_a_fetch(
    gemini: FakeGemini, public: ImageHost, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(gemini.url, f"{ALLOWED}/32"))
    assert "redirects" in await refused(gw, sdk, f"{public.url}/hop3")  # 4 redirects
    assert "not an image" in await refused(gw, sdk, f"{public.url}/page.html")
    assert "larger than" in await refused(gw, sdk, f"{public.url}/huge.png")
    assert "404" in await refused(gw, sdk, f"{public.url}/missing.png")
    assert gemini.seen == []


async def test_anthropic_fetches_urls_itself(
    claude: FakeAnthropic, public: ImageHost, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(
        f"""
providers:
  claude:
    type: anthropic
    base_url: {claude.url}
    api_key: {PROVIDER_KEY}
    models: [claude-haiku-4-5]
    max_retries: 0
"""
    )
    url = f"{public.url}/cat.png"
    await sdk(gw).chat.completions.create(model="claude-haiku-4-5", messages=asking(url))
    assert public.hits == []
    image = claude.seen[0].body["messages"][0]["content"][1]
    assert image == {"type": "image", "source": {"type": "url", "url": url}}


async def test_refused_images_do_not_open_the_circuit(
    gemini: FakeGemini, private: ImageHost, gateway: Any, sdk: Any
) -> None:
    """The request was at fault, not Gemini: past the breaker's threshold (5) of refused
    images, a good request is still served."""
    gw = await gateway(config(gemini.url))
    for _ in range(6):
        await refused(gw, sdk, f"{private.url}/cat.png")
    completion = await sdk(gw).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "echo: hi"
    assert private.hits == []
