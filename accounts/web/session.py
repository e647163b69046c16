"""Cookies of the pages: the language switch, CSRF tokens and operators' console sessions.

CSRF: every page sets a random ``meters_csrf`` cookie (HttpOnly, SameSite=Strict) and puts the same
token in a hidden field of each form; a POST whose field does not match its cookie is refused (403).
Console sessions: a random token in the ``meters_session`` cookie (HttpOnly, SameSite=Strict, path
/console) names a server-side session that expires after :data:`SESSION_TTL_S` seconds idle or at
sign-out; sessions live in the serving process (a restart signs operators out).
"""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import Response

CSRF_COOKIE = "meters_csrf"
SESSION_COOKIE = "meters_session"
LANG_COOKIE = "meters_lang"
SESSION_TTL_S = 8 * 3600


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as ``{name: first value}`` (the body size is
    bounded by the app's limit)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def csrf_token(request: Request) -> str:
    """The request's CSRF token (its cookie's, or a new one that :func:`set_cookies` will send)."""
    tok = request.cookies.get(CSRF_COOKIE)
    if not tok or len(tok) < 32:
        tok = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(32)
        request.state.new_csrf = tok
    return tok


def csrf_ok(request: Request, form: dict) -> bool:
    cookie, field = request.cookies.get(CSRF_COOKIE, ""), form.get("csrf", "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), field.encode())


def set_cookies(request: Request, response: Response) -> Response:
    """Send the CSRF cookie when this request created it."""
    new = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict", secure=_https(request))
    return response


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


@dataclass
class Session:
    operator: str
    expires: float


class Sessions:
    """Console sessions of one server process."""

    def __init__(self, ttl_s: float = SESSION_TTL_S):
        self.ttl_s, self._by_token, self._lock = ttl_s, {}, threading.Lock()

    def start(self, request: Request, response: Response, operator: str) -> None:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._by_token = {t: s for t, s in self._by_token.items() if s.expires > now}
            self._by_token[token] = Session(operator, now + self.ttl_s)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/console",
                            secure=_https(request), max_age=int(self.ttl_s))

    def operator(self, request: Request) -> str | None:
        """The signed-in operator of ``request`` (None: no live session); refreshes its expiry."""
        token = request.cookies.get(SESSION_COOKIE)
        with self._lock:
            s = self._by_token.get(token or "")
            if s is None or s.expires <= time.time():
                self._by_token.pop(token or "", None)
                return None
            s.expires = time.time() + self.ttl_s
            return s.operator

    def end(self, request: Request, response: Response) -> None:
        with self._lock:
            self._by_token.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response.delete_cookie(SESSION_COOKIE, path="/console")
