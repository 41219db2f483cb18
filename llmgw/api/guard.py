"""The admin API's guard, bound to the running config's ``auth.admin_key``.

Two ways in: ``Authorization: Bearer <admin_key>`` (or, with no key set, a direct
loopback connection), as ``auth.admin`` checks; or the dashboard's session cookie
(``auth.sessions``), whose writes must carry the session's CSRF token. A session
opened without an admin key still answers only direct loopback connections.
"""

from __future__ import annotations

from aiohttp import web

from llmgw.auth.admin import check_admin
from llmgw.auth.sessions import COOKIE, CSRF_HEADER, grant_of
from llmgw.errors import Forbidden
from llmgw.server.appkeys import SESSIONS, STORE


def require_admin(request: web.Request) -> None:
    """Raise 401/403 unless the caller may use the admin API (``auth.admin``)."""
    admin_key = request.app[STORE].current.config.auth.admin_key
    sessions = request.app.get(SESSIONS)
    cookie = request.cookies.get(COOKIE)
    if sessions is None or not cookie or "Authorization" in request.headers:
        check_admin(request, admin_key)
        return
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        raise Forbidden("The admin API does not answer cross-site browser requests")
    sessions.check(cookie, grant_of(admin_key), request.method, request.headers.get(CSRF_HEADER))
    if admin_key is None:
        check_admin(request, None)
