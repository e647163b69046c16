"""Payments: ``pay`` (idempotent per ``(channel, channel_ref)``), reversals, and the balance now.

Every payment takes the next number of the ``payments`` counter inside the transaction that inserts
it. The counter row is locked until commit (SQLite: one writer at a time; PostgreSQL: the row lock of
``UPDATE``), so sequence numbers are assigned in commit order: once ``seq = N`` is visible, every
payment with a smaller number is committed too. The nightly protocol (:mod:`accounts.nightly`) relies
on that.

On SQLite the payments that arrive while a commit is on its way to disk are committed together (group
commit): each caller queues its payment, the one that gets the writer's turn inserts everything queued
in one transaction and one fsync, and every caller answers after that commit — so concurrent channels
are not limited to one fsync per payment. PostgreSQL commits each payment in its own transaction.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from meters import outbox

from . import lakeview
from .errors import Conflict, Invalid, NotFound
from .money import fmt, to_cents
from .reconnect import reconnect_alerts
from .schema import accounts, counters, payments, settled_days
from .settings import contacts_of
from .store import Store

REF_MAX = 128
PAYER_MAX = 200


def as_utc(ts: dt.datetime) -> dt.datetime:
    """A stored instant as an aware UTC datetime (SQLite returns it naive)."""
    return ts.replace(tzinfo=dt.timezone.utc) if ts.tzinfo is None else ts.astimezone(dt.timezone.utc)


def _bind_ts(ts: dt.datetime) -> dt.datetime:
    return ts.astimezone(dt.timezone.utc)


def next_seq(conn) -> int:
    """Take the next payment number (locks the counter row until this transaction ends)."""
    conn.execute(sa.update(counters).where(counters.c.name == "payments").values(value=counters.c.value + 1))
    return conn.execute(sa.select(counters.c.value).where(counters.c.name == "payments")).scalar_one()


def unsettled(store: Store, day: dt.date | None, watermark: int):
    """SQL condition: a payment not credited by the run of settled ``day`` that read up to
    ``watermark`` (all payments when ``day`` is None)."""
    if day is None:
        return sa.true()
    end = store.lake.day_bounds_utc(day)[1]
    return sa.or_(payments.c.seq > watermark, payments.c.received_at >= _bind_ts(end))


def recorded_watermark(conn, day: dt.date) -> int:
    """The watermark recorded for settled ``day`` or, before the nightly batch records one, 0 (the
    settled balance then holds no payment of the store)."""
    w = conn.execute(sa.select(settled_days.c.watermark).where(settled_days.c.day == day)).scalar()
    return int(w or 0)


def _opening(conn, account_id: str) -> int:
    c = conn.execute(sa.select(accounts.c.opening_cents).where(accounts.c.account_id == account_id)).scalar()
    if c is None:
        raise NotFound(f"unknown user number {account_id!r}")
    return int(c)


def balance_in(store: Store, conn, account_id: str) -> tuple[int, lakeview.Settled | None]:
    """(balance in cents now, the last settled state): the last settled balance — or the opening
    balance before any settled day — plus the payments that run did not credit."""
    opening = _opening(conn, account_id)
    st = lakeview.settled(store.lake, account_id, store.cache)
    day = st.day if st else None
    cond = unsettled(store, day, recorded_watermark(conn, day) if day else 0)
    later = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(payments.c.amount_cents), 0))
                         .where(payments.c.account_id == account_id, cond)).scalar_one()
    return (st.balance_cents if st else opening) + int(later), st


def _result(row, status: str, balance: int) -> dict:
    return {"status": status, "seq": row.seq, "user_number": row.account_id, "amount": fmt(row.amount_cents),
            "channel": row.channel, "channel_ref": row.channel_ref, "payer": row.payer,
            "received_at": as_utc(row.received_at).isoformat(), "balance": fmt(balance)}


def _same_again(store: Store, conn, row, body: tuple) -> dict:
    """The answer to a payment whose reference exists: the first result, or :class:`Conflict`."""
    if (row.account_id, row.amount_cents, row.payer, row.reverses) != body:
        raise Conflict(f"channel_ref {row.channel_ref!r} of channel {row.channel!r} was already used for "
                       f"{fmt(row.amount_cents)} to {row.account_id}; a reference is applied once only")
    return _result(row, "duplicate", balance_in(store, conn, row.account_id)[0])


def _check_ref(channel_ref) -> str:
    ref = (channel_ref or "").strip() if isinstance(channel_ref, str) else ""
    if not ref:
        raise Invalid("channel_ref is empty: a payment needs the channel's reference, so that it is applied once")
    if len(ref) > REF_MAX:
        raise Invalid(f"channel_ref is longer than {REF_MAX} characters")
    return ref


def pay(store: Store, user_number: str, amount, channel_ref: str, *, channel: str,
        payer: str | None = None, reverses: int | None = None) -> dict:
    """Credit ``amount`` to ``user_number`` under the channel's reference ``channel_ref``.

    Idempotent: the same ``(channel, channel_ref)`` with the same body returns the first result with
    ``status: "duplicate"``; with another body it raises :class:`Conflict`. An unknown user number
    raises :class:`NotFound`, a bad amount :class:`Invalid`. Returns ``{"status": "applied", "seq",
    "user_number", "amount", "channel", "channel_ref", "payer", "received_at", "balance"}`` — the
    balance after this payment. ``reverses`` (see :func:`reverse`) makes a negative entry.
    """
    ref = _check_ref(channel_ref)
    cents = to_cents(amount) if reverses is None else -to_cents(amount)
    if payer is not None and (not isinstance(payer, str) or len(payer) > PAYER_MAX):
        raise Invalid(f"payer must be text of at most {PAYER_MAX} characters")
    key = (payments.c.channel == channel) & (payments.c.channel_ref == ref)
    body = (user_number, cents, payer, reverses)
    with store.read() as conn:  # a repeated notification is answered without the write lock
        row = conn.execute(sa.select(payments).where(key)).first()
        if row is not None:
            return _same_again(store, conn, row, body)
    if store.engine.dialect.name == "sqlite":
        return _pay_grouped(store, _Pending(channel, ref, user_number, cents, payer, reverses), key, body)
    with store.write() as conn:
        seq = next_seq(conn)  # from here on this transaction is the only payment writer
        row = conn.execute(sa.select(payments).where(key)).first()
        if row is not None:
            return _same_again(store, conn, row, body)
        _opening(conn, user_number)
        conn.execute(sa.insert(payments).values(
            seq=seq, channel=channel, channel_ref=ref, account_id=user_number, amount_cents=cents,
            payer=payer, received_at=_bind_ts(store.clock()), reverses=reverses))
        _queue_payment_alert(store, conn, seq)
    with store.read() as conn:   # after the commit, outside the writers' queue: the balance now
        row = conn.execute(sa.select(payments).where(payments.c.seq == seq)).one()
        return _result(row, "applied", balance_in(store, conn, user_number)[0])


def _queue_payment_alert(store: Store, conn, seq: int) -> None:
    """The ``payment`` alert of payment ``seq`` to every contact of its account (and ``reconnect``
    when it reconnects a disconnected account: :mod:`accounts.reconnect`), queued in the
    transaction that records the payment (a transactional outbox: the alert exists iff the payment
    does). Reversals raise no alert."""
    row = conn.execute(sa.select(payments).where(payments.c.seq == seq)).one()
    if row.amount_cents <= 0:
        return
    balance, settled = balance_in(store, conn, row.account_id)
    day = store.lake.local_day(as_utc(row.received_at))
    ref = f"{row.channel}:{row.channel_ref}"
    data = outbox.canonical(account_id=row.account_id, day=day, amount=int(row.amount_cents), balance=balance,
                            ref=row.channel_ref)
    recipients = contacts_of(conn, row.account_id, day)
    outbox.enqueue(conn, [{"alert_id": outbox.alert_id(row.account_id, day, "payment", c["recipient"], ref),
                           "account_id": row.account_id, "day": day, "kind": "payment",
                           "recipient": c["recipient"], "language": c["language"], "data": data}
                          for c in recipients]
                   + reconnect_alerts(conn, store.lake, row.account_id, day, balance, settled, ref, row.channel_ref,
                                      recipients))


@dataclass
class _Pending:
    """A payment waiting for the group commit, and what became of it."""

    channel: str
    ref: str
    user_number: str
    cents: int
    payer: str | None
    reverses: int | None
    seq: int | None = None
    existed: bool = False           # the reference was already used (answered from the stored row)
    error: BaseException | None = None
    done: bool = False


def _commit_group(store: Store) -> None:
    """Insert every queued payment in one transaction (the caller holds ``store.writer``)."""
    with store.queue:
        group, store.pending[:] = list(store.pending), []
    if not group:
        return
    try:
        with store.engine.begin() as conn:
            seen = set()
            known = set(conn.execute(sa.select(accounts.c.account_id).where(
                accounts.c.account_id.in_({p.user_number for p in group}))).scalars())
            for p in group:
                k = (p.channel, p.ref)
                if k in seen or conn.execute(sa.select(payments.c.seq).where(
                        payments.c.channel == p.channel, payments.c.channel_ref == p.ref)).first():
                    p.existed = True
                    continue
                if p.user_number not in known:
                    p.error = NotFound(f"unknown user number {p.user_number!r}")
                    continue
                seen.add(k)
                p.seq = next_seq(conn)
                conn.execute(sa.insert(payments).values(
                    seq=p.seq, channel=p.channel, channel_ref=p.ref, account_id=p.user_number, amount_cents=p.cents,
                    payer=p.payer, received_at=_bind_ts(store.clock()), reverses=p.reverses))
                _queue_payment_alert(store, conn, p.seq)
    except BaseException as e:          # nothing of the group was committed
        for p in group:
            p.error, p.seq, p.existed = e, None, False
        raise
    finally:
        for p in group:
            p.done = True


def _pay_grouped(store: Store, p: _Pending, key, body: tuple) -> dict:
    with store.queue:
        store.pending.append(p)
    with store.writer:
        if not p.done:
            try:
                _commit_group(store)
            except BaseException:
                if p.error is None:
                    raise
    if p.error is not None:
        raise p.error
    with store.read() as conn:   # after the commit: the stored row and the balance now
        if p.existed:
            return _same_again(store, conn, conn.execute(sa.select(payments).where(key)).one(), body)
        row = conn.execute(sa.select(payments).where(payments.c.seq == p.seq)).one()
        return _result(row, "applied", balance_in(store, conn, p.user_number)[0])


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
