"""The two hot routes, ``POST /v1/payments`` and ``GET /v1/accounts/{user_number}``, answered by a small
ASGI layer in front of FastAPI's per-request machinery (routing, dependency resolution, pydantic,
response encoding): the same library calls, key check and JSON.

It answers only what it can answer exactly as the FastAPI routes would: a known key of a channel that
does not sign its requests and (payments) a JSON body that a handwritten check of
:class:`~accounts.api.models.PaymentIn` accepts. Everything else (a missing or unknown key, a signing
channel, a body the check refuses, an oversized body, any other route) goes on to the FastAPI app with
the body as received, which gives the documented answer or error. The routes stay declared in FastAPI,
so ``/docs`` and ``/openapi.json`` describe them as before.
"""
from __future__ import annotations

import time

import orjson

from meters.errors import MetersError

from ..channels import authenticate
from ..errors import refusal
from .metrics import REQUESTS
from .routers.accounts import answer_account
from .routers.payments import answer_payment

ACCOUNT = "/v1/accounts/"
PAY = "/v1/payments"
_HEADERS = [(b"content-type", b"application/json")]
_LIMITS = {"user_number": 64, "channel_ref": 128, "payer": 200}


def payment_fields(body: bytes) -> dict | None:
    """The fields of a payment body as :class:`~accounts.api.models.PaymentIn` accepts them (None: let
    the model say what is wrong)."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict or not {"user_number", "amount", "channel_ref"} <= d.keys() <= {*_LIMITS, "amount"}:
        return None
    for k, n in _LIMITS.items():
        v = d.get(k)
        if not (type(v) is str and 0 < len(v) <= n) and not (k == "payer" and v is None):
            return None
    return d if type(d["amount"]) in (int, float, str) else None


class FastPath:
    """ASGI middleware: the hot routes of ``store``, the rest passed to ``app``."""

    def __init__(self, app, store, max_body: int):
        self.app, self.store, self.max_body = app, store, max_body
        self._timers: dict = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if method == "POST" and path == PAY:
            route = PAY
        elif method == "GET" and path.startswith(ACCOUNT) and path.find("/", len(ACCOUNT)) < 0 and len(path) > len(ACCOUNT):
            route = ACCOUNT + "{user_number}"
        else:
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        headers = dict(scope["headers"][::-1])    # a repeated header: its first value, as Starlette reads it
        body, more = b"", False
        if route == PAY:
            length = headers.get(b"content-length", b"")
            if not length.isdigit() or int(length) > self.max_body:
                return await self.app(scope, receive, send)
            body, more = await _body(receive)
            receive = replay(body, more, receive)
        answer = None
        if not more:
            who = self._caller(headers)
            if who is not None:
                answer = await (self._pay(who, headers, body) if route == PAY else
                                self._account(who, path[len(ACCOUNT):]))
        if answer is None:
            return await self.app(scope, receive, send)
        code, content = answer
        out = orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        await send({"type": "http.response.start", "status": code,
                    "headers": [*_HEADERS, (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})
        timer = self._timers.get((method, route, code))
        if timer is None:      # the labelled child, looked up once per method, route and status
            timer = self._timers[method, route, code] = REQUESTS.labels(method, route, code)
        timer.observe(time.perf_counter() - t0)

    def _caller(self, headers: dict):
        scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        who = authenticate(self.store, key.strip())
        return None if who is None or who.signing_secret else who

    async def _pay(self, who, headers: dict, body: bytes):
        if not headers.get(b"content-type", b"").startswith(b"application/json"):
            return None
        d = payment_fields(body)
        return None if d is None else await answer_payment(self.store, who, d)

    async def _account(self, who, user_number: str):
        try:
            return 200, await answer_account(self.store, who, user_number)
        except MetersError as e:
            return refusal(e)


async def _body(receive) -> tuple[bytes, bool]:
    """The request body, unless it comes in pieces (then the first piece and True)."""
    message = await receive()
    if message["type"] != "http.request":
        return b"", True
    return message.get("body", b""), message.get("more_body", False)


def replay(body: bytes, more: bool, receive):
    """``receive`` of a request whose first body piece was read already."""
    sent = False

    async def replayed():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": more}

    return replayed
