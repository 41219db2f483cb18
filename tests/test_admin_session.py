"""The dashboard's door (SPEC §14): its files under a strict CSP, sign-in with the admin
key into an HttpOnly SameSite=Strict session, CSRF on writes, forged and expired
cookies refused, and the live figures it draws (/api/v1/stats/live, /api/v1/requests).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from llmgw.auth.sessions import COOKIE
from llmgw.server.appkeys import SESSIONS

ADMIN_KEY = "adm-secret-1234"
KEYED = f"""
providers:
  demo: {{type: mock, models: [echo]}}
auth: {{admin_key: {ADMIN_KEY}}}
"""
OPEN = "providers:\n  demo: {type: mock, models: [echo]}\n"


async def sign_in(gw: Any, key: str = ADMIN_KEY) -> tuple[dict[str, str], str]:
    """Sign in; the session's cookie header (the client jar forgets it) and CSRF token."""
    response = await gw.post("/admin/session", json={"key": key})
    assert response.status == 200, await response.text()
    morsel = response.cookies[COOKIE]
    gw.session.cookie_jar.clear()
    return {"Cookie": f"{COOKIE}={morsel.value}"}, (await response.json())["csrf"]


async def test_pages_are_served_under_a_strict_csp(gateway: Any) -> None:
    gw = await gateway(KEYED)
    page = await gw.get("/admin")
    assert page.status == 200
    assert page.content_type == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    html = await page.text()
    # no inline script: every <script> names its file
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    script = await gw.get("/admin/app.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert "Content-Security-Policy" in script.headers
    for path in ("/admin/pages/keys.js", "/admin/charts.js", "/admin/app.css"):
        assert (await gw.get(path)).status == 200, path
    for path in ("/admin/../config/schema.py", "/admin/missing.js", "/admin/%2e%2e/app.py"):
        answer = await gw.get(path)
        assert answer.status == 404, path
        assert (await answer.json())["error"]["code"] == "not_found"


async def test_sign_in_sets_a_strict_httponly_cookie_that_opens_the_admin_api(
    gateway: Any,
) -> None:
    gw = await gateway(KEYED)
    assert (await (await gw.get("/admin/session")).json()) == {
        "signed_in": False,
        "admin_key_set": True,
    }
    response = await gw.post("/admin/session", json={"key": ADMIN_KEY})
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert ADMIN_KEY not in cookie and ADMIN_KEY not in await response.text()
    gw.session.cookie_jar.clear()
    headers = {"Cookie": f"{COOKIE}={response.cookies[COOKIE].value}"}
    status = await (await gw.get("/admin/session", headers=headers)).json()
    assert status["signed_in"] is True and status["csrf"]
    assert (await gw.get("/api/v1/providers/status", headers=headers)).status == 200
    assert (await gw.get("/api/v1/providers/status")).status == 401  # no cookie, no key


async def test_writes_need_the_sessions_csrf_token(gateway: Any) -> None:
    gw = await gateway(KEYED)
    cookie, csrf = await sign_in(gw)
    other_cookie, other_csrf = await sign_in(gw)
    refused = await gw.post("/api/v1/cache/clear", headers=cookie)
    assert refused.status == 403
    assert "CSRF" in (await refused.json())["error"]["message"]
    wrong = await gw.post("/api/v1/cache/clear", headers={**cookie, "X-CSRF-Token": other_csrf})
    assert wrong.status == 403
    # a cross-site POST: the browser says so, and the token is missing anyway
    cross = await gw.post(
        "/api/v1/config/reload",
        headers={**cookie, "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    )
    assert cross.status == 403
    done = await gw.post("/api/v1/cache/clear", headers={**cookie, "X-CSRF-Token": csrf})
    assert done.status == 200
    assert (await gw.get("/api/v1/config", headers=other_cookie)).status == 200


async def test_a_wrong_admin_key_is_refused_after_a_delay_and_counted(gateway: Any) -> None:
    gw = await gateway(KEYED)
    gw.server.app[SESSIONS].failure_delay = 0.3
    began = time.monotonic()
    response = await gw.post("/admin/session", json={"key": "guess"})
    assert time.monotonic() - began >= 0.3  # the delay is a floor, whatever the load
    assert response.status == 401
    assert COOKIE not in response.cookies
    assert "guess" not in await response.text()
    metrics = await (await gw.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})).text()
    assert "llmgw_admin_signin_failures_total 1.0" in metrics
    assert (await gw.post("/admin/session", data=b'{"key": 1}')).status == 400
    bad = await gw.post("/admin/session", data=b"not json", headers={"Content-Type": "application/json"})
    assert bad.status == 400 and "traceback" not in (await bad.text()).lower()


async def test_forged_expired_and_signed_out_cookies_are_refused(gateway: Any) -> None:
    gw = await gateway(KEYED)
    cookie, csrf = await sign_in(gw)
    value = cookie["Cookie"].split("=", 1)[1]
    sid, _, signature = value.partition(".")
    for forged in (f"{sid}.{'0' * len(signature)}", f"x{sid}.{signature}", sid, "garbage"):
        answer = await gw.get("/api/v1/config", headers={"Cookie": f"{COOKIE}={forged}"})
        assert answer.status == 401, forged
    sessions = gw.server.app[SESSIONS]
    now = time.time()
    sessions.clock = lambda: now + sessions.ttl + 1
    expired = await gw.get("/api/v1/config", headers=cookie)
    assert expired.status == 401
    assert "expired" in (await expired.json())["error"]["message"]
    sessions.clock = time.time
    cookie, csrf = await sign_in(gw)
    assert (await gw.delete("/admin/session", headers=cookie)).status == 403  # no token
    out = await gw.delete("/admin/session", headers={**cookie, "X-CSRF-Token": csrf})
    assert out.status == 200
    assert (await gw.get("/api/v1/config", headers=cookie)).status == 401


async def test_a_session_belongs_to_the_admin_key_that_opened_it(gateway: Any) -> None:
    gw = await gateway(KEYED)
    cookie, _ = await sign_in(gw)
    store = gw.server.app[SESSIONS]
    from llmgw.auth.sessions import grant_of

    value = cookie["Cookie"].split("=", 1)[1]
    assert store.find(value, grant_of(ADMIN_KEY)) is not None
    assert store.find(value, grant_of("another-key")) is None


async def test_without_admin_key_only_direct_loopback_signs_in(gateway: Any) -> None:
    gw = await gateway(OPEN)
    relayed = await gw.post(
        "/admin/session", json={"key": ""}, headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert relayed.status == 403
    cookie, _ = await sign_in(gw, key="")
    assert (await gw.get("/api/v1/config", headers=cookie)).status == 200
    via_proxy = await gw.get(
        "/api/v1/config", headers={**cookie, "X-Forwarded-For": "203.0.113.9"}
    )
    assert via_proxy.status == 403


async def test_live_stats_and_recent_requests(gateway: Any, sdk: Any) -> None:
    gw = await gateway(KEYED)
    client = sdk(gw, api_key="unused")
    for _ in range(3):
        await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    missing = await gw.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert missing.status == 404
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    live = await (await gw.get("/api/v1/stats/live?seconds=60", headers=admin)).json()
    assert len(live["seconds"]) == 60
    assert sum(s["requests"] for s in live["seconds"]) == 4
    assert any(s["p95_ms"] is not None for s in live["seconds"])
    recent = await (await gw.get("/api/v1/requests?limit=10", headers=admin)).json()
    assert [r["status"] for r in recent["data"]] == [404, 200, 200, 200]  # newest first
    newest_ok = recent["data"][1]  # the access line's fields, after when it ended
    assert list(newest_ok)[:3] == ["time", "request_id", "key"]
    assert abs(newest_ok["time"] - time.time()) < 600 and newest_ok["endpoint"] == "chat"
    only_ok = await (await gw.get("/api/v1/requests?status=2xx&model=echo", headers=admin)).json()
    assert len(only_ok["data"]) == 3 and all(r["model"] == "echo" for r in only_ok["data"])
    for bad in ("limit=0", "limit=abc", "seconds=100000", "status=abc"):
        path = "/api/v1/requests?" if "seconds" not in bad else "/api/v1/stats/live?"
        answer = await gw.get(path + bad, headers=admin)
        assert answer.status == 400, bad
    assert (await gw.get("/api/v1/stats/live")).status == 401


@pytest.mark.parametrize("path", ["/api/v1/stats/live", "/api/v1/requests"])
async def test_live_endpoints_are_admin_only(gateway: Any, path: str) -> None:
    gw = await gateway(KEYED)
    assert (await gw.get(path)).status == 401
    assert (await gw.get(path, headers={"Authorization": "Bearer wrong"})).status == 401
