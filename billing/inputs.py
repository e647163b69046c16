"""The billing day's input: the readings of the day (and the edge readings of its neighbours) as the
VEE kernel's CSR arrays, the carried state, the day's payments and earlier charges, and the
reconnections payments already ordered — everything :mod:`billing.day` computes from."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meters.lake import Lake
from meters.readings import Window
from meters.schemas import READINGS, UTC_S

from . import alerts, heating, ledger, state
from .accounts import Accounts

READ_COLUMNS = ["meter_id", "ts", "register_milli", "quantity_milli", "interval_s", "quality"]
SOURCE_ESTIMATES = ["E", "S", "F", "N", "estimated", "substituted"]
READINGS_EMPTY = READINGS.empty_table()


@dataclass(frozen=True)
class Grid:
    """The metering grid of one lake-local day: ``slots`` intervals of ``interval_s`` from ``start``
    to ``end`` (UTC), ``slot_end`` the end instant (s) of each."""

    day: dt.date
    start: dt.datetime
    end: dt.datetime
    interval_s: int
    tz: object

    @classmethod
    def of(cls, lake: Lake, day: dt.date, interval_s: int) -> "Grid":
        start, end = lake.day_bounds_utc(day)
        return cls(day, start, end, interval_s, lake.tz)

    @property
    def start_s(self) -> int:
        return int(self.start.timestamp())

    @property
    def slots(self) -> int:
        return (int(self.end.timestamp()) - self.start_s) // self.interval_s

    @property
    def slot_end(self) -> np.ndarray:
        return self.start_s + self.interval_s * np.arange(1, self.slots + 1, dtype=np.int64)


@dataclass
class DayInputs:
    """What the day's computation reads (for the accounts of one snapshot, in its order)."""

    grid: Grid
    readings: int                  # readings read (the day's and the edges of its neighbours)
    parts: tuple | None            # the VEE kernel's two CSR parts (:func:`vee_inputs`; consumed by VEE)
    unknown: int                   # readings dropped building them (no account, or no value)
    duplicates: int                # re-sent readings dropped while reading
    carried: state.Carried         # the state of the day before
    payments: np.ndarray           # cents paid during the day
    original: np.ndarray | None    # cents of an earlier run's first charge (−1: none), None: first run
    paid_back: set                 # accounts whose reconnection a payment of the day already ordered
    heat_before: tuple = ()        # heating: season heat read before today (billing/heating.py)


class DayReads:
    """What every block of a day reads alike, read once: the state of the day before (by block), the
    day's payments, an earlier run's first charges, the reconnections payments ordered, the contacts."""

    def __init__(self, lake: Lake, day: dt.date, accounts: Accounts, stored=None):
        self.lake, self.stored, self.accounts = lake, stored, accounts
        self.previous = state.Previous(lake, day, accounts)
        self.payments = ledger.payments_of_day(lake, day) if stored is None else stored.payments
        self.first_charges = ledger.first_charges(lake, day)
        self.paid_back = alerts.reconnected_by_payment(lake, day)
        self._contacts = None
        self._window: Window | None = None
        self._original = None

    def original(self, block: Accounts) -> np.ndarray | None:
        """An earlier run's first charge of each of ``block``'s accounts (−1: none; None: a first run),
        looked up once for all the day's accounts (per block, the lookup cost grew with the city)."""
        if self._original is None:
            if self.first_charges is None:
                return None
            self._original = ledger.original_charges(self.lake, None, self.accounts, self.first_charges)
            self.first_charges = None        # (the rows, 28 bytes an account, not kept for the night)
        i0 = block.offset - self.accounts.offset
        return self._original[i0:i0 + block.n]

    def readings(self, start: dt.datetime, end: dt.datetime) -> Window:
        """The readings of ``[start, end)`` for block after block (row groups read once)."""
        if self._window is None or (self._window.start, self._window.end) != (start, end):
            self._window = Window(self.lake, start, end, READ_COLUMNS)
        return self._window

    def contacts_at(self, block: Accounts) -> tuple[pa.Table, np.ndarray]:
        """The contacts of ``block``'s accounts and the row in ``block`` of each contact's account (all
        contacts are read and put in account order when a block first alerts someone)."""
        if self._contacts is None:
            self._contacts = self._all_contacts()
        c, row = self._contacts
        lo, hi = np.searchsorted(row, [block.offset, block.offset + block.n])
        rows = row[lo:hi].astype(np.int64) - block.offset
        ids = block.account_arrow.take(pa.array(rows))
        return c.slice(lo, hi - lo).add_column(0, "account_id", ids).select(alerts.CONTACT_COLUMNS), rows

    def _all_contacts(self) -> tuple[pa.Table, np.ndarray]:
        """Every contact of the run's accounts in account order, without their account ids (a block
        takes them from its accounts by row), and the account row of each. The ids are read and
        looked up first, the rest read after: the two are never held at once."""
        def read(columns):
            return (self.lake.read("contacts", columns=columns) if self.stored is None
                    else self.stored.contacts.select(columns))
        ids = read(["account_id"]).column("account_id")
        if ids.equals(self.accounts.accounts.column("account_id")):   # one each, in the accounts' order
            row, order = np.arange(len(ids), dtype=np.int32), None
        else:
            row = self.accounts.index_of(ids)
            order = np.argsort(row, kind="stable")       # (a contact's file order kept within its account)
            order = order[row[order] >= 0]               # the run's accounts' only
            row = row[order].astype(np.int32)
        del ids
        pa.default_memory_pool().release_unused()
        c = read([k for k in alerts.CONTACT_COLUMNS if k != "account_id"])
        if order is not None:
            c = c.take(pa.array(order))
            pa.default_memory_pool().release_unused()
        return c, row

    def recipients(self, accounts: Accounts) -> alerts.Recipients:
        return _LazyRecipients(self, accounts)


