"""The admin API's guard, bound to the running config's ``auth.admin_key``."""

from __future__ import annotations

from aiohttp import web

from llmgw.auth.admin import check_admin
from llmgw.server.appkeys import STORE


def require_admin(request: web.Request) -> None:
    """Raise 401/403 unless the caller may use the admin API (``auth.admin``)."""
    check_admin(request, request.app[STORE].current.config.auth.admin_key)
