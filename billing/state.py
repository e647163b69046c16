"""The carried billing state: what day D needs of day D−1, one row per account, and its ``billing_state``
table (the commit of a settled day).

:class:`Carried` holds the VEE and settlement fields and the tariff engine's
:class:`billing.engine.CycleState`. The Arrow mapping is written once, from the fields: each field of
:class:`Carried` that has column metadata, and each field of ``CycleState``, is the ``billing_state``
column of the same name (``meters.schemas.BILLING_STATE``), converted by that column's Arrow type
(timestamp ↔ int64 seconds, date ↔ day number, decimal ↔ cents, list ↔ the per-account array shape).
A new state field is therefore a change in two places: the field (here, or in ``CycleState`` for the
tariff state) and its column in ``BILLING_STATE``; states written before a column existed read as the
field's default. See docs/billing.md.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meters.errors import MetersError
from meters.lake import Lake
from meters.schemas import BILLING_STATE

from .days import NONE_DAY, date_array
from .engine import CycleState
from .money_io import cents, money

NO_TS = np.iinfo(np.int64).min   # "no timestamp" in int64-second arrays


def _column(default, dtype, per_meter: bool = False, later: bool = False):
    """A field stored as the ``billing_state`` column of its name: ``default`` for a fresh account
    (and for nulls); ``per_meter`` fields restart when the account's meter was replaced; ``later``
    fields are set after the state is made (by the step that owns them)."""
    meta = {"default": default, "dtype": dtype, "per_meter": per_meter}
    return field(default=None, metadata=meta) if later else field(metadata=meta)


@dataclass
class Carried:
    """The state carried from one settled day to the next, one row per account of the run."""

    base_ts: np.ndarray = _column(NO_TS, np.int64, per_meter=True)    # last accepted register reading (s)
    base_reg_milli: np.ndarray = _column(0, np.int64)                 # … its register value
    avg_milli: np.ndarray = _column(-1.0, np.float64, per_meter=True)  # profile: mean per interval (<0: none)
    pending_milli: np.ndarray = _column(0.0, np.float64, per_meter=True)  # estimated since base_ts (true-up)
    step: np.ndarray = _column(0, np.int64, per_meter=True)           # reading step in intervals (0: unknown)
    charged_cents: np.ndarray = _column(0, np.int64)                  # charged so far in the open period
    balance: np.ndarray = _column(None, np.int64)                     # cents; fresh accounts: opening balance
    level: np.ndarray = _column(0, np.int8)                           # low-balance level reached
    arrears_since: np.ndarray = _column(NONE_DAY, np.int32)           # day number
    disconnected: np.ndarray = _column(False, np.bool_)
    due_date: np.ndarray = _column(NONE_DAY, np.int32)                # postpaid: oldest unpaid bill's due day
    billed_from: np.ndarray = _column(NONE_DAY, np.int32)             # the account's first billed day
    heat_season_milli: np.ndarray = _column(-1, np.int64, later=True)  # heating (billing/heating.py): season
    heat_billed_milli: np.ndarray = _column(-1, np.int64, later=True)  # heat to date, to the last bill (−1: unknown)
    engine: CycleState = field(default=None)                          # the tariff engine's counters
    opening: np.ndarray = field(default=None)                         # True: no carried state (fresh account)

    @classmethod
    def fresh(cls, n: int, tables, opening_balance: np.ndarray) -> "Carried":
        """State of ``n`` accounts never billed: defaults, their opening balances, empty counters."""
        cols = {name: (opening_balance.copy() if meta["default"] is None
                       else np.full(n, meta["default"], meta["dtype"])) for name, meta in stored_fields()}
        return cls(**cols, engine=CycleState.empty(n, tables), opening=np.ones(n, bool))


def stored_fields() -> list[tuple[str, dict]]:
    """(name, metadata) of the :class:`Carried` fields stored as columns."""
    return [(f.name, f.metadata) for f in fields(Carried) if "dtype" in f.metadata]


# -- Arrow → state ----------------------------------------------------------------------------------
def _values(col: pa.ChunkedArray, arrow_type: pa.DataType, null):
    if pa.types.is_decimal(arrow_type):
        return cents(col)
    if pa.types.is_timestamp(arrow_type):
        col = col.cast(pa.int64())
    elif pa.types.is_date(arrow_type):
        col = col.cast(pa.int32())
    return col.fill_null(null).to_numpy(zero_copy_only=False)


def settled_days(lake: Lake) -> list[dt.date]:
    """Days whose billing is committed (they have a ``billing_state`` partition)."""
    return [dt.date.fromisoformat(k) for k in lake.partitions("billing_state") if lake.files("billing_state", k)]


class Previous:
    """The state of the day before ``day``, read block by block: the rows of a block's meter range
    (row groups pruned by their ``meter_id`` statistics; the state is written in meter order), plus the
    few rows of accounts whose meter moved to another block's range since (read once)."""

    def __init__(self, lake: Lake, day: dt.date, accounts):
        self.prev = (day - dt.timedelta(days=1)).isoformat()
        files = lake.current_files("billing_state", self.prev) if self.prev in lake.partitions("billing_state") else []
        try:
            self.files = [pq.ParquetFile(f) for f in files]
            self.moved = self._moved(accounts) if self.files and accounts.n else None
        except (OSError, pa.ArrowException) as e:
            raise lake.damage(files, e) from None
        self._cache: dict[tuple[int, int], pa.Table] = {}
        self.groups = list(self._groups())   # once: per block it cost the night time growing with the city

    def _groups(self):
        for i, f in enumerate(self.files):
            md = f.metadata
            col = md.schema.names.index("meter_id")
            for g in range(md.num_row_groups):
                st = md.row_group(g).column(col).statistics
                lo, hi = (st.min, st.max) if st is not None and st.has_min_max else (None, None)
                yield i, g, lo, hi

    def _moved(self, accounts) -> pa.Table | None:
        """Rows whose account's meter is not the stored one (None: every account kept its meter)."""
        reg = accounts.accounts
        if self._same(reg):
            return None
        t = pa.concat_tables([f.read(columns=["account_id", "meter_id"]) for f in self.files])
        at = accounts.index_of(t.column("account_id"))      # (a million ids hashed at a time)
        now = reg.column("meter_id").combine_chunks().take(pa.array(at, mask=at < 0))
        moved = np.flatnonzero(pc.fill_null(pc.not_equal(now, t.column("meter_id")), False)
                               .to_numpy(zero_copy_only=False))
        if not len(moved):
            return None
        return _stored(pa.concat_tables([f.read() for f in self.files]).take(pa.array(moved)))

    def _same(self, reg: pa.Table) -> bool:
        """Whether the stored rows are ``reg``'s accounts and meters in its order (compared row group by
        row group: the city's ids are not held at once)."""
        i0, cols = 0, ["account_id", "meter_id"]
        for f in self.files:
            for g in range(f.metadata.num_row_groups):
                part = f.read_row_group(g, columns=cols)
                n = part.num_rows
                if i0 + n > reg.num_rows or not all(part.column(k).equals(reg.column(k).slice(i0, n)) for k in cols):
                    return False
                i0 += n
        return i0 == reg.num_rows

    def rows(self, meter_range: tuple[int, int] | None) -> pa.Table | None:
        """The stored rows a block with ``meter_range`` (None: every meter) may need."""
        if not self.files:
            return None
        lo, hi = meter_range if meter_range is not None else (None, None)
        parts = []
        for i, g, g_lo, g_hi in self.groups:
            if meter_range is not None and g_lo is not None and (g_hi < lo or g_lo > hi):
                if g_hi < lo:
                    self._cache.pop((i, g), None)   # blocks come in meter order: not needed again
                continue
            if (i, g) not in self._cache:
                self._cache[(i, g)] = _stored(self.files[i].read_row_group(g))
            parts.append(self._cache[(i, g)])
        t = pa.concat_tables(parts) if parts else BILLING_STATE.empty_table()
        if meter_range is not None:
            m = t.column("meter_id")
            t = t.filter(pc.and_(pc.greater_equal(m, lo), pc.less_equal(m, hi)))
        if self.moved is not None:
            t = pa.concat_tables([t, self.moved])
        return t