class _LazyRecipients(alerts.Recipients):
    """Recipients from the day's contacts, read at the first alert."""

    def __init__(self, reads: DayReads, accounts: Accounts):
        super().__init__(reads.lake, accounts)
        self._reads = reads

    def load(self, rows) -> None:
        if len(rows) and self._table is None:     # (the contacts' account rows known: not looked up)
            self._table, self._contact_row = self._reads.contacts_at(self._accounts)
        super().load(rows)


def read_day(lake: Lake, day: dt.date, accounts: Accounts, interval_s: int, stored=None,
             reads: DayReads | None = None) -> DayInputs:
    """``stored``: the day as the account store gave it (:class:`billing.store_inputs.StoreDay`), whose
    payments replace the lake's payment files. ``reads``: what the day's blocks read alike (default:
    read here for ``accounts``)."""
    grid = Grid.of(lake, day, interval_s)
    half = dt.timedelta(seconds=interval_s // 2)  # readings snap to the nearest grid instant
    dup: list[int] = []
    reads = reads or DayReads(lake, day, accounts, stored)
    tables = reads.readings(grid.start - half, grid.end + half).read(accounts.meter_range, dup)
    n = sum(t.num_rows for t in tables)
    main, extra, unknown = vee_inputs(tables, accounts.meter_ids, grid.start_s, interval_s)
    del tables                     # the CSR arrays hold what VEE needs
    return DayInputs(grid=grid, readings=n, parts=(main, extra), unknown=unknown, duplicates=sum(dup),
                     carried=(carried := state.load(lake, day, accounts, reads.previous)),
                     payments=ledger.credited(reads.payments, accounts.account_arrow),
                     original=reads.original(accounts),
                     paid_back=reads.paid_back,
                     heat_before=heating.carried_heat(lake, day, accounts, carried))


def with_columns(t: pa.Table) -> pa.Table:
    """``t`` with the READ_COLUMNS it lacks added as nulls (small tables only)."""
    for name in READ_COLUMNS:
        if name not in t.column_names:
            t = t.append_column(READINGS.field(name), pa.nulls(t.num_rows, READINGS.field(name).type))
    return t.select(READ_COLUMNS)


def part_arrays(t: pa.Table, meter_ids: np.ndarray, start_s: int, interval_s: int):
    """CSR kernel inputs of one readings table sorted by (meter_id, ts): rows of meters without an
    account, or without a value, are dropped. Returns (offsets, pos, reg, qty, qlen, est), dropped.
    Absent INTERVAL_COLUMNS are all null (:func:`meters.readings.null_columns`)."""
    n_acc = len(meter_ids)
    N = t.num_rows
    reg_col = t.column("register_milli")
    qty_col = t.column("quantity_milli") if "quantity_milli" in t.column_names else pa.nulls(0, pa.int64())
    if N == 0 or n_acc == 0:
        z = np.zeros(0)
        return (np.zeros(n_acc + 1, np.int64), z, z.astype(np.int64), z.astype(np.int64), z, z.astype(bool)), N
    # runs of equal meter_id, chunk by chunk (no copy of the column), groups of chunks in threads
    def runs(chunks, off):
        starts_l, run_m_l, last = [], [], None
        for ch in chunks:
            a = ch.to_numpy()
            b = np.flatnonzero(a[1:] != a[:-1]) + 1
            if last is None or a[0] != last:
                b = np.concatenate(([0], b))
            starts_l.append(b + off)
            run_m_l.append(a[b])
            last, off = a[-1], off + len(a)
        return starts_l, run_m_l, chunks[0][0].as_py(), last
    starts_l, run_m_l, prev_last = [], [], None
    for st_l, rm_l, first, last in over_chunk_groups(runs, t.column("meter_id")):
        if prev_last is not None and first == prev_last:   # a run continues across the groups
            st_l[0], rm_l[0] = st_l[0][1:], rm_l[0][1:]
        starts_l += st_l
        run_m_l += rm_l
        prev_last = last
    starts, run_m = np.concatenate(starts_l), np.concatenate(run_m_l)
    run_len = np.diff(np.append(starts, N))
    acc = np.searchsorted(meter_ids, run_m)
    known = (acc < n_acc) & (meter_ids[np.minimum(acc, n_acc - 1)] == run_m)
    sel = None
    if not known.all():
        sel = np.repeat(known, run_len)
    if reg_col.null_count:
        usable = pc.is_valid(reg_col) if len(qty_col) == 0 else pc.or_(pc.is_valid(reg_col), pc.is_valid(qty_col))
        usable = np.asarray(usable.to_numpy(zero_copy_only=False))
        sel = usable if sel is None else sel & usable
    if sel is not None:  # the rare path: drop rows, recount
        rows = np.flatnonzero(sel)
        counts = np.bincount(np.repeat(acc, run_len)[rows], minlength=n_acc + 1)[:n_acc]
    else:
        rows = None
        counts = np.zeros(n_acc, np.int64)
        counts[acc] = run_len
    offsets = np.zeros(n_acc + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])

    def take(a):
        return a if rows is None else a[rows]
    # chunk by chunk into arrays numpy allocates (large ones get huge pages): no per-chunk temporaries
    pos = np.empty(N)
    reg = np.empty(N, np.int64)

    def positions(chunks, off):  # positions on the grid
        tmp = np.empty(max(len(ch) for ch in chunks), np.int64)
        for ch in chunks:
            k = len(ch)
            np.subtract(ch.cast(UTC_S).view(pa.int64()).to_numpy(), start_s, out=tmp[:k])
            np.divide(tmp[:k], interval_s, out=pos[off:off + k])
            off += k

    def registers(chunks, off):
        for ch in chunks:
            reg[off:off + len(ch)] = ch.to_numpy()
            off += len(ch)
    over_chunk_groups(positions, t.column("ts"))
    over_chunk_groups(registers, reg_col.fill_null(-1) if reg_col.null_count else reg_col)
    pos, reg = take(pos), take(reg)
    n = len(pos)
    if len(qty_col) == 0 or qty_col.null_count == N:  # register readings only (the common case)
        qty, qlen, est = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)  # empty: register rows only
    else:
        qty = take(qty_col.fill_null(0).to_numpy()).astype(np.int64)
        qlen = take(t.column("interval_s").fill_null(interval_s).to_numpy()) / interval_s
        est = take(np.asarray(pc.is_in(t.column("quality"), value_set=pa.array(SOURCE_ESTIMATES))
                              .fill_null(False).to_numpy(zero_copy_only=False)))
    return (offsets, pos, reg, qty, qlen.astype(np.float64, copy=False), est), N - n


