"""Payments: ``pay`` (idempotent per ``(channel, channel_ref)``), reversals, and the balance now.

Every payment takes the next number of the ``payments`` counter inside the transaction that inserts
it. The counter row is locked until commit (SQLite: one writer at a time; PostgreSQL: the row lock of
``UPDATE``), so sequence numbers are assigned in commit order: once ``seq = N`` is visible, every
payment with a smaller number is committed too. The nightly protocol (:mod:`accounts.nightly`) relies
on that.

The payments that arrive while a commit is on its way to disk are committed together (group commit,
:mod:`accounts.groupcommit`): each caller queues its payment and waits; the store's one payment writer
thread inserts everything queued in one transaction and one fsync — duplicates, unknown accounts,
running totals, balances and the payments' alerts each worked out for the whole group in a few
statements — and every caller answers after that commit. So concurrent channels are not limited to one
fsync per payment, on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import sqlalchemy as sa

from meters import outbox

from . import lakeview
from .errors import Conflict, Invalid, NotFound
from .money import fmt, to_cents
from .reconnect import reconnect_alerts
from .schema import accounts, counters, payments, settled_days
from .groupcommit import GroupCommitter
from .settings import contacts_by_account
from .store import Store

REF_MAX = 128
PAYER_MAX = 200
CHUNK = 400       # keys per IN list


def as_utc(ts: dt.datetime) -> dt.datetime:
    """A stored instant as an aware UTC datetime (SQLite returns it naive)."""
    return ts.replace(tzinfo=dt.timezone.utc) if ts.tzinfo is None else ts.astimezone(dt.timezone.utc)


def _bind_ts(ts: dt.datetime) -> dt.datetime:
    return ts.astimezone(dt.timezone.utc)


def next_seq(conn) -> int:
    """Take the next payment number (locks the counter row until this transaction ends)."""
    return int(conn.execute(sa.update(counters).where(counters.c.name == "payments")
                            .values(value=counters.c.value + 1).returning(counters.c.value)).scalar_one())


def unsettled(store: Store, day: dt.date | None, watermark: int):
    """SQL condition: a payment not credited by the run of settled ``day`` that read up to
    ``watermark`` (all payments when ``day`` is None)."""
    if day is None:
        return sa.true()
    end = store.lake.day_bounds_utc(day)[1]
    return sa.or_(payments.c.seq > watermark, payments.c.received_at >= _bind_ts(end))


_WATERMARK = sa.select(settled_days.c.watermark).where(settled_days.c.day == sa.bindparam("day"))
# the statements of the hot paths, built once (SQLAlchemy then reuses their compiled form)
_ACCOUNT_TOTALS = sa.select(accounts.c.account_id, accounts.c.opening_cents, accounts.c.paid_cents).where(
    accounts.c.account_id.in_(sa.bindparam("ids", expanding=True)))
_IDS = payments.c.account_id.in_(sa.bindparam("ids", expanding=True))
_LATER = sa.union_all(   # an account's payments a settled day did not credit: two index range scans
    sa.select(payments.c.account_id, sa.func.sum(payments.c.amount_cents))
    .where(_IDS, payments.c.seq > sa.bindparam("w")).group_by(payments.c.account_id),
    sa.select(payments.c.account_id, sa.func.sum(payments.c.amount_cents))
    .where(_IDS, payments.c.received_at >= sa.bindparam("end"), payments.c.seq <= sa.bindparam("w"))
    .group_by(payments.c.account_id))
# one channel's references: an equality and an IN list, so that SQLite searches the unique index
# (a row-value IN over (channel, channel_ref) scans the whole table)
_STORED = sa.select(payments).where(payments.c.channel == sa.bindparam("channel"),
                                    payments.c.channel_ref.in_(sa.bindparam("refs", expanding=True)))
_LOCK_COUNTER = (sa.update(counters).where(counters.c.name == "payments").values(value=counters.c.value)
                 .returning(counters.c.value))
_SET_COUNTER = sa.update(counters).where(counters.c.name == "payments").values(value=sa.bindparam("v"))


def recorded_watermark(conn, day: dt.date) -> int:
    """The watermark recorded for settled ``day`` or, before the nightly batch records one, 0 (the
    settled balance then holds no payment of the store)."""
    w = conn.execute(_WATERMARK, {"day": day}).scalar()
    return int(w or 0)


def _opening(conn, account_id: str) -> int:
    c = conn.execute(sa.select(accounts.c.opening_cents).where(accounts.c.account_id == account_id)).scalar()
    if c is None:
        raise NotFound(f"unknown user number {account_id!r}")
    return int(c)


def settled_now(store: Store) -> tuple[dt.date | None, dict]:
    """(the last settled day, every account's state after it), read again only when the lake's
    ``billing_state`` directory or its newest partition changed (two ``stat`` calls per lookup)."""
    lake = store.lake
    key = None
    if lake.is_local:
        hit = store.cache.get("settled_now")
        try:     # the directories' names as text, made once (no Path per lookup)
            top = os.stat(hit[2][0] if hit else lake.table_dir("billing_state")).st_mtime_ns
            newest = os.stat(hit[2][1]).st_mtime_ns if hit and hit[2][1] else None
            key = (top, newest)
        except FileNotFoundError:
            key = ("none",)
        if hit is not None and hit[0] == key:
            return hit[1]
    day, table = lakeview.settled_table(lake, store.cache)
    dirs = (os.fspath(lake.table_dir("billing_state")), os.fspath(lake.partition_dir("billing_state", day.isoformat()))
            if day else None) if lake.is_local else None
    store.cache["settled_now"] = (key, (day, table), dirs)
    return day, table


def balances_in(store: Store, conn, account_ids) -> dict[str, tuple[int, lakeview.Settled | None]]:
    """Of each known account of ``account_ids``: (balance in cents now, the last settled state) — the
    last settled balance plus the payments that run did not credit (two index range scans over the
    payments since that day), or before any settled day the opening balance plus the running total of
    its payments (``accounts.paid_cents``). Unknown accounts are left out."""
    ids = sorted(set(account_ids))
    rows = []
    for lo in range(0, len(ids), CHUNK):
        rows += conn.execute(_ACCOUNT_TOTALS, {"ids": ids[lo:lo + CHUNK]}).all()
    return balances_of(store, conn, rows)


def balances_of(store: Store, conn, rows) -> dict[str, tuple[int, lakeview.Settled | None]]:
    """:func:`balances_in` of account rows already read: ``(account_id, opening_cents, paid_cents)``."""
    day, table = settled_now(store)
    out, settled = {}, {}
    for a, opening, paid in rows:
        st = table.get(a)
        if st is None:
            out[a] = (int(opening) + int(paid), None)
        else:
            settled[a] = st
    if settled:
        w = recorded_watermark(conn, day)
        end = _bind_ts(store.lake.day_bounds_utc(day)[1])
        later = dict.fromkeys(settled, 0)
        keys = sorted(settled)
        for lo in range(0, len(keys), CHUNK):
            for a, cents in conn.execute(_LATER, {"ids": keys[lo:lo + CHUNK], "w": w, "end": end}):
                later[a] += int(cents or 0)
        out.update({a: (st.balance_cents + later[a], st) for a, st in settled.items()})
    return out


def balance_in(store: Store, conn, account_id: str) -> tuple[int, lakeview.Settled | None]:
    """(balance in cents now, the last settled state) of one account (:func:`balances_in`)."""
    got = balances_in(store, conn, [account_id]).get(account_id)
    if got is None:
        raise NotFound(f"unknown user number {account_id!r}")
    return got


def _result(row, status: str, balance: int) -> dict:
    return {"status": status, "seq": row.seq, "user_number": row.account_id, "amount": fmt(row.amount_cents),
            "channel": row.channel, "channel_ref": row.channel_ref, "payer": row.payer,
            "received_at": as_utc(row.received_at).isoformat(), "balance": fmt(balance)}


def _check_same(row, body: tuple) -> None:
    """:class:`Conflict` unless the stored payment ``row`` has ``body`` (account, cents, payer, reverses)."""
    if (row.account_id, row.amount_cents, row.payer, row.reverses) != body:
        raise Conflict(f"channel_ref {row.channel_ref!r} of channel {row.channel!r} was already used for "
                       f"{fmt(row.amount_cents)} to {row.account_id}; a reference is applied once only")


def _check_ref(channel_ref) -> str:
    ref = (channel_ref or "").strip() if isinstance(channel_ref, str) else ""
    if not ref:
        raise Invalid("channel_ref is empty: a payment needs the channel's reference, so that it is applied once")
    if len(ref) > REF_MAX:
        raise Invalid(f"channel_ref is longer than {REF_MAX} characters")
    return ref


@dataclass(frozen=True)
class Payment:
    """A payment as a caller asked for it (validated; not yet recorded)."""

    channel: str
    channel_ref: str
    account_id: str
    amount_cents: int
    payer: str | None
    reverses: int | None

    @property
    def body(self) -> tuple:
        return (self.account_id, self.amount_cents, self.payer, self.reverses)


def submit(store: Store, user_number: str, amount, channel_ref: str, *, channel: str,
           payer: str | None = None, reverses: int | None = None, awaitable: bool = False):
    """Queue a payment for the store's next group commit (:func:`pay` without waiting): a future of
    its result (``awaitable``: an asyncio future of the running loop). A bad amount, reference or
    payer raises :class:`Invalid` here."""
    ref = _check_ref(channel_ref)
    cents = to_cents(amount) if reverses is None else -to_cents(amount)
    if payer is not None and (not isinstance(payer, str) or len(payer) > PAYER_MAX):
        raise Invalid(f"payer must be text of at most {PAYER_MAX} characters")
    committer = store.cache.get("payments_committer")
    if committer is None:
        made = GroupCommitter(lambda group: commit_payments(store, group), name="payments-group-commit",
                              hold=store.exclusive if store.engine.dialect.name == "sqlite" else None)
        committer = store.cache.setdefault("payments_committer", made)
        if committer is made:
            store.closers.append(made.close)
    p = Payment(channel, ref, user_number, cents, payer, reverses)
    return committer.submit_async(p) if awaitable else committer.submit(p)


def pay(store: Store, user_number: str, amount, channel_ref: str, *, channel: str,
        payer: str | None = None, reverses: int | None = None) -> dict:
    """Credit ``amount`` to ``user_number`` under the channel's reference ``channel_ref``; returns
    after the commit is durable.

    Idempotent: the same ``(channel, channel_ref)`` with the same body returns the first result with
    ``status: "duplicate"``; with another body it raises :class:`Conflict`. An unknown user number
    raises :class:`NotFound`, a bad amount :class:`Invalid`. Returns ``{"status": "applied", "seq",
    "user_number", "amount", "channel", "channel_ref", "payer", "received_at", "balance"}`` — the
    balance after this payment. ``reverses`` (see :func:`reverse`) makes a negative entry.
    """
    return submit(store, user_number, amount, channel_ref, channel=channel, payer=payer, reverses=reverses).result()


def _lock_counter(conn) -> int:
    """The payments counter's value, its row locked until this transaction ends (commit order)."""
    return int(conn.execute(_LOCK_COUNTER).scalar_one())


def commit_payments(store: Store, group: list[Payment]) -> list:
    """Record ``group`` in one transaction: each new reference is inserted with the next payment
    number, added to its account's running total and its ``payment`` alert queued (the alert exists
    iff the payment does); a reference used before is answered from the stored row. Returns one
    result dict or exception per payment, in order."""
    with store.write() as conn:
        start = _lock_counter(conn)          # from here on this transaction is the only payment writer
        refs: dict[str, set] = {}
        for p in group:
            refs.setdefault(p.channel, set()).add(p.channel_ref)
        stored = {}
        for channel, of in refs.items():
            of = sorted(of)
            for lo in range(0, len(of), CHUNK):
                for r in conn.execute(_STORED, {"channel": channel, "refs": of[lo:lo + CHUNK]}):
                    stored[(r.channel, r.channel_ref)] = r
        before = balances_in(store, conn, {p.account_id for p in group} | {r.account_id for r in stored.values()})
        now = store.clock()
        received = _bind_ts(now)
        seq, new, answers = start, [], []
        for p in group:
            k = (p.channel, p.channel_ref)
            if k in stored:
                answers.append(("again", p, stored[k]))
            elif p.account_id not in before:
                answers.append(NotFound(f"unknown user number {p.account_id!r}"))
            else:
                seq += 1
                row = {"seq": seq, "channel": p.channel, "channel_ref": p.channel_ref, "account_id": p.account_id,
                       "amount_cents": p.amount_cents, "payer": p.payer, "received_at": received, "reverses": p.reverses}
                stored[k] = _Row(**row)
                new.append(row)
                answers.append(("applied", p, stored[k]))
        balance = {a: b for a, (b, _) in before.items()}
        after = {}                                   # seq → the balance right after that payment
        for r in new:
            balance[r["account_id"]] += r["amount_cents"]
            after[r["seq"]] = balance[r["account_id"]]
        if new:
            insert_payments(conn, new)
            conn.execute(_SET_COUNTER, {"v": seq})
            _queue_payment_alerts(store, conn, new, after, before, store.lake.local_day(as_utc(now)))
    out = []
    for a in answers:
        if isinstance(a, BaseException):
            out.append(a)
            continue
        what, p, row = a
        if what == "applied":
            out.append(_result(row, "applied", after[row.seq]))
            continue
        try:
            _check_same(row, p.body)
            out.append(_result(row, "duplicate", balance[row.account_id]))
        except Conflict as e:
            out.append(e)
    return out


@dataclass(frozen=True)
class _Row:
    seq: int
    channel: str
    channel_ref: str
    account_id: str
    amount_cents: int
    payer: str | None
    received_at: dt.datetime
    reverses: int | None


_INSERT = sa.insert(payments)
_ADD_PAID = (sa.update(accounts).where(accounts.c.account_id == sa.bindparam("a"))
             .values(paid_cents=accounts.c.paid_cents + sa.bindparam("cents")))


def insert_payments(conn, rows: list[dict]) -> None:
    """Insert payment rows (numbers already taken) and add them to their accounts' running totals."""
    for lo in range(0, len(rows), CHUNK):
        conn.execute(_INSERT, rows[lo:lo + CHUNK])
    paid: dict[str, int] = {}
    for r in rows:
        paid[r["account_id"]] = paid.get(r["account_id"], 0) + r["amount_cents"]
    conn.execute(_ADD_PAID, [{"a": a, "cents": c} for a, c in paid.items()])


def _queue_payment_alerts(store: Store, conn, rows: list[dict], after: dict, before: dict, day: dt.date) -> None:
    """The ``payment`` alert of each payment of ``rows`` (received on ``day``) to every contact of its
    account, and ``reconnect`` when a payment brings a disconnected account above the reconnection
    amount (:mod:`accounts.reconnect`; once per account and day), queued in the transaction that
    records the payments (a transactional outbox: the alert exists iff the payment does).
    ``before``: each account's (balance, settled state) before the group. Reversals raise no alert."""
    credits = [r for r in rows if r["amount_cents"] > 0]
    if not credits:
        return
    to = contacts_by_account(conn, {r["account_id"] for r in credits}, day)
    alerts, reconnected = [], set()
    for r in credits:
        a = r["account_id"]
        ref = f"{r['channel']}:{r['channel_ref']}"
        data = outbox.canonical(account_id=a, day=day, amount=int(r["amount_cents"]), balance=after[r["seq"]],
                                ref=r["channel_ref"])
        recipients = to.get(a, ())
        alerts += [{"alert_id": outbox.alert_id(a, day, "payment", c["recipient"], ref), "account_id": a, "day": day,
                    "kind": "payment", "recipient": c["recipient"], "language": c["language"], "data": data}
                   for c in recipients]
        if a not in reconnected:
            back = reconnect_alerts(conn, store.lake, a, day, after[r["seq"]], before[a][1], ref, r["channel_ref"],
                                    list(recipients))
            if back:
                reconnected.add(a)
                alerts += back
    if alerts:
        outbox.enqueue(conn, alerts)


def reverse(store: Store, channel: str, channel_ref: str, *, reversal_ref: str | None = None) -> dict:
    """Reverse payment ``(channel, channel_ref)``: a negative entry naming the original (idempotent:
    its reference is ``reversal_ref`` or ``reversal:<channel_ref>``)."""
    with store.read() as conn:
        orig = conn.execute(sa.select(payments).where(payments.c.channel == channel,
                                                      payments.c.channel_ref == channel_ref)).first()
    if orig is None:
        raise NotFound(f"no payment {channel_ref!r} of channel {channel!r}")
    if orig.reverses is not None or orig.amount_cents < 0:
        raise Invalid(f"payment {channel_ref!r} is itself a reversal")
    ref = reversal_ref or f"reversal:{channel_ref}"
    with store.read() as conn:
        done = conn.execute(sa.select(payments.c.channel_ref).where(payments.c.reverses == orig.seq)).scalar()
    if done is not None and done != ref:
        raise Conflict(f"payment {channel_ref!r} of channel {channel!r} was already reversed by {done!r}")
    return pay(store, orig.account_id, fmt(orig.amount_cents), ref, channel=channel, reverses=orig.seq)


def balance(store: Store, user_number: str) -> dict:
    """``{"user_number", "balance", "last_settled_day"}``: the last settled balance plus later payments."""
    with store.read() as conn:
        cents, st = balance_in(store, conn, user_number)
    return {"user_number": user_number, "balance": fmt(cents),
            "last_settled_day": st.day.isoformat() if st else None}
