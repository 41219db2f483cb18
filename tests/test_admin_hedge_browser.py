"""The dashboard shows what a hedged request's losing racers cost (SPEC §14, §11): in a
real browser (Debian's chromium driven by Playwright, as tests/test_admin_browser.py),
the Recent requests row of a request with hedge losers carries a marker with their
count, and its detail lists each loser's provider/model, tokens and cost with the
request's total spend; a request without losers shows none. The Usage page and the
Overview's cost today agree with /api/v1/usage, losers' spend included. Without a
database (the first-run setup) the same marker shows from this process's memory, the
Overview's cost today is this process's with the losers' spend, and the Usage page asks
no ledger URL (none answers 404, no console error)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.conftest import GatewayFactory
from tests.test_admin_browser import ADMIN_KEY, Console, browser, keep, signed_in_page
from tests.test_hedge_live import race_and_solo

__all__ = ["browser"]  # the fixture, shared with tests/test_admin_browser.py
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def usd(value: float) -> str:
    """The dashboard's money format (lib.js ``usd``)."""
    return f"${value:.6f}" if 0 < value < 0.01 else f"${value:.2f}"


async def _get(gw: Any, path: str) -> Any:
    response = await gw.get(path, headers=ADMIN)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_requests_page_shows_hedge_losers_and_their_spend(
    gateway: GatewayFactory, make_fake: Any, sdk: Any, browser: Any, tmp_path: Path
) -> None:
    gw = await race_and_solo(gateway, make_fake, sdk, tmp_path / "ledger.db", admin_key=ADMIN_KEY)
    recent = await _get(gw, "/api/v1/requests")
    assert recent["source"] == "database"  # how the Overview knows to read the ledger
    solo, chain = recent["data"]
    assert (solo["model"], solo["hedge_losers"]) == ("solo", [])
    (loser,) = chain["hedge_losers"]
    assert loser["provider"] == "a" and loser["cost_usd"] > 0
    day = datetime.now(UTC).date().isoformat()
    usage = await _get(gw, f"/api/v1/usage?from={day}&group_by=model")
    by_model = {g["model"]: g for g in usage["groups"]}
    assert by_model["chain"]["cost_usd"] > chain["cost_usd"]  # the loser's spend is billed

    page = await signed_in_page(browser, str(gw.make_url("")).rstrip("/"))
    console = Console(page)
    await page.get_by_role("link", name="Requests").click()
    await page.get_by_text("2 requests, newest first").wait_for()
    listed = page.get_by_role("table").first.locator(":scope > tbody > tr")
    solo_row = listed.filter(has_text=solo["request_id"])
    chain_row = listed.filter(has_text=chain["request_id"])
    # Without losers: the cost alone, as before; with: the marker and its count.
    assert await solo_row.locator(".hedge").count() == 0
    solo_cells = await solo_row.locator(":scope > td").all_inner_texts()
    assert solo_cells[9] == usd(solo["cost_usd"]), solo_cells
    marker = chain_row.locator("summary")
    assert await marker.inner_text() == f"{usd(chain['cost_usd'])} +1 hedge loser"
    detail = chain_row.locator("details.hedge table")
    assert not await detail.is_visible()
    await marker.click()
    await detail.wait_for()
    answered, racer = await detail.locator("tbody tr").all()
    assert await answered.locator("td").all_inner_texts() == [
        "answered",
        "b / m-b",
        f"{chain['prompt_tokens']} / {chain['completion_tokens']}",
        usd(chain["cost_usd"]),
    ]
    assert await racer.locator("td").all_inner_texts() == [
        "hedge loser",
        "a / m-a",
        f"{loser['prompt_tokens']} / {loser['completion_tokens']}",
        usd(loser["cost_usd"]),
    ]
    spent = by_model["chain"]  # the request and its loser
    tokens = spent["prompt_tokens"] + spent["completion_tokens"]
    total = chain_row.locator("details.hedge .total")
    assert await total.inner_text() == (
        f"Total spend {usd(spent['cost_usd'])}, {tokens} tokens (all counted in usage)"
    )
    shot = tmp_path / "requests-hedge.png"
    await page.screenshot(path=str(shot), full_page=True)
    keep(shot)

    # The Usage page (the ledger) and the Overview's cost today: /api/v1/usage's figures.
    await page.get_by_role("link", name="Usage & cost").click()
    figure = "section[aria-label='{}'] .figure"
    await page.locator(figure.format("Requests")).filter(has_text="2").wait_for()
    assert await page.locator(figure.format("Cost")).inner_text() == usd(usage["total"]["cost_usd"])
    tokens_all = usage["total"]["prompt_tokens"] + usage["total"]["completion_tokens"]
    assert await page.locator(figure.format("Tokens")).inner_text() == str(tokens_all)
    await page.get_by_role("link", name="Overview").click()
    today = page.locator(figure.format("Cost today (UTC)"))
    await today.wait_for()
    assert await today.inner_text() == usd(usage["total"]["cost_usd"])
    hint = page.locator("section[aria-label='Cost today (UTC)'] .muted")
    assert await hint.inner_text() == "every replica, from the ledger"
    assert console.errors == []


async def test_without_a_database_the_marker_shows_and_usage_asks_no_ledger(
    gateway: GatewayFactory, make_fake: Any, sdk: Any, browser: Any
) -> None:
    gw = await race_and_solo(gateway, make_fake, sdk, None, admin_key=ADMIN_KEY)
    recent = await _get(gw, "/api/v1/requests")
    assert recent["source"] == "memory"
    _, chain = recent["data"]
    (loser,) = chain["hedge_losers"]
    usage = await _get(gw, "/api/v1/usage")  # this process's totals, the loser's included

    page = await signed_in_page(browser, str(gw.make_url("")).rstrip("/"))
    console = Console(page)
    failed: list[str] = []  # any answer of 400 or more, whether or not the console says so
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    figure = "section[aria-label='{}'] .figure"
    today = page.locator(figure.format("Cost today (UTC)"))
    await today.wait_for()  # the Overview: this process's cost today, the loser's with it
    assert await today.inner_text() == usd(usage["total"]["cost_usd"])
    hint = page.locator("section[aria-label='Cost today (UTC)'] .muted")
    assert await hint.inner_text() == "this process"
    await page.get_by_role("link", name="Requests").click()
    await page.get_by_text("2 requests, newest first").wait_for()
    chain_row = (
        page.get_by_role("table")
        .first.locator(":scope > tbody > tr")
        .filter(has_text=chain["request_id"])
    )
    marker = chain_row.locator("summary")
    assert await marker.inner_text() == f"{usd(chain['cost_usd'])} +1 hedge loser"
    await marker.click()
    racer = chain_row.locator("details.hedge table tbody tr").nth(1)
    assert await racer.locator("td").all_inner_texts() == [
        "hedge loser",
        "a / m-a",
        f"{loser['prompt_tokens']} / {loser['completion_tokens']}",
        usd(loser["cost_usd"]),
    ]
    await page.get_by_role("link", name="Usage & cost").click()
    await page.locator(figure.format("Requests")).filter(has_text="2").wait_for()
    await page.wait_for_load_state("networkidle")
    assert await page.locator(figure.format("Cost")).inner_text() == usd(usage["total"]["cost_usd"])
    assert console.errors == [] and failed == []
