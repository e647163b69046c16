"""Billing alerts: their kinds, who receives them, and their message texts — the room alert delivery
grows from.

The nightly run writes one file per day to the ``alerts`` table (``day=D/billing.parquet``, replaced
when D is re-run); each payment writes its own (``day=D/payment-<hash>.parquet``). An alert goes to
every contact of its account, in the contact's language (``account:<id>`` when it has none); the
operator's kinds (``data_gap``, ``disconnect_held``, ``estimated_day``) go to ``operator``. Every row
carries a stable id (:func:`meters.outbox.alert_id`) and its values as JSON (what the delivery
templates show); :func:`queue_day` puts the day's alerts into the outbox after the run commits, a
payment's at once.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meters import outbox
from meters.errors import MetersError
from meters.lake import Lake
from meters.recipients import DEFAULT_LANGUAGE
from meters.schemas import ALERTS, UTC_MS

from . import vee
from .days import date_array, from_number
from .ledger import PAYMENT_PREFIX, payment_file_name
from .money_io import fmt, fmt_parts

if TYPE_CHECKING:
    from .accounts import Accounts
    from .day import Settlement

KINDS = {  # kind → when it is sent
    "bill_issued": "a postpaid bill period closed",
    "auto_topup": "a prepaid balance fell below the account's threshold and was topped up",
    "low_balance": "a prepaid balance fell below warning level 1 or 2 (once per crossing)",
    "arrears": "a prepaid balance went negative, or a postpaid bill is overdue (repeated)",
    "disconnect": "a prepaid account's arrears outlasted the grace days: disconnection ordered",
    "reconnect": "a disconnected account was paid or topped up above the reconnection amount",
    "data_gap": "intervals of a meter were estimated (to the operator)",
    "disconnect_held": "a due disconnection was not ordered: the account's day was mostly estimates (to the operator)",
    "estimated_day": "a day was billed below the coverage minimum with --allow-estimates (to the operator)",
    "payment": "a payment was received (``meters pay``)",
}
OPERATOR = "operator"
BILLING_FILE = "billing.parquet"
DAY_STATS = ["account_id", "kind", "alert_id"]   # statistics of the night's file: what readers filter by


class Recipients:
    """Contacts of a snapshot's accounts, read on demand (only alerted accounts need them) from
    ``table`` (the run's contacts, read once for its blocks) or else the lake."""

    def __init__(self, lake: Lake, accounts: Accounts, table: pa.Table | None = None):
        self._lake, self._accounts, self._table = lake, accounts, table
        self._contact_row: np.ndarray | None = None     # the account row of each contact (-1: none)
        self._one: bool | None = None                    # … one each, in order (:meth:`_one_each`)
        self._columns: tuple[pa.Array, pa.Array] | None = None   # the contacts' recipient and language

    def load(self, rows) -> None:
        """Have the contacts of the accounts at ``rows`` at hand (the lake's read at the first need)."""
        if len(rows) and self._table is None:
            self._table = self._lake.read("contacts", columns=CONTACT_COLUMNS)

    def contacts_of(self, rows) -> pa.Table:
        """The contacts of the accounts at ``rows`` (in the contacts' order)."""
        self.load(rows)
        if self._table is None:
            return pa.table({k: pa.array([], pa.string()) for k in CONTACT_COLUMNS})
        ids = self._accounts.account_arrow.take(pa.array(np.asarray(rows, np.int64)))
        return self._table.filter(pc.is_in(self._table.column("account_id"), value_set=ids))

    def of_rows(self, rows: np.ndarray) -> tuple[np.ndarray, pa.Array, pa.Array]:
        """Every recipient of the accounts at ``rows``: (the position in ``rows`` of each, in order;
        its recipient; its language, or null), ``account:<id>`` for an account without contacts."""
        rows = np.asarray(rows, np.int64)
        self.load(rows)
        c = self._table
        if c is None:
            c = pa.table({k: pa.array([], pa.string()) for k in CONTACT_COLUMNS})
        elif self._contact_row is None:             # (looked up once, not per kind)
            row = pc.index_in(c.column("account_id"), value_set=self._accounts.account_arrow)
            self._contact_row = row.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        if self._table is not None and self._one_each():   # contact k is account k's only one: taken by row
            take = pa.array(rows)
            return np.arange(len(rows)), self._columns[0].take(take), self._columns[1].take(take)
        ids = self._accounts.account_arrow.take(pa.array(rows))
        at = np.full(len(self._accounts.account_arrow) + 1, -1, np.int64)   # account row → position in rows
        at[rows] = np.arange(len(rows))
        j = at[self._contact_row] if self._table is not None else np.zeros(0, np.int64)   # (no account: -1)
        order = np.flatnonzero(j >= 0)
        order = order[np.argsort(j[order], kind="stable")]   # (an account's contacts in their order)
        j = j[order]
        none = np.flatnonzero(np.bincount(j, minlength=len(rows)) == 0)
        pos = np.concatenate([j, none])
        order2 = np.argsort(pos, kind="stable")
        recipients, languages = self._columns if self._table is not None else \
            (c.column("recipient").combine_chunks(), c.column("language").combine_chunks())
        recipient = pa.concat_arrays([recipients.take(pa.array(order)),
                                      pc.binary_join_element_wise("account:", ids.take(pa.array(none)), "")])
        language = pa.concat_arrays([languages.take(pa.array(order)), pa.nulls(len(none), pa.string())])
        return pos[order2], recipient.take(pa.array(order2)), language.take(pa.array(order2))

    def _one_each(self) -> bool:
        """Whether the contacts are one per account, in the accounts' order (the usual registry): then
        the recipients of rows are the contacts at those rows. (Checked once, with the contacts'
        recipient and language columns made strings once.)"""
        if self._one is None:
            c = self._table
            self._columns = (c.column("recipient").combine_chunks().cast(pa.string()),
                             c.column("language").combine_chunks().cast(pa.string()))
            row, n = self._contact_row, len(self._accounts.account_arrow)
            self._one = len(row) == n and bool(np.array_equal(row, np.arange(n)))
        return self._one


CONTACT_COLUMNS = ["account_id", "recipient", "language"]


def of_account(lake: Lake, account_id: str) -> list[tuple[str, str | None]]:
    """(recipient, language) of each recipient of one account's alerts."""
    contacts = lake.read("contacts")
    contacts = contacts.filter(pc.equal(contacts.column("account_id"), account_id))
    return (list(zip(contacts.column("recipient").to_pylist(), contacts.column("language").to_pylist()))
            or [(f"account:{account_id}", None)])


values = outbox.canonical


# -- the billing day's alerts ----------------------------------------------------------------------------
ESTIMATED_NOTE = " (Estimated: most of this day's readings are missing.)"


def _text(*parts) -> pa.Array:
    """``parts`` (arrays, str constants, lists of them as :func:`billing.money_io.fmt_parts` gives)
    joined row by row in one call (:func:`meters.outbox.joined`; an alert text always has an array)."""
    return outbox.joined([q for p in parts for q in (p if isinstance(p, list) else [p])])


def day_sections(accounts: Accounts, day: dt.date, ts_end: pa.Scalar, s: Settlement, quality, flag,
                 recipients: Recipients, estimated: np.ndarray | None = None) -> tuple[pa.Table, np.ndarray]:
    """The day's alerts, kind by kind, from its settlement and VEE outcome, and the section of each
    row (0, 1, …: the kinds in the order they are emitted), so that blocks of accounts put together
    give the whole city's order (a stable sort by section). Built column by column in Arrow and numpy
    (texts, values, ids: no Python per alert); ``reference/alerts.py`` is the row-by-row original.
    ``estimated``: :func:`estimated_counts` of ``quality`` when the caller has them."""
    acc = accounts
    tables: list[pa.Table] = []
    sections: list[np.ndarray] = []

    def emit(kind, rows, of_rows, message, operator=False, section=None, **data):
        """The alerts of ``kind`` for the accounts at ``rows`` (``of_rows``: their account ids and
        currencies; ``message``: the parts of its text; ``data`` and a ``section`` other than the
        kind's: one value per row)."""
        n = len(rows)
        if not n:
            return
        data = {"account_id": of_rows[0], "day": day, "currency": of_rows[1],
                "utility": pa.array(acc.utility[rows], pa.string()), **data}
        if not operator:
            est = s.estimated[rows]
            if est.any():
                message = [*message, pc.if_else(pa.array(est), ESTIMATED_NOTE, "") if not est.all() else ESTIMATED_NOTE]
            data["estimated"] = outbox.Maybe(est, True)
        message = _text(*message)
        text = outbox.canonical_rows(n, **data)
        if operator:
            pos, to, lang = np.arange(n), pa.repeat(pa.scalar(OPERATOR), n), pa.nulls(n, pa.string())
        else:
            pos, to, lang = recipients.of_rows(rows)
        m, take = len(pos), pa.array(pos)

        def each(col):            # (one recipient each: pos is every row once, in order)
            return col if m == n else col.take(take)

        account = each(data["account_id"])
        lang = pc.fill_null(lang, "")
        tables.append(pa.table({
            "account_id": account, "ts": pa.array(np.full(m, ts_end.value, np.int64), UTC_MS),
            "kind": pa.repeat(pa.scalar(kind), m), "recipient": to, "message": each(message),
            "alert_id": outbox.alert_ids(account, day, kind, to),
            "language": pc.if_else(pc.equal(lang, ""), DEFAULT_LANGUAGE, lang), "data": each(text)},
            schema=ALERTS))
        sections.append(np.full(m, SECTIONS.index(kind), np.int8) if section is None
                        else np.asarray(section, np.int8)[pos])

    st, prepaid = s.prepaid_settled, s.prepaid
    ids, meters, fmt_ = acc.account_arrow, acc.meter_ids, fmt_parts
    day_s, due = day.isoformat(), from_number(s.due_day)

    def of(rows):
        """Account id and currency of the accounts at ``rows`` (the currencies of theirs alone)."""
        return ids.take(pa.array(rows)), pa.array(acc.currency[rows], pa.string())

    def meter_text(rows):
        return pa.array(meters[rows]).cast(pa.string())

    recipients.load(np.flatnonzero(prepaid & ((st.topup > 0) | (st.low_alert > 0) | st.arrears_alert | st.disconnect
                                              | st.reconnect) | s.notice | s.closed))
    i = np.flatnonzero(s.closed)
    if len(i):          # (an empty section builds nothing: its texts cost per call, not per row)
        a, c = of(i)
        start, end = date_array(s.bill_start[i]), date_array(s.bill_end[i])
        start_t, end_t = pc.fill_null(start.cast(pa.string()), "None"), pc.fill_null(end.cast(pa.string()), "None")
        partial = pc.if_else(pa.array(s.partial[i]), _text(" (first bill, partial: billing started ", start_t, ")"), "")
        emit("bill_issued", i, (a, c), ("Bill for account ", a, ", ", start_t, " to ", end_t, partial, ": ",
                                        fmt_(s.bill_cents[i]), " ", c, ", due ", str(due), "."),
             start=start, end=end, amount=s.bill_cents[i], due=due, partial=s.partial[i])
    i = np.flatnonzero(prepaid & (st.topup > 0))
    if len(i):
        a, c = of(i)
        emit("auto_topup", i, (a, c), ("Balance low, auto-paid ", fmt_(st.topup[i]), " ", c, " for account ", a, " on ",
                                       day_s, "; balance now ", fmt_(st.balance[i]), " ", c, "."),
             amount=st.topup[i], balance=st.balance[i])
    i = np.flatnonzero(prepaid & (st.low_alert > 0))
    if len(i):
        a, c = of(i)
        lvl = st.low_alert[i].astype(np.int64)
        threshold = np.where(lvl == 1, acc.warn_1[i], acc.warn_2[i])
        emit("low_balance", i, (a, c), ("Balance of account ", a, " is ", fmt_(st.balance[i]), " ", c, ", below ",
                                        fmt_(threshold), " ", c, " (level ", pa.array(lvl).cast(pa.string()),
                                        "); please top up."),
             balance=st.balance[i], threshold=threshold, level=lvl)
    i = np.flatnonzero(prepaid & st.arrears_alert)
    if len(i):
        a, c = of(i)
        emit("arrears", i, (a, c), ("Account ", a, " is in arrears: balance ", fmt_(st.balance[i]), " ", c, " on ",
                                    day_s, "; supply will be disconnected unless topped up."), balance=st.balance[i])
    i = np.flatnonzero(prepaid & st.disconnect)
    if len(i):
        (a, c), m = of(i), meter_text(i)
        since = date_array(st.arrears_since[i])
        emit("disconnect", i, (a, c), ("Disconnection ordered for account ", a, " (meter ", m, "): balance ",
                                       fmt_(st.balance[i]), " ", c, " since ",
                                       pc.fill_null(since.cast(pa.string()), "None"), "."),
             meter_id=meters[i], balance=st.balance[i], since=since)
    i = np.flatnonzero(s.held)
    if len(i):
        (a, c), m = of(i), meter_text(i)
        emit("disconnect_held", i, (a, c), ("Disconnection of account ", a, " (meter ", m, ") not ordered on ", day_s,
                                            ": balance ", fmt_(st.balance[i]), " ", c,
                                            ", but most of the day's intervals are estimated."),
             operator=True, meter_id=meters[i], balance=st.balance[i])
    i = np.flatnonzero(prepaid & st.reconnect)
    if len(i):
        (a, c), m = of(i), meter_text(i)
        emit("reconnect", i, (a, c), ("Reconnection ordered for account ", a, " (meter ", m, "): balance ",
                                      fmt_(st.after_payments[i]), " ", c, " after payment."),
             meter_id=meters[i], balance=st.after_payments[i])
    i = np.flatnonzero(s.notice)
    if len(i):
        a, c = of(i)
        overdue = s.overdue[i].astype(np.int64)
        emit("arrears", i, (a, c), ("Bill of account ", a, " is ", pa.array(overdue).cast(pa.string()), " day(s) overdue: ",
                                    fmt_(-s.balance[i]), " ", c, " unpaid; late penalty so far ", fmt_(s.penalty[i]), " ", c,
                                    " (1‰ per day)."),
             section=np.where(prepaid[i], SECTIONS.index("arrears"), SECTIONS.index("postpaid arrears")), overdue_days=overdue, unpaid=-s.balance[i], penalty=s.penalty[i])
    S = quality.shape[1]
    est = estimated_counts(quality) if estimated is None else estimated
    i = np.flatnonzero(est)
    if len(i):
        (a, c), m = of(i), meter_text(i)
        why, reasons = _reasons(quality[i], flag[i])
        emit("data_gap", i, (a, c), ("Meter ", m, " (account ", a, "): ", pa.array(est[i]).cast(pa.string()), " of ",
                                     str(S), " intervals estimated on ", day_s, " (", why, ")."),
             operator=True, meter_id=meters[i], estimated=est[i], intervals=int(S), reasons=reasons)
    if not tables:
        return ALERTS.empty_table(), np.zeros(0, np.int8)
    return pa.concat_tables(tables), np.concatenate(sections)


def estimated_counts(quality: np.ndarray) -> np.ndarray:
    """The number of intervals not ``actual`` of each meter, counted in the rows that have any (found
    eight intervals at a time: most meters have none)."""
    other = quality != vee.ACTUAL
    words = other.view(np.uint64) if other.shape[1] and other.shape[1] % 8 == 0 and other.flags.c_contiguous else other
    rows = np.flatnonzero(words.any(axis=1))
    est = np.zeros(len(quality), np.int64)
    est[rows] = other[rows].sum(axis=1)
    return est


def _reasons(quality: np.ndarray, flag: np.ndarray) -> tuple[pa.Array, outbox.Raw]:
    """Per row: the estimated intervals' reasons as text (``gap 3, spike 1``) and as a JSON object
    (``{"gap":3,"spike":1}``), names sorted."""
    k, F = len(quality), len(vee.FLAG_NAMES)
    r, col = np.nonzero(quality != vee.ACTUAL)
    counts = np.bincount(r * F + flag[r, col].astype(np.int64), minlength=k * F).reshape(k, F)
    names = np.array(vee.FLAG_NAMES, dtype=object)
    text, obj = [], []
    for name in sorted(set(vee.FLAG_NAMES)):
        n = counts[:, names == name].sum(axis=1)
        has, n_t = pa.array(n > 0), pa.array(n).cast(pa.string())
        text.append(pc.if_else(has, _text(f", {name} ", n_t), ""))
        obj.append(pc.if_else(has, _text("," + json.dumps(name, ensure_ascii=False) + ":", n_t), ""))
    return (pc.utf8_slice_codeunits(_text(*text), 2),
            outbox.Raw(_text("{", pc.utf8_slice_codeunits(_text(*obj), 1), "}")))


# the order of the day's alert kinds (arrears twice: prepaid arrears, then postpaid overdue notices)
SECTIONS = ("bill_issued", "auto_topup", "low_balance", "arrears", "disconnect", "disconnect_held", "reconnect",
            "postpaid arrears", "data_gap")


def estimated_day(day: dt.date, ts_end, covered: int, accounts: int, minimum: float) -> pa.Table:
    """The operator's alert for a day billed below the coverage minimum (``--allow-estimates``)."""
    msg = (f"Billing of {day} used estimates: readings cover {covered} of {accounts} meters "
           f"({covered / max(accounts, 1):.1%}, minimum {minimum:.0%}); billed with --allow-estimates.")
    data = values(day=day, covered=int(covered), accounts=int(accounts), minimum=float(minimum))
    return pa.table({"account_id": pa.nulls(1, pa.string()), "ts": pa.array([ts_end], ALERTS.field("ts").type),
                     "kind": ["estimated_day"], "recipient": [OPERATOR], "message": [msg],
                     "alert_id": [outbox.alert_id(None, day, "estimated_day", OPERATOR)],
                     "language": [DEFAULT_LANGUAGE], "data": [data]}, schema=ALERTS)


class DaySpill:
    """The night's alerts kept on disk as the blocks produce them, one hidden Arrow stream file per
    section (:data:`SECTIONS`, then the day's own alerts) in the day's ``alerts`` partition, until
    :meth:`write` streams them section by section — the whole city's order — into the day's file:
    the night holds one block's alerts, not the city's."""

    def __init__(self, lake: Lake, day: dt.date):
        self.lake, self.day = lake, day
        self.dir = lake.partition_dir("alerts", day.isoformat())
        self._tag = uuid.uuid4().hex
        self._open: dict[int, tuple] = {}          # section → (path, file, stream writer)

    def add(self, table: pa.Table, section: np.ndarray) -> None:
        """Append one block's alerts (``section``: each row's, as :func:`day_sections` gives them)."""
        if not table.num_rows:
            return
        secs = np.unique(section)
        for sec in secs:
            part = table if len(secs) == 1 else table.filter(pa.array(section == sec))
            self._writer(int(sec)).write_table(part)

    def _writer(self, sec: int):
        if sec not in self._open:
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.dir / f".{BILLING_FILE}.{self._tag}.{sec:02d}.arrows"
            fh = open(path, "wb")
            self._open[sec] = (path, fh, pa.ipc.new_stream(fh, ALERTS))
        return self._open[sec][2]

    def write(self) -> dict[str, int]:
        """Write the day's file (row groups as one whole-table write makes them) and drop the spill;
        returns the number of alerts per kind, in the order the kinds first appear."""
        kinds: dict[str, int] = {}
        out = self.lake.staged_writer("alerts", self.day.isoformat(), file_name=BILLING_FILE, stats=DAY_STATS)
        try:
            for t in _row_groups(self._batches(), out.row_group_size):
                for vc in pc.value_counts(t.column("kind")).to_pylist():
                    kinds[vc["values"]] = kinds.get(vc["values"], 0) + vc["counts"]
                out.write(t.combine_chunks())   # (one chunk: the pages fall as in a whole-table write)
            out.finish()
        except BaseException:
            out.abort()
            raise
        finally:
            self.abort()
        return kinds

    def _batches(self):
        for sec in sorted(self._open):
            path, fh, w = self._open[sec]
            w.close()
            fh.close()
            with pa.OSFile(str(path)) as f:
                yield from pa.ipc.open_stream(f)

    def abort(self) -> None:
        """Remove the spill files."""
        for path, fh, w in self._open.values():
            with contextlib.suppress(Exception):
                w.close()
            fh.close()
            path.unlink(missing_ok=True)
        self._open = {}


def _row_groups(batches, size: int):
    """``batches`` as tables of ``size`` rows (the last one shorter)."""
    buf, n = [], 0
    for b in batches:
        buf.append(b)
        n += b.num_rows
        while n >= size:
            t = pa.Table.from_batches(buf, ALERTS)
            yield t.slice(0, size)
            rest = t.slice(size)
            buf, n = rest.to_batches(), rest.num_rows
    if n:
        yield pa.Table.from_batches(buf, ALERTS)


def queue_day(lake: Lake, day: dt.date) -> dict | None:
    """Put the committed day's alerts into the account store's outbox (idempotent: what was queued
    before is not queued again; None: the lake has no account store)."""
    try:
        return outbox.enqueue_day(lake, day, required=False)
    except MetersError as e:
        raise MetersError(f"{day} is settled, but its alerts were not queued for delivery ({e}); queue them "
                          f"with `meters alerts queue {day}`") from None


# -- payments' alerts -------------------------------------------------------------------------------------
def write_payment_alerts(lake: Lake, account_id: str, c: int, balance: int, ref: str, at: dt.datetime,
                         reconnect: bool) -> None:
    """``payment`` (and ``reconnect`` when the payment ordered it) for a recorded payment, queued for
    delivery at once when the lake has an account store."""
    recipients = of_account(lake, account_id)
    day = lake.local_day(at)
    msg = (f"Payment of {fmt(c)} received for account {account_id} (ref {ref}); "
           f"balance {fmt(balance)}.")
    kinds = [("payment", msg, values(account_id=account_id, day=day, amount=c, balance=balance, ref=ref))]
    if reconnect:
        kinds.append(("reconnect", f"Reconnection ordered for account {account_id}: balance {fmt(balance)} after "
                      f"payment (ref {ref}).", values(account_id=account_id, day=day, balance=balance, ref=ref)))
    rows = [{"account_id": account_id, "ts": at, "kind": k, "recipient": r, "message": m,
             "alert_id": outbox.alert_id(account_id, day, k, r, ref), "language": lang or DEFAULT_LANGUAGE,
             "data": d} for k, m, d in kinds for r, lang in recipients]
    lake.write("alerts", pa.Table.from_pylist(rows, ALERTS), day.isoformat(), file_name=payment_file_name(ref))
    engine = outbox.open_outbox(lake, required=False)
    if engine is not None:
        try:
            outbox.enqueue(engine, [r | {"day": day} for r in rows])
        finally:
            engine.dispose()


def reconnected_by_payment(lake: Lake, day: dt.date) -> set[str]:
    """Accounts whose reconnection a payment of ``day`` already ordered (``meters pay`` and the
    account service's payments announce it at once; the nightly run then does not repeat it)."""
    d = lake.partition_dir("alerts", day.isoformat())
    out: set[str] = set()
    try:
        engine = outbox.open_outbox(lake, required=False)
    except MetersError:          # a store without the outbox yet: only the lake's payments can tell
        engine = None
    if engine is not None:
        try:
            out |= outbox.reconnected_by_payment(engine, day)
        finally:
            engine.dispose()
    for f in sorted(d.glob(f"{PAYMENT_PREFIX}*.parquet")) if d.exists() else []:
        t = pq.read_table(f, schema=ALERTS)
        out.update(a for a, k in zip(t.column("account_id").to_pylist(), t.column("kind").to_pylist())
                   if k == "reconnect")
    return out
