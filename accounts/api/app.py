"""The API application: ``create_app(store)`` wires the routers, error mapping, body limit and metrics;
``served_app(store)`` puts the hot routes' fast path in front of it.

Errors are JSON ``{"detail": "<one line>"}``: 404 unknown account, 409 conflict, 422 invalid input
(bad JSON, bad amount), 413 a body over :data:`MAX_BODY` bytes, 401/403 authentication and roles.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from meters import __version__
from meters.errors import MetersError

from ..store import Store
from .. import web
from ..errors import refusal
from .fastpath import FastPath, replay
from .metrics import REQUESTS
from .routers import accounts, operator, payments

MAX_BODY = 16 * 1024


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before any route sees it
    (Content-Length or counted while streaming)."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(send, self.limit)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                return await _too_large(send, self.limit)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        return await self.app(scope, replay(b"".join(chunks), False, receive), send)


async def _too_large(send, limit: int) -> None:
    await JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)(
        {"type": "http"}, None, send)


def _lifespan(store: Store, notify: dict | None):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        if notify is None:
            yield
            return
        from meters.notifier import open_notifier

        log = logging.getLogger("meters.notify")
        dispatcher = open_notifier(store.engine, log=log.info, **notify)
        task = asyncio.create_task(dispatcher.run())
        log.info("dispatching alerts inside meters serve", extra={"event": "started"})
        try:
            yield
        finally:
            dispatcher.stop()     # the deliveries in flight finish and are recorded
            totals = await task
            log.info(f"stopped: sent {totals['sent']}, to retry {totals['failed']}, dead {totals['dead']}",
                     extra={"event": "stopped"})

    return lifespan


def create_app(store: Store, web_channel: str | None = None, notify: dict | None = None) -> FastAPI:
    """``notify``: run the alert dispatcher in the server's event loop with these options
    (:func:`meters.notifier.open_notifier`), from start-up to shutdown."""
    app = FastAPI(title="meters account service", version=__version__, lifespan=_lifespan(store, notify),
                  description="Payments, balances and settings of prepaid and postpaid utility accounts. "
                              "Authenticate with `Authorization: Bearer <key>` (see docs/accounts.md).")
    app.state.store = store
    for r in (accounts.router, payments.router, operator.router):
        app.include_router(r)
    web.install(app, store, web_channel or web.DEFAULT_CHANNEL)  # the resident page and the operator console

    @app.exception_handler(MetersError)
    async def _meters_error(request: Request, e: MetersError):
        code, content = refusal(e)
        return JSONResponse(content, status_code=code)

    app.add_middleware(Measure)
    app.add_middleware(BodyLimit)
    return app


def served_app(store: Store, web_channel: str | None = None, notify: dict | None = None) -> FastPath:
    """The application as ``meters serve`` runs it: :func:`create_app` behind the hot routes' fast
    path (:mod:`accounts.api.fastpath`), in front of all of FastAPI's middleware."""
    return FastPath(create_app(store, web_channel, notify), store, MAX_BODY)


class Measure:
    """ASGI middleware: each request's duration by method, route and status (``/metrics``)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            REQUESTS.labels(scope["method"], getattr(route, "path", "unmatched"), status).observe(
                time.perf_counter() - t0)