def over_chunk_groups(fn, col: pa.ChunkedArray, groups: int = 0) -> list:
    """``fn(chunks, offset)`` over contiguous groups of the non-empty chunks of ``col`` (offset = the
    group's first row), in threads (numpy and Arrow release the GIL); results in group order."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    chunks = [c for c in col.chunks if len(c)]
    if not chunks:
        return []
    k = groups or min(4, os.cpu_count() or 1)
    if len(col) < 1_000_000 or k == 1:
        return [fn(chunks, 0)]
    sizes = np.cumsum([0] + [len(c) for c in chunks])
    cuts = sorted({0, len(chunks), *(int(np.searchsorted(sizes, sizes[-1] * i // k)) for i in range(1, k))})
    work = [(chunks[a:b], int(sizes[a])) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    with ThreadPoolExecutor(len(work)) as pool:
        return list(pool.map(lambda w: fn(*w), work))


def vee_inputs(parts: list[pa.Table], meter_ids: np.ndarray, start_s: int, interval_s: int):
    """Two CSR parts for :func:`billing.vee.vee_kernel_parts`: the largest table (the day's own
    partition) as it is, the others (edge readings of the neighbouring days) merged and sorted."""
    parts = sorted(parts, key=lambda t: -t.num_rows)
    main = parts[0] if parts else READINGS_EMPTY.select(READ_COLUMNS)
    rest = [with_columns(t) for t in parts[1:]]
    extra = (pa.concat_tables(rest).sort_by([("meter_id", "ascending"), ("ts", "ascending")])
             if rest else READINGS_EMPTY.select(READ_COLUMNS))
    a, d1 = part_arrays(main, meter_ids, start_s, interval_s)
    b, d2 = part_arrays(extra, meter_ids, start_s, interval_s)
    return a, b, d1 + d2
