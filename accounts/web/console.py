"""The operator console at ``/console``: sign-in (password hashed in the store, session cookie, CSRF
on every form), the last billing runs, a day's load curve by utility, accounts in arrears or
disconnected, dead-letter reasons, and search by user number with the account's ledger. Without a
live session every console page answers 401 with the sign-in link."""
from __future__ import annotations

import datetime as dt
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import passwords
from ..api.deps import get_store
from ..errors import NotFound
from ..store import Store
from . import charts, data, i18n
from .render import error_message, language, page
from .session import csrf_ok, read_form

router = APIRouter(prefix="/console", include_in_schema=False)


def _t(request: Request):
    return i18n.translator(language(request))


def _refused(request: Request) -> Response:
    return page(request, "login.html", 401, error=_t(request)("Sign in to see this page."), name="",
                back="/console/login")


@router.get("/login")
def login_page(request: Request) -> Response:
    return page(request, "login.html", name="")


@router.post("/login")
async def login(request: Request, store: Store = Depends(get_store)) -> Response:
    form = await read_form(request)
    name = form.get("name", "").strip()[:64]
    if not csrf_ok(request, form):
        return page(request, "login.html", 403, error=_t(request)("The form expired; please try again."), name=name,
                    back="/console/login")
    if not passwords.check_login(store, name, form.get("password", "")):
        return page(request, "login.html", 401, error=_t(request)("Wrong operator name or password."), name=name,
                    back="/console/login")
    response = RedirectResponse("/console", status_code=303)
    await run_in_threadpool(request.app.state.sessions.start, request, response, name)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await read_form(request)
    response = RedirectResponse("/console/login", status_code=303)
    if csrf_ok(request, form):
        await run_in_threadpool(request.app.state.sessions.end, request, response)
    return response


@router.get("")
def overview(request: Request, day: str = "", store: Store = Depends(get_store)) -> Response:
    """Runs, load curve of ``day`` (default: the newest day with intervals), arrears, dead letters."""
    operator = request.app.state.sessions.operator(request)
    if operator is None:
        return _refused(request)
    t0 = time.perf_counter()
    days = data.load_days(store.lake)
    chosen = day if day in days else (days[0] if days else "")
    with data.LakeReader(store.lake) as lr:
        runs = data.runs(store, lr)
        curve = data.load_curve(store, lr, dt.date.fromisoformat(chosen)) if chosen else {}
        in_arrears = data.in_arrears(store, lr)
        dead = data.deadletter_reasons(store, lr)
    n_arrears, arrears = in_arrears or (0, [])
    chart = charts.lines(curve, f"{_t(request)('Load curve')} {chosen}") if curve is not None else ""
    return page(request, "console.html", operator=operator, runs=runs, days=days[:31], day=chosen, chart=chart,
                curve=curve or {}, curve_computing=curve is None, arrears_computing=in_arrears is None, n_arrears=n_arrears, arrears=arrears, dead=dead,
                server_ms=(time.perf_counter() - t0) * 1000)


@router.get("/account")
def account(request: Request, user: str = "", store: Store = Depends(get_store)) -> Response:
    """Search by user number: the account in full with its ledger and unsettled payments."""
    operator = request.app.state.sessions.operator(request)
    if operator is None:
        return _refused(request)
    user = user.strip()[:64]
    try:
        d = data.console_account(store, user) if user else {}
    except NotFound as e:
        return page(request, "console_account.html", 404, operator=operator, user=user, error=error_message(request, e))
    return page(request, "console_account.html", operator=operator, user=user, **d)
