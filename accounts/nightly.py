"""What the nightly batch reads from the store, and what it records.

Protocol (exactly once, never refused):

1. ``table, w = payments_for_day(store, day, tz)`` reads the payments to credit on ``day``. ``w`` is
   the watermark: the highest payment number committed when the run read (payment numbers are taken
   in commit order, see :mod:`accounts.payments`, so every payment ≤ ``w`` was visible to the read
   and every later commit gets a number > ``w``). When ``day`` was settled before, its recorded
   watermark is used instead: a re-run reads the same payments as the first run.
2. The batch settles ``day`` and commits its outputs.
3. ``record_settled(store, day, w)`` records the watermark.

A payment is credited on the first settled day ``D`` with ``received day ≤ D`` and ``seq ≤ W(D)``.
For ``day`` with previous settled day ``P`` (watermark ``W(P)``) the rows are therefore: received on
or before ``day``, ``seq ≤ w``, and not credited by ``P`` — ``seq > W(P)`` or received after ``P``.
A payment received during ``day`` but committed after the run read (the last second before
midnight), or received after ``day`` was settled, counts on the next settled day; the server's clock
stamps ``received_at`` and nothing is refused. If the batch dies between 1 and 3, the day is not
recorded: its re-run reads afresh and replaces its outputs.
"""
from __future__ import annotations

import datetime as dt
import os
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import sqlalchemy as sa

from .errors import Conflict, Invalid
from .money import decimal
from .payments import as_utc
from .schema import accounts, counters, payments, settled_days
from .settings import contacts_in_force, settings_in_force  # noqa: F401  (the batch's other inputs)
from .store import DB_FILE, Store, open_store, utcnow

PAYMENTS = pa.schema([
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("amount", pa.decimal128(18, 2), nullable=False),   # negative: a reversal
    pa.field("received_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("channel", pa.string(), nullable=False),
    pa.field("channel_ref", pa.string(), nullable=False),
    pa.field("payer", pa.string()),
    pa.field("reverses", pa.int64()),
])


def _bounds(day: dt.date, tz) -> tuple[dt.datetime, dt.datetime]:
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    return (dt.datetime.combine(day, dt.time(), tz).astimezone(dt.timezone.utc),
            dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz).astimezone(dt.timezone.utc))


def payments_for_day(store: Store, day: dt.date, tz=None) -> tuple[pa.Table, int]:
    """(the payments to credit on lake-local ``day``, the watermark to record with it); see the
    module docstring. ``tz`` defaults to the lake's time zone."""
    tz = tz or store.tz
    with store.read() as conn:
        recorded = conn.execute(sa.select(settled_days.c.watermark).where(settled_days.c.day == day)).scalar()
        later = conn.execute(sa.select(sa.func.min(settled_days.c.day)).where(settled_days.c.day > day)).scalar()
        if recorded is None and later is not None:
            raise Invalid(f"{day} comes before the settled day {later}: settle days in order")
        w = recorded if recorded is not None else conn.execute(
            sa.select(counters.c.value).where(counters.c.name == "payments")).scalar_one()
        prev = conn.execute(sa.select(settled_days).where(settled_days.c.day < day)
                            .order_by(settled_days.c.day.desc()).limit(1)).first()
        end = _bounds(day, tz)[1]
        cond = [payments.c.seq <= w, payments.c.received_at < end]
        if prev is not None:
            cond.append(sa.or_(payments.c.seq > prev.watermark, payments.c.received_at >= _bounds(prev.day, tz)[1]))
        rows = conn.execute(sa.select(payments).where(*cond).order_by(payments.c.seq)).all()
    t = pa.Table.from_pylist([{"seq": r.seq, "account_id": r.account_id, "amount": decimal(r.amount_cents),
                               "received_at": as_utc(r.received_at), "channel": r.channel,
                               "channel_ref": r.channel_ref, "payer": r.payer, "reverses": r.reverses}
                              for r in rows], PAYMENTS)
    return t, int(w)


def record_settled(store: Store, day: dt.date, watermark: int) -> bool:
    """Record that ``day`` was settled with the payments up to ``watermark`` (from
    :func:`payments_for_day`). Recording the same again is a no-op (returns False)."""
    with store.write() as conn:
        old = conn.execute(sa.select(settled_days.c.watermark).where(settled_days.c.day == day)).scalar()
        if old is not None:
            if old != watermark:
                raise Conflict(f"{day} was settled with watermark {old}, not {watermark}")
            return False
        conn.execute(sa.insert(settled_days).values(day=day, watermark=int(watermark), settled_at=utcnow()))
    return True



class NightlyStore:
    """The store as the nightly batch sees it (:class:`meters.nightly_inputs.NightlyStore`)."""

    def __init__(self, store: Store):
        self.store = store

    def payments_for_day(self, day: dt.date) -> tuple[pa.Table, int]:
        return payments_for_day(self.store, day)

    def settings_in_force(self, day: dt.date) -> pa.Table:
        """As :func:`accounts.settings.settings_in_force`; a settled day's re-run leaves out the accounts
        created after its first run (they start on the first unsettled day)."""
        t = settings_in_force(self.store, day)
        with self.store.read() as conn:
            settled_at = conn.execute(sa.select(settled_days.c.settled_at).where(settled_days.c.day == day)).scalar()
            if settled_at is None:
                return t
            later = set(conn.execute(sa.select(accounts.c.account_id).where(
                accounts.c.created_at > as_utc(settled_at))).scalars())
        if not later:
            return t
        return t.filter(pa.compute.invert(pa.compute.is_in(t.column("account_id"), value_set=pa.array(sorted(later)))))

    def reset_settled(self, before: dt.date) -> None:
        start = _bounds(before, self.store.tz)[0]
        with self.store.write() as conn:
            early = conn.execute(sa.select(payments.c.channel, payments.c.channel_ref, payments.c.received_at)
                                 .where(payments.c.received_at < start).order_by(payments.c.seq).limit(1)).first()
            if early is not None:
                raise Invalid(f"payment {early.channel}:{early.channel_ref} of "
                              f"{self.store.lake.local_day(as_utc(early.received_at))} falls before {before}; "
                              "the billing start must not pass a payment")
            conn.execute(sa.delete(settled_days))

    def contacts_in_force(self, day: dt.date) -> pa.Table:
        return contacts_in_force(self.store, day)

    def record_settled(self, day: dt.date, watermark: int) -> bool:
        return record_settled(self.store, day, watermark)

    def export_registry(self, day: dt.date | None = None) -> None:
        from .export import export_registry

        export_registry(self.store, day)

    def close(self) -> None:
        self.store.close()


def has_store(lake, db: str | None) -> bool:
    """Whether ``lake`` has an account store: ``db`` (or ``$METERS_DB``) given, or its ``accounts.db``."""
    if db or os.environ.get("METERS_DB"):
        return True
    return lake.is_local and (lake.root / DB_FILE).exists()


def open_adopted(lake, db: str | None = None) -> Store:
    """Open (creating on first use) the store of ``lake`` and adopt what the lake holds
    (:mod:`accounts.adopt`)."""
    from .adopt import adopt_lake

    store = open_store(lake, db)
    adopt_lake(store)
    return store


def open_nightly(lake, db: str | None = None, *, create: bool = False) -> NightlyStore | None:
    """The ``meters.stores`` entry point: the lake's store for the batch, or None when it has none
    (``create``: make it)."""
    if not create and not has_store(lake, db):
        return None
    return NightlyStore(open_adopted(lake, db))
