"""``/v1/accounts``: an account, its bills, usage, ledger and alerts, and its settings (auto top-up,
contacts, warning levels) — each change a dated row."""
from __future__ import annotations

import asyncio
import datetime as dt

from fastapi import APIRouter, Depends, Query

from meters import outbox

from ... import lakeview, settings, status
from ...channels import Principal
from ...store import Store
from ..deps import caller, get_store, operator
from ..models import AutoTopupIn, ContactIn, WarningsIn
from ..responses import FastJSON

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])
UserNumber = str


def _who(who: Principal) -> dict:
    return {"changed_by": who.name, "channel": who.name}


def _shown(who: Principal, out: dict) -> dict:
    """Contacts' recipients masked for channels (operators see them in full)."""
    if who.role != "operator":
        out["contacts"] = [c | {"recipient": status.mask_recipient(c["recipient"])} for c in out["contacts"]]
    return out


def _known(store: Store, n: str) -> None:
    status.require_account(store, n)


@router.get("")
def list_accounts(limit: int = Query(100, ge=1, le=10_000), after: str | None = Query(None),
                  _: Principal = Depends(operator), store: Store = Depends(get_store)) -> dict:
    """All accounts (operators only), in user-number order, ``limit`` after user number ``after``."""
    return {"accounts": status.list_accounts(store, limit, after)}


@router.get("/{user_number}", response_class=FastJSON)
async def get_account(user_number: UserNumber, who: Principal = Depends(caller), store: Store = Depends(get_store)):
    """Masked name, utility, mode, balance now, status, last settled day, settings and contacts
    (recipients masked for channels, in full for operators)."""
    return FastJSON(await answer_account(store, who, user_number))


async def answer_account(store: Store, who: Principal, user_number: str) -> dict:
    """The account as ``who`` sees it. SQLite: a few indexed reads that never wait for the writer,
    answered on the event loop (no thread hop); PostgreSQL: each statement a network round trip, so in
    a thread, and the event loop serves others meanwhile."""
    if store.engine.dialect.name == "sqlite":
        return _shown(who, status.account_status(store, user_number, details=True))
    return _shown(who, await asyncio.to_thread(status.account_status, store, user_number, details=True))


@router.get("/{user_number}/bills")
def get_bills(user_number: UserNumber, _: Principal = Depends(caller), store: Store = Depends(get_store)) -> dict:
    """Postpaid bills from the lake."""
    _known(store, user_number)
    return {"user_number": user_number, "bills": lakeview.bills(store.lake, user_number)}


@router.get("/{user_number}/usage")
def get_usage(user_number: UserNumber, from_: dt.date | None = Query(None, alias="from"),
              to: dt.date | None = Query(None), _: Principal = Depends(caller),
              store: Store = Depends(get_store)) -> dict:
    """Daily consumption and charge per settled day between ``from`` and ``to`` (inclusive)."""
    _known(store, user_number)
    return {"user_number": user_number, "usage": lakeview.usage(store.lake, user_number, from_, to)}


@router.get("/{user_number}/ledger")
def get_ledger(user_number: UserNumber, limit: int = Query(100, ge=1, le=10_000), _: Principal = Depends(caller),
               store: Store = Depends(get_store)) -> dict:
    """The settled ledger (newest first) and the payments received since the last settled day."""
    _known(store, user_number)
    return {"user_number": user_number, "ledger": lakeview.ledger(store.lake, user_number, limit),
            "pending_payments": status.pending_payments(store, user_number)}


@router.get("/{user_number}/alerts")
def get_alerts(user_number: UserNumber, limit: int = Query(100, ge=1, le=10_000), who: Principal = Depends(caller),
               store: Store = Depends(get_store)) -> dict:
    """Alerts about the account (newest first), each with its delivery: state (pending, sent, failed,
    dead), attempts, last error, next attempt (recipients masked for channels)."""
    _known(store, user_number)
    shown = lakeview.alerts(store.lake, user_number, limit)
    newest: dict[str, dict] = {}       # of each alert, its newest delivery (a correction's, after a re-run)
    for d in outbox.deliveries(store.engine, account_id=user_number, limit=4 * limit):
        newest.setdefault(d["base_id"], d)
    for a in shown:
        d = newest.get(a.get("alert_id")) or {}
        a["delivery"] = {k: d.get(k) for k in ("alert_id", "state", "attempts", "last_error", "next_attempt_at",
                                               "sent_at", "corrects")}
        if who.role != "operator":
            a["recipient"] = status.mask_recipient(a["recipient"])
    return {"user_number": user_number, "alerts": shown}


@router.put("/{user_number}/auto-topup")
def put_auto_topup(user_number: UserNumber, body: AutoTopupIn, who: Principal = Depends(caller),
                   store: Store = Depends(get_store)) -> dict:
    """Turn on or change auto top-up from today: below ``below`` add ``amount``."""
    return settings.set_auto_topup(store, user_number, body.below, body.amount, **_who(who))


@router.delete("/{user_number}/auto-topup")
def delete_auto_topup(user_number: UserNumber, who: Principal = Depends(caller),
                      store: Store = Depends(get_store)) -> dict:
    """Turn auto top-up off from today."""
    return settings.set_auto_topup(store, user_number, None, None, **_who(who))


@router.put("/{user_number}/warnings")
def put_warnings(user_number: UserNumber, body: WarningsIn, who: Principal = Depends(caller),
                 store: Store = Depends(get_store)) -> dict:
    """Low-balance warning levels from today."""
    return settings.set_warnings(store, user_number, body.levels, **_who(who))


@router.post("/{user_number}/contacts")
def post_contact(user_number: UserNumber, body: ContactIn, who: Principal = Depends(caller),
                 store: Store = Depends(get_store)) -> dict:
    """Send the account's alerts to ``recipient`` too (from today)."""
    return _shown(who, settings.add_contact(store, user_number, body.recipient, body.relation, body.language,
                                            **_who(who)))


@router.delete("/{user_number}/contacts")
def delete_contact(user_number: UserNumber, recipient: str = Query(..., min_length=1, max_length=200),
                   who: Principal = Depends(caller), store: Store = Depends(get_store)) -> dict:
    """Stop sending alerts to ``recipient`` (from today)."""
    return _shown(who, settings.remove_contact(store, user_number, recipient, **_who(who)))
