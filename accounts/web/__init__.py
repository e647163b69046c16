"""The web pages of the account service: the resident page (``/``) and the operator console
(``/console``), server-rendered (Jinja2, inline SVG charts, no JavaScript), in English and Chinese."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import console, resident
from .session import Sessions

DEFAULT_CHANNEL = "web"


def install(app: FastAPI, store, web_channel: str = DEFAULT_CHANNEL) -> None:
    """Add the pages to ``app``; the resident page pays and changes settings as channel ``web_channel``."""
    app.state.web_channel = web_channel
    app.state.sessions = Sessions(store)
    app.include_router(resident.router)
    app.include_router(console.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
