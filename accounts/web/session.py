"""Cookies of the pages: the language switch, CSRF tokens and operators' console sessions.

CSRF: every page sets a random ``meters_csrf`` cookie (HttpOnly, SameSite=Strict) and puts the same
token in a hidden field of each form; a POST whose field does not match its cookie is refused (403).
Console sessions: a random token in the ``meters_session`` cookie (HttpOnly, SameSite=Strict, path
/console) names a server-side session that expires after :data:`SESSION_TTL_S` seconds idle or at
sign-out; sessions are rows of the store (token hashed), shared by all server processes and kept across
restarts.
"""
from __future__ import annotations

import hmac
import secrets
import time
from urllib.parse import parse_qs

import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import Response

from ..channels import key_hash
from ..schema import console_sessions

CSRF_COOKIE = "meters_csrf"
SESSION_COOKIE = "meters_session"
LANG_COOKIE = "meters_lang"
SESSION_TTL_S = 8 * 3600
REFRESH_S = 60   # an idle session's expiry is written again once it would move by more than this


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


class Sessions:
    """Console sessions, kept in the store's ``console_sessions`` table: every server process of the
    store (``meters serve --workers N``) knows a session started by any of them, and a sign-out ends
    it everywhere. Only the SHA-256 of a token is stored."""

    def __init__(self, store, ttl_s: float = SESSION_TTL_S):
        self.store, self.ttl_s = store, ttl_s

    def start(self, request: Request, response: Response, operator: str) -> None:
        token = secrets.token_urlsafe(32)
        now = int(time.time())
        with self.store.write() as conn:
            conn.execute(sa.delete(console_sessions).where(console_sessions.c.expires_s <= now))
            conn.execute(sa.insert(console_sessions).values(token_sha256=key_hash(token), operator=operator,
                                                            expires_s=now + int(self.ttl_s)))
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/console",
                            secure=_https(request), max_age=int(self.ttl_s))

    def operator(self, request: Request) -> str | None:
        """The signed-in operator of ``request`` (None: no live session); refreshes its expiry (written
        when it moves by more than :data:`REFRESH_S`)."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        h, now = key_hash(token), int(time.time())
        with self.store.read() as conn:
            r = conn.execute(sa.select(console_sessions.c.operator, console_sessions.c.expires_s)
                             .where(console_sessions.c.token_sha256 == h)).first()
        if r is None or r.expires_s <= now:
            return None
        if now + int(self.ttl_s) - r.expires_s > REFRESH_S:
            with self.store.write() as conn:
                conn.execute(sa.update(console_sessions).where(console_sessions.c.token_sha256 == h)
                             .values(expires_s=now + int(self.ttl_s)))
        return r.operator

    def end(self, request: Request, response: Response) -> None:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            with self.store.write() as conn:
                conn.execute(sa.delete(console_sessions).where(console_sessions.c.token_sha256 == key_hash(token)))
        response.delete_cookie(SESSION_COOKIE, path="/console")