def _stored(t: pa.Table) -> pa.Table:
    """Rows read from a state file in the table's schema (Parquet keeps timestamps in ms)."""
    fields = [f for f in BILLING_STATE if f.name in t.column_names]      # (a column missing: an older state)
    return pa.Table.from_arrays([t.column(f.name).cast(f.type) for f in fields], schema=pa.schema(fields))


def load(lake: Lake, day: dt.date, accounts, previous: Previous | None = None) -> Carried:
    """The state carried into ``day`` (that of ``day`` − 1) aligned to ``accounts``
    (:class:`billing.accounts.Accounts`); accounts without one are fresh. ``previous``: the state of
    the day before as read for the run's blocks (default: read whole)."""
    n, tables = accounts.n, accounts.tables
    s = Carried.fresh(n, tables, accounts.opening)
    prev = (day - dt.timedelta(days=1)).isoformat()
    if previous is not None:
        t = previous.rows(accounts.meter_range)
    else:
        t = lake.read("billing_state", prev) if prev in lake.partitions("billing_state") else None
    if t is None or t.num_rows == 0:
        return s
    if t.num_rows == n and t.column("account_id").equals(pa.chunked_array([accounts.account_arrow])):
        idx = np.arange(n)          # the usual case: the same accounts in the same order
    else:
        rows = accounts.index_of(t.column("account_id"))
        ok = rows >= 0
        idx = rows[ok]
        t = t.filter(pa.array(ok))
        uniq, first = np.unique(idx, return_index=True)   # a moved account's row read twice: once
        if len(first) < len(idx):
            idx, t = uniq, t.take(pa.array(first))
    same_meter = t.column("meter_id").to_numpy() == accounts.meter_ids[idx]
    for name, meta in stored_fields():
        if name not in t.column_names:     # a state written before the column existed: the default
            continue
        v = _values(t.column(name), BILLING_STATE.field(name).type, meta["default"])
        if meta["per_meter"]:
            v = np.where(same_meter, v, meta["default"])
        getattr(s, name)[idx] = v
    s.opening[idx] = False
    for f in fields(CycleState):
        if f.name not in t.column_names:
            continue
        target = getattr(s.engine, f.name)
        shape = target.shape[1:]
        if shape:
            flat = t.column(f.name).combine_chunks().flatten().to_numpy()
            width = int(np.prod(shape))
            if flat.size != width * t.num_rows:
                raise MetersError(f"billing state of {prev} was made for other tariff tables; re-bill from "
                                  f"the first day or restore the tariffs")
            target[idx] = flat.reshape((t.num_rows,) + shape)
        else:
            default = target[0].item() if len(target) else 0
            target[idx] = t.column(f.name).fill_null(default).to_numpy()
    return s


