"""Rendering a page: the Jinja2 templates of ``accounts/web/templates`` (autoescaped) with the
request's language, translator and CSRF token."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from . import i18n
from .session import LANG_COOKIE, csrf_token, set_cookies

TEMPLATES = Path(__file__).with_name("templates")
ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True)


def language(request: Request) -> str:
    return i18n.choose(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def page(request: Request, template: str, status_code: int = 200, back: str | None = None, **ctx) -> HTMLResponse:
    """Render ``template``; the language switch returns to ``back`` (default: this GET's URL)."""
    lang = language(request)
    here = back or (request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    html = ENV.get_template(template).render(
        lang=lang, html_lang="zh-CN" if lang == "zh" else "en", t=i18n.translator(lang),
        csrf=csrf_token(request), here=quote(here, safe=""), **ctx)
    response = HTMLResponse(html, status_code=status_code,
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                     "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                                                "style-src 'self'; form-action 'self'"})
    return set_cookies(request, response)


def error_message(request: Request, e: Exception) -> str:
    return i18n.error_text(str(e), language(request))
