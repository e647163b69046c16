"""An account as a channel shows it before a payment: masked name, utility, mode, balance now,
status (``ok`` / ``low`` / ``arrears`` / ``disconnected``) and the last settled day."""
from __future__ import annotations

import sqlalchemy as sa

from .direct import reading
from .errors import Invalid, NotFound
from .money import fmt
from .payments import as_utc, balance_in, recorded_watermark, settled_now, unsettled
from .schema import accounts, payments, settings, settled_days
from .settings import SETTING_FIELDS, contacts_of, public
from .store import Store


def mask_name(name: str | None) -> str | None:
    """Keep the first and last character: 张三明 → 张*明, 张三 → 张*, Wang Fang → W*******g."""
    if not name:
        return None
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_recipient(recipient: str) -> str:
    """A contact as a channel sees it: 13800000001 → 138****0001, a@b.cn → a****n."""
    n = len(recipient)
    if n >= 11:
        return recipient[:3] + "*" * (n - 7) + recipient[-4:]
    if n >= 3:
        return recipient[0] + "*" * (n - 2) + recipient[-1]
    return "*" * n


def status_of(balance_cents: int, mode: str, warn_1_cents: int, settled) -> str:
    """``disconnected`` (as the last settled day left it, until the nightly run reconnects);
    ``arrears`` (prepaid: balance below zero; postpaid: an overdue bill not yet paid off);
    ``low`` (prepaid: below warning level 1); ``ok``."""
    if settled is not None and settled.disconnected:
        return "disconnected"
    if mode == "postpaid":
        overdue = settled is not None and settled.arrears_since is not None
        return "arrears" if overdue and balance_cents < 0 else "ok"
    if balance_cents < 0:
        return "arrears"
    if balance_cents < warn_1_cents:
        return "low"
    return "ok"


def _status_query(settled: bool):
    """One statement: the account, its settings in force on ``day`` (columns None: none in force) and,
    ``settled``, the cents of its payments the run of settled day ``settled`` did not credit (those
    after the watermark it recorded, or received after the day's end: two index range scans, as
    :func:`accounts.payments.balances_in` reads them)."""
    s = settings.alias("s")
    in_force = (sa.select(s.c.id).where(s.c.account_id == accounts.c.account_id,
                                        s.c.effective_from <= sa.bindparam("day"))
                .order_by(s.c.effective_from.desc(), s.c.id.desc()).limit(1).scalar_subquery())
    cols = [accounts.c.customer_name, accounts.c.utility, accounts.c.opening_cents, accounts.c.paid_cents,
            *(settings.c[f] for f in SETTING_FIELDS)]
    if settled:
        w = sa.func.coalesce(sa.select(settled_days.c.watermark)
                             .where(settled_days.c.day == sa.bindparam("settled")).scalar_subquery(), 0)

        def cents(*cond):
            return (sa.select(sa.func.coalesce(sa.func.sum(payments.c.amount_cents), 0))
                    .where(payments.c.account_id == accounts.c.account_id, *cond).scalar_subquery())
        cols.append((cents(payments.c.seq > w) +
                     cents(payments.c.received_at >= sa.bindparam("end"), payments.c.seq <= w)).label("later_cents"))
    return (sa.select(*cols).select_from(accounts.outerjoin(settings, settings.c.id == in_force))
            .where(accounts.c.account_id == sa.bindparam("id")))


_STATUS = {False: _status_query(False), True: _status_query(True)}


def account_status(store: Store, user_number: str, *, details: bool = False) -> dict:
    """The account as ``GET /v1/accounts/{user_number}`` shows it; ``details`` adds settings and
    contacts. The balance is the last settled balance plus the payments that day's run did not credit
    (or, before any settled day, the opening balance plus all payments): one statement, with the
    settings in force, in one read transaction with the contacts."""
    today = store.today()
    with reading(store) as conn:     # the hot read: statements on the driver's cursor
        day, table = settled_now(store)
        st = table.get(user_number) if day is not None else None
        params = {"id": user_number, "day": today}
        if st is not None:
            params |= {"settled": day, "end": store.lake.day_bounds_utc(day)[1]}
        acc = conn.execute(_STATUS[st is not None], params).first()
        if acc is None:
            raise NotFound(f"unknown user number {user_number!r}")
        if acc.mode is None:
            raise NotFound(f"account {user_number} has no settings in force on {today}")
        cents = st.balance_cents + int(acc.later_cents) if st is not None else int(acc.opening_cents) + int(acc.paid_cents)
        out = {"user_number": user_number, "name": mask_name(acc.customer_name), "utility": acc.utility,
               "mode": acc.mode, "balance": fmt(cents), "status": status_of(cents, acc.mode, acc.warn_1_cents, st),
               "last_settled_day": st.day.isoformat() if st else None}
        if details:
            out["settings"] = public(acc._asdict())
            out["contacts"] = contacts_of(conn, user_number, today)
    return out


def require_account(store: Store, user_number: str) -> None:
    """:class:`NotFound` unless ``user_number`` is an account of the store."""
    with store.read() as conn:
        if conn.execute(sa.select(accounts.c.account_id).where(accounts.c.account_id == user_number)).first() is None:
            raise NotFound(f"unknown user number {user_number!r}")


def list_accounts(store: Store, limit: int = 100, after: str | None = None) -> list[dict]:
    """Accounts in user-number order (``limit`` after ``after``), unmasked: for operators."""
    q = sa.select(accounts.c.account_id, accounts.c.meter_id, accounts.c.utility, accounts.c.billing_day,
                  accounts.c.customer_name).order_by(accounts.c.account_id).limit(limit)
    if after is not None:
        q = q.where(accounts.c.account_id > after)
    with store.read() as conn:
        return [{"user_number": r.account_id, "meter_id": r.meter_id, "utility": r.utility,
                 "billing_day": r.billing_day, "name": r.customer_name} for r in conn.execute(q).all()]


def pending_payments(store: Store, user_number: str) -> list[dict]:
    """Payments (and reversals) the last settled day did not credit, oldest first."""
    with store.read() as conn:
        _, st = balance_in(store, conn, user_number)
        cond = unsettled(store, st.day if st else None, recorded_watermark(conn, st.day) if st else 0)
        rows = conn.execute(sa.select(payments).where(payments.c.account_id == user_number, cond)
                            .order_by(payments.c.seq)).all()
    return [{"seq": r.seq, "amount": fmt(r.amount_cents), "channel": r.channel, "channel_ref": r.channel_ref,
             "payer": r.payer, "received_at": as_utc(r.received_at).isoformat(), "reverses": r.reverses}
            for r in rows]


def set_name(store: Store, user_number: str, name: str | None) -> dict:
    """Set the customer's name (shown masked to channels)."""
    if name is not None and (not name.strip() or len(name) > 200):
        raise Invalid("name must be non-empty text of at most 200 characters")
    require_account(store, user_number)
    with store.write() as conn:
        conn.execute(sa.update(accounts).where(accounts.c.account_id == user_number)
                     .values(customer_name=name.strip() if name else None))
    return {"user_number": user_number, "name": mask_name(name)}
