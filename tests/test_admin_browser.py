"""The dashboard in a real browser (SPEC §14): Debian's chromium driven by Playwright.

Sign in (a wrong key first), open every page with no console error, look at it at a
laptop and a phone width, stream a chat in the playground, and manage a key where the
gateway has managed keys. Screenshots go to the test's temporary folder (and, when
``LLMGW_SCREENSHOTS`` names a folder, are copied there too).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from llmgw.app import create_app
from llmgw.config import parse
from llmgw.server.lifecycle import handler_options

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"no {CHROMIUM}: install Debian's chromium (.ci/run does) to run the browser tests",
        allow_module_level=True,
    )
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="the playwright package is in the test extras"
)

ADMIN_KEY = "adm-browser-5678"
CONFIG = f"""
providers:
  demo: {{type: mock, models: [echo], chunk_delay: 5ms}}
models:
  smart: [demo/echo]
auth: {{admin_key: {ADMIN_KEY}}}
"""
PAGES = ["overview", "providers", "keys", "usage", "requests", "config", "playground"]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as driver:
        instance = await driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()


class Console:
    """Console errors and uncaught exceptions of a page, but for the expected 404 of
    /api/v1/keys on a gateway without managed keys (the page says so instead)."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        if "404" in message.text and url.endswith("/api/v1/keys"):
            return
        self.errors.append(f"{message.text} ({url})")


async def signed_in_page(browser: Any, base: str, width: int = 1280, height: int = 860) -> Any:
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    await page.goto(f"{base}/admin")
    await page.get_by_label("Admin key").fill(ADMIN_KEY)
    await page.get_by_label("Admin key").press("Enter")  # the keyboard is enough
    await page.get_by_role("navigation", name="Dashboard pages").wait_for()
    return page


def keep(shot: Path) -> None:
    target = os.environ.get("LLMGW_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)


async def test_sign_in_and_every_page_without_console_errors(
    aiohttp_client: Any, sdk: Any, browser: Any, tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    app = create_app(parse(CONFIG, environ={}), config_path=str(path), config_text=CONFIG)
    server = TestServer(app)
    await server.start_server(**handler_options())
    gw = await aiohttp_client(server)
    base = str(gw.make_url("")).rstrip("/")
    client = sdk(gw, api_key="unused")
    for _ in range(5):
        await client.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "hello there"}]
        )

    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    await page.goto(f"{base}/admin")
    await page.get_by_label("Admin key").fill("not-the-key")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("alert").filter(has_text="not the admin key").wait_for()
    console = Console(page)  # the refused sign-in's 401 above is expected
    await page.get_by_label("Admin key").fill(ADMIN_KEY)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("navigation", name="Dashboard pages").wait_for()
    assert ADMIN_KEY not in await page.content()
    cookies = await context.cookies()
    [session] = [c for c in cookies if c["name"] == "llmgw_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # script cannot read it

    for name in PAGES:
        await page.get_by_role("link", name=_link(name)).click()
        await page.get_by_role("heading", level=1).filter(has_text=_title(name)).wait_for()
        await page.wait_for_load_state("networkidle")
        shot = tmp_path / f"{name}.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 0
    assert console.errors == []

    await page.get_by_role("link", name="Overview").click()
    await page.get_by_text("Requests per second", exact=True).wait_for()
    figure = page.locator("section[aria-label='Requests/s (10 s)'] .figure")
    assert float(await figure.inner_text()) > 0
    await page.get_by_role("link", name="Requests").click()
    await page.get_by_text("5 requests, newest first").wait_for()
    await page.get_by_role("link", name="Config").click()
    await page.get_by_role("button", name="Reload config now").click()
    await page.get_by_text("Reload: unchanged").wait_for()  # a CSRF-guarded write worked
    assert console.errors == []

    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("Admin key").wait_for()
    assert not [c for c in await context.cookies() if c["name"] == "llmgw_session"]
    await context.close()


async def test_playground_streams_a_chat_and_shows_the_routing(
    gateway: Any, browser: Any, tmp_path: Path
) -> None:
    gw = await gateway(CONFIG)
    page = await signed_in_page(browser, str(gw.make_url("")).rstrip("/"))
    console = Console(page)
    await page.get_by_role("link", name="Playground").click()
    await page.get_by_label("Model or alias").fill("smart")
    await page.get_by_label("Message").fill("stream me a few words please")
    await page.get_by_role("button", name="Send").click()
    route = page.locator("#pg-route")
    await route.wait_for()
    assert "smart → demo/echo after 1 attempt(s)" in await route.inner_text()
    answer = await page.locator("#pg-answer").inner_text()
    assert "stream me a few words please" in answer
    headers = await page.locator("#pg-headers").inner_text()
    assert "x-llmgw-provider" in headers.lower() and "demo" in headers
    shot = tmp_path / "playground.png"
    await page.screenshot(path=str(shot), full_page=True)
    keep(shot)
    await page.get_by_role("link", name="Overview").click()
    await page.get_by_text("Requests per second", exact=True).wait_for()
    await page.wait_for_load_state("networkidle")
    overview = tmp_path / "overview.png"
    await page.screenshot(path=str(overview), full_page=True)
    keep(overview)
    assert console.errors == []


async def test_readable_at_a_phone_width(gateway: Any, browser: Any, tmp_path: Path) -> None:
    gw = await gateway(CONFIG)
    page = await signed_in_page(browser, str(gw.make_url("")).rstrip("/"), 390, 844)
    for name in ("overview", "providers", "playground"):
        await page.goto(f"{str(gw.make_url('')).rstrip('/')}/admin#/{name}")
        await page.get_by_role("heading", level=1).filter(has_text=_title(name)).wait_for()
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at 390px"
        await page.screenshot(path=str(tmp_path / f"phone-{name}.png"), full_page=True)


async def test_keys_create_use_and_revoke(
    gateway: Any, sdk: Any, browser: Any, tmp_path: Path
) -> None:
    gw = await gateway(CONFIG)
    probe = await gw.get("/api/v1/keys", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    page = await signed_in_page(browser, str(gw.make_url("")).rstrip("/"))
    await page.get_by_role("link", name="Keys").click()
    if probe.status == 404:
        await page.get_by_text("Managed keys not available").wait_for()
        await page.screenshot(path=str(tmp_path / "keys-unavailable.png"))
        pytest.skip(
            "this gateway has no managed keys (POST/GET/DELETE /api/v1/keys, SPEC §11): "
            "the page says so; create/use/revoke runs where they exist"
        )
    await page.get_by_label("Name", exact=True).fill("browser-made")
    await page.get_by_role("button", name="Create key").click()
    secret = await page.locator("#new-key").inner_text()
    assert secret
    client = sdk(gw, api_key=secret)
    await client.chat.completions.create(
        model="smart", messages=[{"role": "user", "content": "hi"}]
    )
    await page.reload()
    row = page.get_by_role("row").filter(has_text="browser-made")
    await row.wait_for()
    assert "#new-key" not in await page.content() or secret not in await page.content()
    page.on("dialog", lambda dialog: dialog.accept())
    await row.get_by_role("button", name="Revoke browser-made").click()
    await row.wait_for(state="detached")
    refused = await gw.post(
        "/v1/chat/completions",
        json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert refused.status == 401


def _link(name: str) -> str:
    return {"usage": "Usage & cost"}.get(name, name.capitalize())


def _title(name: str) -> str:
    return {
        "usage": "Usage and cost",
        "requests": "Recent requests",
    }.get(name, name.capitalize())
