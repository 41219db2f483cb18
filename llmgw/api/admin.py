"""The dashboard (SPEC §14): its static files under ``/admin`` and its session.

The pages are plain HTML, CSS and JavaScript modules shipped in ``llmgw/admin/`` and
served as they are (no build step). They read the admin API (``/api/v1/*``) with the
session cookie that ``POST /admin/session`` sets for the admin key (see
``auth.sessions``); every response here forbids inline script, framing and any
origin but this one (``Content-Security-Policy``).

Sign-in takes the admin key once, as JSON (which a cross-site form cannot send). A
wrong key is answered after a delay and counted in
``llmgw_admin_signin_failures_total``. Without ``auth.admin_key`` only a direct
loopback connection may sign in, as only it may use ``/api/v1/*``.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from llmgw.auth.admin import check_admin
from llmgw.auth.sessions import COOKIE, CSRF_HEADER, grant_of
from llmgw.errors import AuthenticationFailed, Forbidden, InvalidRequest, NotFound
from llmgw.server.appkeys import METRICS, SESSIONS, STORE

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
}
_NAME = re.compile(r"[a-z0-9_-]+(?:/[a-z0-9_-]+)*\.(?:html|js|css|svg|txt)")
MAX_SIGN_IN_BODY = 4096


async def index(request: web.Request) -> web.Response:
    return await _file("index.html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not _NAME.fullmatch(name):
        raise NotFound(f"Unknown path {request.path}")
    return await _file(name)


async def _file(name: str) -> web.Response:
    path = resources.files("llmgw").joinpath("admin", *name.split("/"))
    try:
        body = await asyncio.to_thread(path.read_bytes)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise NotFound(f"Unknown path /admin/{name}") from None
    suffix = name[name.rindex(".") :]
    response = web.Response(body=body, headers=SECURITY_HEADERS)
    response.content_type = _TYPES[suffix]
    response.charset = "utf-8"
    return response


async def session_status(request: web.Request) -> web.Response:
    """Whether this browser is signed in; its CSRF token when it is."""
    admin_key = request.app[STORE].current.config.auth.admin_key
    cookie = request.cookies.get(COOKIE)
    session = None
    if cookie:
        session = request.app[SESSIONS].find(cookie, grant_of(admin_key))
    body: dict[str, Any] = {"signed_in": session is not None, "admin_key_set": bool(admin_key)}
    if session is not None:
        body.update(csrf=session.csrf, expires_at=session.expires)
    return _json(body)


async def sign_in(request: web.Request) -> web.Response:
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        raise Forbidden("Sign-in does not answer cross-site browser requests")
    if request.content_type != "application/json":
        raise InvalidRequest('Sign in with a JSON body: {"key": "<admin key>"}')
    admin_key = request.app[STORE].current.config.auth.admin_key
    given = _key_from(await _small_body(request))
    sessions = request.app[SESSIONS]
    if admin_key is None:
        check_admin(request, None)  # direct loopback only, as /api/v1/*
    elif not hmac.compare_digest(given.encode(), admin_key.encode()):
        request.app[METRICS].admin_signin_failures.inc()
        await asyncio.sleep(sessions.failure_delay)
        raise AuthenticationFailed("That is not the admin key")
    cookie, session = sessions.create(grant_of(admin_key))
    response = _json({"signed_in": True, "csrf": session.csrf, "expires_at": session.expires})
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(sessions.ttl),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def sign_out(request: web.Request) -> web.Response:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        sessions = request.app[SESSIONS]
        admin_key = request.app[STORE].current.config.auth.admin_key
        sessions.check(cookie, grant_of(admin_key), "DELETE", request.headers.get(CSRF_HEADER))
        sessions.end(cookie)
    response = _json({"signed_in": False})
    response.del_cookie(COOKIE, path="/")
    return response


async def _small_body(request: web.Request) -> bytes:
    if (request.content_length or 0) > MAX_SIGN_IN_BODY:
        raise InvalidRequest("The sign-in body is too large")
    body = await request.content.read(MAX_SIGN_IN_BODY + 1)
    if len(body) > MAX_SIGN_IN_BODY:
        raise InvalidRequest("The sign-in body is too large")
    return body


def _key_from(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The sign-in body is not valid JSON") from None
    key = parsed.get("key", "") if isinstance(parsed, dict) else None
    if not isinstance(key, str):
        raise InvalidRequest("'key' must be a string", param="key")
    return key


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), content_type="application/json", headers=SECURITY_HEADERS
    )
