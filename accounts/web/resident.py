"""The resident page at ``/``: look up a user number; pay, set or remove auto top-up, add or remove a
family contact. Every action is the channel API's own call (:mod:`accounts.payments`,
:mod:`accounts.settings`) under the page's channel (``meters serve --web-channel``, default
``web``), after the same request model checks; errors are shown in the page in the reader's language."""
from __future__ import annotations

import secrets
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from meters.errors import MetersError

from .. import payments, settings
from ..api.deps import get_store
from ..api.models import AutoTopupIn, ContactIn, PaymentIn
from ..errors import Invalid, NotFound
from ..schema import channels
from ..store import Store
from . import charts, data, i18n
from .render import error_message, language, page
from .session import LANG_COOKIE, read_form, csrf_ok

router = APIRouter(include_in_schema=False)
STATUS = {NotFound: 404, Invalid: 422}


def web_channel(request: Request, store: Store) -> str:
    """The page's payment channel; :class:`Invalid` until ``meters channels add <name>`` created it."""
    name = request.app.state.web_channel
    with store.read() as conn:
        role = conn.execute(sa.select(channels.c.role).where(channels.c.name == name)).scalar()
    if role != "channel":
        raise Invalid(f"the resident page's channel {name!r} is not configured: run meters channels add {name}")
    return name


def one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def _view(request: Request, store: Store, user: str, *, status_code: int = 200, error: str | None = None,
          notice: str | None = None, form: dict | None = None) -> Response:
    ctx = {"back": "/?" + urlencode({"user": user}) if user else "/", "user": user, "error": error, "notice": notice, "form": form or {}, "ref": "web-" + secrets.token_hex(12)}
    if user:
        try:
            d = data.resident(store, user)
        except NotFound as e:
            return page(request, "resident.html", 404, **ctx | {"error": error_message(request, e)})
        t = i18n.translator(language(request))
        d["chart"] = charts.bars([(str(u["day"])[5:], float(u["quantity"] or 0)) for u in d["usage"]],
                                 t("Usage, last 30 days"), d["unit"])
        ctx |= d
    return page(request, "resident.html", status_code, **ctx)


@router.get("/")
def resident_page(request: Request, user: str = "", done: str = "", store: Store = Depends(get_store)) -> Response:
    """The page; ``?user=`` shows that account."""
    t = i18n.translator(language(request))
    notice = {"paid": t("Paid"), "saved": t("Saved.")}.get(done)
    return _view(request, store, user.strip()[:64], notice=notice)


@router.get("/lang/{code}")
def switch_language(code: str, back: str = "/") -> Response:
    """The language switch: remember ``code`` (en, zh) and go back."""
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    response = RedirectResponse(back, status_code=303)
    if code in i18n.LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax")
    return response


async def _act(request: Request, store: Store, action) -> Response:
    form = await read_form(request)
    user = form.get("user", "").strip()[:64]
    if not csrf_ok(request, form):
        t = i18n.translator(language(request))
        return _view(request, store, user, status_code=403, error=t("The form expired; please try again."), form=form)
    try:
        channel = web_channel(request, store)
        done = action(form, user, {"changed_by": channel, "channel": channel})
    except ValidationError as e:
        return _view(request, store, user, status_code=422, error=error_message(request, Invalid(one_line(e))),
                     form=form)
    except MetersError as e:
        return _view(request, store, user, status_code=STATUS.get(type(e), 409), error=error_message(request, e),
                     form=form)
    return RedirectResponse("/?" + urlencode({"user": user, "done": done}, quote_via=quote), status_code=303)


@router.post("/pay")
async def pay(request: Request, store: Store = Depends(get_store)) -> Response:
    def act(form, user, who):
        body = PaymentIn(user_number=user, amount=form.get("amount", "").strip(), channel_ref=form.get("ref", ""),
                         payer=form.get("payer", "").strip() or None)
        payments.pay(store, body.user_number, body.amount, body.channel_ref, channel=who["channel"], payer=body.payer)
        return "paid"
    return await _act(request, store, act)


@router.post("/auto-topup")
async def auto_topup(request: Request, store: Store = Depends(get_store)) -> Response:
    def act(form, user, who):
        if form.get("remove"):
            settings.set_auto_topup(store, user, None, None, **who)
        else:
            body = AutoTopupIn(below=form.get("below", "").strip(), amount=form.get("topup", "").strip())
            settings.set_auto_topup(store, user, body.below, body.amount, **who)
        return "saved"
    return await _act(request, store, act)


@router.post("/contacts")
async def contacts(request: Request, store: Store = Depends(get_store)) -> Response:
    def act(form, user, who):
        if form.get("remove"):
            settings.remove_contact(store, user, form.get("remove_recipient", "").strip(), **who)
        else:
            body = ContactIn(recipient=form.get("recipient", "").strip(), relation=form.get("relation", "").strip(),
                             language=language(request))
            settings.add_contact(store, user, body.recipient, body.relation, body.language, **who)
        return "saved"
    return await _act(request, store, act)
