"""Dashboard sessions: the admin key, given once at sign-in, traded for a cookie.

A session lives in this process's memory only (a restart signs everyone out). Its
cookie carries a random id and an HMAC of it under a secret made when the process
started, so a cookie that was not issued here is refused before any lookup. Each
session has a CSRF token the dashboard reads from ``GET /admin/session`` and sends
back as ``X-CSRF-Token`` on every write; a write without it, or with another
session's, is 403. The cookie is ``HttpOnly; SameSite=Strict; Path=/`` (``Secure``
when the request came over TLS), so a page of another site can neither read it nor
make a browser send it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from llmgw.errors import AuthenticationFailed, Forbidden

COOKIE = "llmgw_session"
CSRF_HEADER = "X-CSRF-Token"
TTL = 8 * 3600.0  # a working day; then sign in again
MAX_SESSIONS = 1000  # the oldest go first past this
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(slots=True)
class Session:
    csrf: str
    expires: float
    grant: str  # which admin key signed it in: a new key (reload) ends old sessions


def grant_of(admin_key: str | None) -> str:
    """A digest naming the admin key a session was opened with ("" for none)."""
    return "" if admin_key is None else hashlib.sha256(admin_key.encode()).hexdigest()


class Sessions:
    """The signed-in dashboards of this process."""

    def __init__(
        self, ttl: float = TTL, clock: Callable[[], float] = time.time, failure_delay: float = 1.0
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.failure_delay = failure_delay  # seconds a wrong admin key waits for its answer
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}

    def create(self, grant: str) -> tuple[str, Session]:
        """A new session: its cookie value and the session."""
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        sid = secrets.token_urlsafe(24)
        session = Session(secrets.token_urlsafe(24), self.clock() + self.ttl, grant)
        self._sessions[sid] = session
        return f"{sid}.{self._sign(sid)}", session

    def find(self, cookie: str, grant: str) -> Session | None:
        """The live session a cookie names, or None (forged, expired, signed out, or
        opened with another admin key)."""
        sid, dot, signature = cookie.partition(".")
        if not dot or not hmac.compare_digest(signature, self._sign(sid)):
            return None
        session = self._sessions.get(sid)
        if session is None or not hmac.compare_digest(session.grant, grant):
            return None
        if session.expires <= self.clock():
            del self._sessions[sid]
            return None
        return session

    def check(self, cookie: str, grant: str, method: str, csrf: str | None) -> Session:
        """The session for a request carrying ``cookie``: 401 when it is not a live
        one, 403 for a write without its CSRF token."""
        session = self.find(cookie, grant)
        if session is None:
            raise AuthenticationFailed("The dashboard session is not valid or has expired")
        if method not in SAFE_METHODS and not (
            csrf is not None and hmac.compare_digest(csrf.encode(), session.csrf.encode())
        ):
            raise Forbidden(f"A write needs the session's CSRF token ({CSRF_HEADER} header)")
        return session

    def end(self, cookie: str) -> None:
        sid, _, signature = cookie.partition(".")
        if hmac.compare_digest(signature, self._sign(sid)):
            self._sessions.pop(sid, None)

    def _sign(self, sid: str) -> str:
        return hmac.new(self._secret, sid.encode(), hashlib.sha256).hexdigest()

    def _expire(self) -> None:
        now = self.clock()
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]