# -- state → Arrow ----------------------------------------------------------------------------------
def _column_of(values: np.ndarray, arrow_type: pa.DataType):
    if pa.types.is_decimal(arrow_type):
        return money(values)
    if pa.types.is_timestamp(arrow_type):
        return pa.array(values, arrow_type, mask=values == NO_TS)
    if pa.types.is_date(arrow_type):
        return date_array(values)
    if pa.types.is_list(arrow_type) and values.ndim > 1:
        width = int(np.prod(values.shape[1:]))
        return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values).reshape(-1)), width) \
            .cast(arrow_type)
    return values


def to_table(s: Carried, account_ids: pa.Array, meter_ids: np.ndarray) -> pa.Table:
    """The ``billing_state`` partition of a settled day (``period_start`` derived from the engine's
    open bill period)."""
    cols = {"account_id": account_ids, "meter_id": meter_ids,
            "period_start": date_array(np.where(s.engine.bill_start < 0, NONE_DAY, s.engine.bill_start))}
    for name, _ in stored_fields():
        cols[name] = _column_of(getattr(s, name), BILLING_STATE.field(name).type)
    for f in fields(CycleState):
        cols[f.name] = _column_of(getattr(s.engine, f.name), BILLING_STATE.field(f.name).type)
    return pa.table(cols, schema=BILLING_STATE)


def commit(lake: Lake, day: dt.date, table: pa.Table | None = None, *, staged=None) -> None:
    """Write the state of ``day``: the commit of its billing. ``staged``: the state file the night's
    blocks wrote (a :class:`meters.lake.StagedWriter`), finished and switched in instead."""
    if staged is not None:
        lake.switch("billing_state", day.isoformat(), [staged.finish()])
    else:
        lake.replace_partition("billing_state", day.isoformat(), table)


def account_state(lake: Lake, day: dt.date, account_id: str) -> tuple[int, bool] | None:
    """(balance in cents, disconnected) of one account after settled ``day`` (None: not billed)."""
    st = lake.read("billing_state", day.isoformat(), columns=["account_id", "balance", "disconnected"])
    st = st.filter(pc.equal(st.column("account_id"), account_id))
    if not st.num_rows:
        return None
    return int(cents(st.column("balance"))[0]), bool(st.column("disconnected")[0].as_py())
