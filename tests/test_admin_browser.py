"""The dashboard in a real browser (SPEC §14): Debian's chromium driven by Playwright.

Sign in (a wrong key first), open every page with no console error, look at it at a
laptop and a phone width, stream a chat in the playground, and create, use and revoke a
managed key on a gateway with a database (SPEC §11). Screenshots go to the test's temporary folder (and, when
``LLMGW_SCREENSHOTS`` names a folder, are copied there too).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
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
# A managed-keys gateway: a database in the test's folder and one configured key.
KEYS_CONFIG = f"""
providers:
  demo: {{{{type: mock, models: [echo], chunk_delay: 5ms}}}}
models:
  smart: [demo/echo]
auth: {{{{admin_key: {ADMIN_KEY}, keys: [{{{{name: team-a, key: sk-team-a-1234}}}}]}}}}
database: {{{{url: "sqlite:///{{db}}"}}}}
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
    tops = await page.locator("main .grid").first.locator(":scope > .card").evaluate_all(
        "cards => cards.map((card) => card.getBoundingClientRect().top)"
    )
    assert len(tops) == 4 and len(set(tops[:3])) == 1, tops  # a row of cards stays level
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
    """SPEC §11 managed keys from the Keys page, on a gateway with a database: the key
    is shown once, works over the API, its usage and budget show on the page, and it is
    refused within a second of its revocation."""
    gw = await gateway(KEYS_CONFIG.format(db=tmp_path / "keys.db"))
    page = await signed_in_page(browser, str(gw.make_url("")).rstrip("/"))
    console = Console(page)
    await page.get_by_role("link", name="Keys").click()
    await page.get_by_role("heading", level=2).filter(has_text="Client keys").wait_for()
    configured = page.get_by_role("row").filter(has_text="team-a")
    assert "in the config file" in await configured.inner_text()
    assert await configured.get_by_role("button").count() == 0  # not revocable here

    await page.get_by_label("Name", exact=True).fill("browser-made")
    await page.get_by_label("Monthly budget (USD)").fill("5")
    await page.get_by_role("button", name="Create key").click()
    secret = await page.locator("#new-key").inner_text()
    assert secret.startswith("sk-llmgw-")
    made = page.get_by_role("row").filter(has_text="browser-made")
    await made.get_by_role("cell", name="$0.00 of $5.00").wait_for()  # its budget at once
    await page.wait_for_load_state("networkidle")
    shot = tmp_path / "keys.png"
    await page.screenshot(path=str(shot), full_page=True)
    keep(shot)

    client = sdk(gw, api_key=secret)
    answer = await client.chat.completions.create(
        model="smart",
        messages=[{"role": "user", "content": "hi from the new key"}],
        extra_body={"x-gateway": {"metadata": {"feature": "browser-test"}}},
    )
    assert "hi from the new key" in (answer.choices[0].message.content or "")
    changed = await gw.patch(
        "/api/v1/keys/browser-made",
        json={"expires_at": "2099-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert changed.status == 200
    await page.reload()
    row = page.get_by_role("row").filter(has_text="browser-made")
    await row.wait_for()
    assert secret not in await page.content()  # shown once
    cells = await row.get_by_role("cell").all_inner_texts()
    assert cells[1:3] == ["all", "1"] and cells[4] == "$0.00 of $5.00", cells
    assert cells[5] == "2099-01-01 00:00 UTC", cells  # a date, not epoch seconds
    await page.get_by_role("link", name="Usage & cost").click()
    by_key = page.get_by_role("img", name="Requests by key")
    await by_key.wait_for()
    assert "browser-made 1" in (await by_key.get_attribute("aria-label") or "")
    await page.get_by_role("textbox", name="Group by tag").fill("feature")
    await page.get_by_role("button", name="Show").click()
    by_tag = page.get_by_role("img", name="Cost by tag feature")
    await by_tag.wait_for()
    assert "browser-test $0.00" in (await by_tag.get_attribute("aria-label") or "")

    await page.get_by_role("link", name="Keys").click()
    page.on("dialog", lambda dialog: dialog.accept())
    await row.get_by_role("button", name="Revoke browser-made").click()
    await row.wait_for(state="detached")
    refused = None
    for _ in range(20):  # within a second
        try:
            await client.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.AuthenticationError as error:
            refused = error
            break
        await asyncio.sleep(0.05)
    assert refused is not None and refused.status_code == 401
    assert console.errors == []


def _link(name: str) -> str:
    return {"usage": "Usage & cost"}.get(name, name.capitalize())


def _title(name: str) -> str:
    return {
        "usage": "Usage and cost",
        "requests": "Recent requests",
    }.get(name, name.capitalize())
