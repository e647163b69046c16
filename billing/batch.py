"""The nightly billing run: read → VEE → tariff engine → settlement → write, exactly once per day.

``bill_day(lake, day)`` settles one lake-local day for every account; ``bill_range`` runs days in
order. A day needs the previous day settled (its ``billing_state`` partition is the carried state:
meter registers, profile, tier counters, balances); the first day ever billed starts from the
accounts' opening balances.

Exactly once:

- every output of day D is a pure function of (state of D−1, readings of D, payments of D, registry,
  and the ledger's first charge of D): re-running D writes the same money;
- day-partitioned outputs are replaced atomically (``Lake.replace_partition``); ledger, alerts and
  bills are one file per day with a fixed name (``billing-D.parquet``) replaced by atomic rename;
- the ``billing_state`` partition of D is written last: it is the commit. A crash before it leaves the
  state of D−1 intact and a marker (``.billing-inflight``) that makes the next day refuse to run until
  D is re-run;
- re-running an already settled day D re-runs D and every later settled day (their balances depend
  on D); the ledger keeps the first run's ``charge`` and records the difference as an
  ``adjustment``, so late readings correct the money without a second charge.
"""
from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meters.errors import MetersError
from meters.lake import Lake
from meters.readings import read_readings
from meters.registry import load_tariffs
from meters.schemas import ALERTS, BILL_LINES, BILLING_STATE, BILLS, CHARGES, LEDGER, READINGS, UTC_MS, UTC_S

from . import vee
from .money import allocate_cents, to_cents
from .money_io import cents, fmt, money
from .settle import NONE_DAY, Policy, postpaid_notices, settle_prepaid

INFLIGHT = ".billing-inflight"
CONFIG_FILE = "billing.json"
EPOCH = dt.date(1970, 1, 1)
SOURCE_ESTIMATES = ["E", "S", "F", "N", "estimated", "substituted"]


@dataclass(frozen=True)
class Config:
    """Billing settings; ``<lake>/billing.json`` may override any of them."""

    interval_s: int = 900
    # physical limit per utility in units per hour (25 kW for a household electricity supply)
    limit_per_hour: dict = field(default_factory=lambda: {"electricity": 25.0, "water": 5.0,
                                                          "gas": 10.0, "heat": 25.0})
    policy: Policy = Policy()

    @classmethod
    def load(cls, lake: Lake) -> "Config":
        path = lake.root / CONFIG_FILE
        if not path.exists():
            return cls()
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise MetersError(f"{path}: not valid JSON: {e}") from None
        base = cls()
        pol = {k: v for k, v in d.get("policy", {}).items()}
        unknown = set(pol) - {f.name for f in fields(Policy)}
        if unknown:
            raise MetersError(f"{path}: unknown policy setting(s) {', '.join(sorted(unknown))}")
        cfg = cls(interval_s=int(d.get("interval_s", base.interval_s)),
                  limit_per_hour={**base.limit_per_hour, **d.get("limit_per_hour", {})},
                  policy=Policy(**pol))
        if cfg.interval_s <= 0 or 86400 % cfg.interval_s:
            raise MetersError(f"{path}: interval_s {cfg.interval_s} must divide a day")
        return cfg


@dataclass
class DayResult:
    day: dt.date
    run_id: str
    accounts: int = 0
    readings: int = 0
    intervals: int = 0
    money_cents: int = 0
    adjustments_cents: int = 0
    bills: int = 0
    ledger_rows: int = 0
    alerts: Counter = field(default_factory=Counter)
    vee: dict = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)


def day_number(d: dt.date) -> int:
    return (d - EPOCH).days


def from_number(n) -> dt.date | None:
    return None if n == NONE_DAY else EPOCH + dt.timedelta(days=int(n))


def settled_days(lake: Lake) -> list[dt.date]:
    """Days whose billing is committed (they have a ``billing_state`` partition)."""
    return [dt.date.fromisoformat(k) for k in lake.partitions("billing_state") if lake.files("billing_state", k)]


def _inflight(lake: Lake) -> dt.date | None:
    p = lake.root / INFLIGHT
    return dt.date.fromisoformat(p.read_text().strip()) if p.exists() else None


# -- public API --------------------------------------------------------------------------------------
def bill_day(lake: Lake, day: dt.date, *, config: Config | None = None, progress=None,
             cluster: str | None = None) -> list[DayResult]:
    """Bill one day. When ``day`` was already settled, it and every later settled day are re-run
    (in order). Returns one :class:`DayResult` per day run."""
    with lake.lock("billing"):
        days = settled_days(lake)
        last = days[-1] if days else None
        if last is not None and day <= last:
            if day < days[0]:
                raise MetersError(f"billing of this lake starts on {days[0]}; cannot bill {day}")
            todo = [day + dt.timedelta(days=i) for i in range((last - day).days + 1)]
        else:
            todo = [day]
        return _run_days(lake, todo, config, progress, cluster)


def bill_range(lake: Lake, first: dt.date, last: dt.date, *, config: Config | None = None,
               progress=None, cluster: str | None = None) -> list[DayResult]:
    """Bill every day from ``first`` to ``last`` in order (re-running settled days, and the settled
    days after ``last`` whose balances depend on them)."""
    if last < first:
        raise MetersError(f"--to {last} is before --from {first}")
    with lake.lock("billing"):
        days = settled_days(lake)
        end = max(last, days[-1]) if days and first <= days[-1] else last
        if days and first < days[0]:
            raise MetersError(f"billing of this lake starts on {days[0]}; cannot bill {first}")
        todo = [first + dt.timedelta(days=i) for i in range((end - first).days + 1)]
        return _run_days(lake, todo, config, progress, cluster)


def _run_days(lake, todo, config, progress, cluster=None) -> list[DayResult]:
    cfg = config or Config.load(lake)
    crashed = _inflight(lake)
    if crashed is not None and crashed not in todo:
        raise MetersError(f"the billing run of {crashed} was interrupted; re-run `meters bill --date {crashed}` first")
    days = set(settled_days(lake))
    prev = todo[0] - dt.timedelta(days=1)
    if days and prev not in days and todo[0] != min(days):   # (re-running the first billed day is fine)
        raise MetersError(f"day {prev} is not settled (last settled day {max(days)}); bill it first, "
                          f"or use --from {max(days) + dt.timedelta(days=1)} --to {todo[-1]}")
    if cluster is None:
        ctx = _Registry(lake, cfg)
        return [_run_day(lake, d, ctx, cfg, progress) for d in todo]
    client, local = _dask_client(cluster)
    try:
        meters = np.sort(lake.read("accounts", columns=["meter_id"]).column("meter_id").to_numpy())
        if len(meters) == 0:
            raise MetersError(f"lake {lake.root} has no accounts; run `meters accounts import` first")
        workers = max(1, len(client.scheduler_info()["workers"]))
        chunks = [c for c in np.array_split(meters, min(len(meters), 2 * workers)) if len(c)]
        shards = [(int(c[0]), int(c[-1])) for c in chunks]
        return [_run_day(lake, d, None, cfg, progress, client, shards) for d in todo]
    finally:
        client.close()
        if local is not None:
            local.close()


def _dask_client(spec: str):
    """``local:N`` (a local cluster of N worker processes) or ``tcp://HOST:PORT`` (a running scheduler
    whose workers see the lake at the same path) → (client, local cluster or None)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise MetersError("--cluster needs dask.distributed (pip install 'meters[cluster]')") from None
    if spec.startswith("local:"):
        n = spec[len("local:"):]
        if not n.isdigit() or not 1 <= int(n) <= 256:
            raise MetersError(f"--cluster {spec!r}: use local:N with N workers (1..256)")
        local = LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(local), local
    if spec.startswith("tcp://"):
        try:
            return Client(spec, timeout="10s"), None
        except OSError as e:
            raise MetersError(f"--cluster {spec}: cannot reach the Dask scheduler ({e})") from None
    raise MetersError(f"--cluster {spec!r}: use local:N or tcp://HOST:PORT")


# -- registry snapshot ---------------------------------------------------------------------------------
class _Registry:
    """Accounts (sorted by meter), meters, contacts and compiled tariffs for a run."""

    def __init__(self, lake: Lake, cfg: Config, meter_range: tuple[int, int] | None = None,
                 required: bool = True):
        from .tariff_arrays import compile_tariffs

        acc = lake.read("accounts")
        if acc.num_rows == 0 and required:
            raise MetersError(f"lake {lake.root} has no accounts; run `meters accounts import` first")
        self.meter_range = meter_range
        if meter_range is not None:
            m = acc.column("meter_id")
            acc = acc.filter(pc.and_(pc.greater_equal(m, meter_range[0]), pc.less_equal(m, meter_range[1])))
        self.n = acc.num_rows
        if self.n == 0:
            return
        acc = acc.sort_by([("meter_id", "ascending")])
        self.accounts = acc
        self.account_arrow = acc.column("account_id").combine_chunks()
        self.account_ids = np.array(self.account_arrow.to_pylist(), dtype=object)
        self.meter_ids = acc.column("meter_id").to_numpy()
        self.n = len(self.meter_ids)
        self.mode_prepaid = np.asarray(pc.equal(acc.column("mode"), "prepaid").to_numpy(zero_copy_only=False))
        self.billing_day = acc.column("billing_day").to_numpy().astype(np.int32)
        self.opening = cents(acc.column("balance"), null=0)
        self.warn_1 = cents(acc.column("warn_1"), null=3000)
        self.warn_2 = cents(acc.column("warn_2"), null=2000)
        self.topup_below = cents(acc.column("topup_below"), null=-1)
        self.topup_amount = cents(acc.column("topup_amount"), null=0)
        self.tariff_ids = acc.column("tariff_id").to_pylist()
        self.tables = compile_tariffs(load_tariffs(lake))
        self.meter_tariff = self.tables.indices(self.tariff_ids)
        self.currency = np.array([self.tables.versions[self.tables.fam_start[f]].currency
                                  for f in range(len(self.tables.ids))], dtype=object)[self.meter_tariff]
        meters = lake.read("meters", columns=["meter_id", "utility", "register_max"])
        mid = meters.column("meter_id").to_numpy()
        order = np.argsort(mid)
        mid = mid[order]
        pos = np.searchsorted(mid, self.meter_ids)
        pos = np.minimum(pos, max(len(mid) - 1, 0))
        known = (len(mid) > 0) & (mid[pos] == self.meter_ids) if len(mid) else np.zeros(self.n, bool)
        utility = np.array(meters.column("utility").to_pylist(), dtype=object)[order] if len(mid) else None
        rmax = meters.column("register_max").fill_null(0).to_numpy()[order] if len(mid) else None
        fallback = np.array([self.tables.versions[self.tables.fam_start[f]].utility
                             for f in self.meter_tariff], dtype=object)
        self.utility = np.where(known, utility[pos] if utility is not None else fallback, fallback)
        self.reg_max = np.where(known, np.rint((rmax[pos] if rmax is not None else 0) * 1000), 0).astype(np.int64)
        per_hour = np.array([cfg.limit_per_hour.get(u, 25.0) for u in self.utility], np.float64)
        self.limit = per_hour * 1000.0 * cfg.interval_s / 3600.0
        self._lake = lake
        self.contacts: dict[str, list[str]] = {}
        self._loaded: set[int] = set()

    def index_of(self, ids) -> np.ndarray:
        """Row of each account id in the registry (−1 = unknown)."""
        return pc.index_in(ids, value_set=self.account_arrow).fill_null(-1).to_numpy().astype(np.int64)

    def load_contacts(self, rows) -> None:
        """Read the contacts of the accounts at ``rows`` (only alerted accounts need them)."""
        rows = [r for r in np.asarray(rows, np.int64).tolist() if r not in self._loaded]
        if not rows:
            return
        self._loaded.update(rows)
        ids = self.account_arrow.take(pa.array(rows, pa.int64()))
        c = self._lake.read("contacts", columns=["account_id", "recipient"])
        c = c.filter(pc.is_in(c.column("account_id"), value_set=ids))
        for a, r in zip(c.column("account_id").to_pylist(), c.column("recipient").to_pylist()):
            self.contacts.setdefault(a, []).append(r)

    def recipients(self, account_id: str) -> list[str]:
        return self.contacts.get(account_id) or [f"account:{account_id}"]


# -- state -----------------------------------------------------------------------------------------------
def _load_state(lake: Lake, day: dt.date, reg: _Registry, start_s: int, interval_s: int):
    """The carried state of ``day`` − 1 aligned to the registry's accounts; fresh accounts get
    their opening balance (``opening`` mask)."""
    from .engine import CycleState

    n, tables = reg.n, reg.tables
    P, T = tables.max_periods, tables.max_tiers
    s = {
        "base_pos": np.full(n, vee.NO_BASE), "base_reg": np.zeros(n, np.int64), "avg": np.full(n, -1.0),
        "pending": np.zeros(n), "step": np.zeros(n, np.int64), "balance": reg.opening.copy(), "level": np.zeros(n, np.int8),
        "arrears_since": np.full(n, NONE_DAY, np.int32), "disconnected": np.zeros(n, bool),
        "due_date": np.full(n, NONE_DAY, np.int32), "charged_cents": np.zeros(n, np.int64),
        "opening": np.ones(n, bool),
    }
    engine = CycleState.empty(n, tables)
    prev = (day - dt.timedelta(days=1)).isoformat()
    t = lake.read("billing_state", prev) if prev in lake.partitions("billing_state") else None
    if t is None or t.num_rows == 0:
        return s, engine
    if t.num_rows == reg.n and t.column("account_id").equals(pa.chunked_array([reg.account_arrow])):
        idx = np.arange(reg.n)          # the usual case: the same accounts in the same order
    else:
        rows = reg.index_of(t.column("account_id"))
        ok = rows >= 0
        idx = rows[ok]
        t = t.filter(pa.array(ok))
    same_meter = t.column("meter_id").to_numpy() == reg.meter_ids[idx]
    base_ts = t.column("base_ts").cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy()
    has_base = (base_ts != np.iinfo(np.int64).min) & same_meter
    s["base_pos"][idx] = np.where(has_base, (base_ts - start_s) / interval_s, vee.NO_BASE)
    s["base_reg"][idx] = t.column("base_reg_milli").fill_null(0).to_numpy()
    s["avg"][idx] = np.where(same_meter, t.column("avg_milli").fill_null(-1.0).to_numpy(), -1.0)
    s["pending"][idx] = np.where(same_meter, t.column("pending_milli").fill_null(0.0).to_numpy(), 0.0)
    s["step"][idx] = np.where(same_meter, t.column("step").fill_null(0).to_numpy(), 0)
    s["balance"][idx] = cents(t.column("balance"))
    s["level"][idx] = t.column("level").fill_null(0).to_numpy()
    s["arrears_since"][idx] = _days(t.column("arrears_since"))
    s["disconnected"][idx] = t.column("disconnected").fill_null(False).to_numpy(zero_copy_only=False)
    s["due_date"][idx] = _days(t.column("due_date"))
    s["charged_cents"][idx] = t.column("charged_cents").fill_null(0).to_numpy()
    s["opening"][idx] = False
    for name in ("bill_start", "cycle_key", "cycle_qty", "fixed", "days", "charged", "last_ts"):
        getattr(engine, name)[idx] = t.column(name).to_numpy()
    if "year_end" in t.column_names:        # states written before the field existed: no reset pending
        engine.year_end[idx] = t.column("year_end").fill_null(-1.0).to_numpy()
    for name, shape in (("period_qty", (P,)), ("line_qty", (P, T)), ("line_amount", (P, T))):
        flat = t.column(name).combine_chunks().flatten().to_numpy()
        width = int(np.prod(shape))
        if flat.size != width * t.num_rows:
            raise MetersError(f"billing state of {prev} was made for other tariff tables; re-bill from "
                              f"the first day or restore the tariffs")
        getattr(engine, name)[idx] = flat.reshape((t.num_rows,) + shape)
    return s, engine


def _days(col) -> np.ndarray:
    return col.cast(pa.int32()).fill_null(NONE_DAY).to_numpy().astype(np.int32)


def _date_array(days: np.ndarray) -> pa.Array:
    d = np.asarray(days, np.int32)
    return pa.array(d, pa.int32(), mask=d == NONE_DAY).cast(pa.date32())


# -- one day ----------------------------------------------------------------------------------------------
READ_COLUMNS = ["meter_id", "ts", "register_milli", "quantity_milli", "interval_s", "quality"]
INTERVAL_COLUMNS = ("quantity_milli", "interval_s", "quality")   # only imported interval data has them


def _null_columns(lake: Lake, files, names) -> set[str]:
    """Columns of ``names`` that are null in every row of ``files`` by the Parquet statistics (not
    reading them saves a zero-filled buffer per row: 1.5 GB for a 97M-row day of register readings)."""
    out = set(names)
    for frag in lake.dataset(files, READINGS).get_fragments():
        md = frag.metadata
        idx = {md.schema.column(j).name: j for j in range(md.num_columns)}
        for name in list(out):
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                st = rg.column(idx[name]).statistics if name in idx else None
                if name in idx and (st is None or not st.has_null_count or st.null_count != rg.num_rows):
                    out.discard(name)
                    break
    return out


def _with_columns(t: pa.Table) -> pa.Table:
    """``t`` with the READ_COLUMNS it lacks added as nulls (small tables only)."""
    for name in READ_COLUMNS:
        if name not in t.column_names:
            t = t.append_column(READINGS.field(name), pa.nulls(t.num_rows, READINGS.field(name).type))
    return t.select(READ_COLUMNS)
READINGS_EMPTY = READINGS.empty_table()


def _read_window(lake: Lake, start: dt.datetime, end: dt.datetime, dup: list | None = None,
                 meter_range: tuple[int, int] | None = None) -> list[pa.Table]:
    """Deduplicated readings with ``start <= ts < end``, one table per day partition, each sorted by
    (meter_id, ts). Compacted partitions (sorted, duplicate-free by contract) are read as they are,
    with only the columns VEE needs; the others go through :func:`meters.readings.read_readings`."""
    import pyarrow.dataset as pds

    from meters.readings import is_compacted, partition_days

    parts = []
    for key in partition_days(lake, start, end):
        d0, d1 = lake.day_bounds_utc(dt.date.fromisoformat(key))
        lo, hi = max(start, d0), min(end, d1)
        m_lo, m_hi = meter_range if meter_range else (None, None)
        mf = None
        if meter_range:
            mf = (pds.field("meter_id") >= pa.scalar(m_lo, pa.int64())) & \
                (pds.field("meter_id") <= pa.scalar(m_hi, pa.int64()))
        tf = (pds.field("ts") >= pa.scalar(lo, UTC_S)) & (pds.field("ts") < pa.scalar(hi, UTC_S))
        files = lake.files("readings", key)
        if is_compacted(files):
            f = tf if (lo, hi) != (d0, d1) else None
            if mf is not None:
                f = mf if f is None else f & mf
            skip = _null_columns(lake, files, INTERVAL_COLUMNS)
            t = lake.read("readings", key, columns=[c for c in READ_COLUMNS if c not in skip], filter=f)
        else:
            t = read_readings(lake, lo, hi, m_lo, m_hi).select(READ_COLUMNS)
            if dup is not None:  # re-sent readings that meters.readings dropped (first received wins)
                f = tf if mf is None else tf & mf
                dup.append(lake.read("readings", key, columns=["meter_id"], filter=f).num_rows - t.num_rows)
        if t.num_rows:
            parts.append(t)
    return parts


def _part_arrays(t: pa.Table, meter_ids: np.ndarray, start_s: int, interval_s: int):
    """CSR kernel inputs of one readings table sorted by (meter_id, ts): rows of meters without an
    account, or without a value, are dropped. Returns (offsets, pos, reg, qty, qlen, est), dropped.
    Absent INTERVAL_COLUMNS are all null (:func:`_null_columns`)."""
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
    for st_l, rm_l, first, last in _over_chunk_groups(runs, t.column("meter_id")):
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
    _over_chunk_groups(positions, t.column("ts"))
    _over_chunk_groups(registers, reg_col.fill_null(-1) if reg_col.null_count else reg_col)
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


def _over_chunk_groups(fn, col: pa.ChunkedArray, groups: int = 0) -> list:
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


def _vee_inputs(parts: list[pa.Table], meter_ids: np.ndarray, start_s: int, interval_s: int):
    """Two CSR parts for :func:`billing.vee.vee_kernel_parts`: the largest table (the day's own
    partition) as it is, the others (edge readings of the neighbouring days) merged and sorted."""
    parts = sorted(parts, key=lambda t: -t.num_rows)
    main = parts[0] if parts else READINGS_EMPTY.select(READ_COLUMNS)
    rest = [_with_columns(t) for t in parts[1:]]
    extra = (pa.concat_tables(rest).sort_by([("meter_id", "ascending"), ("ts", "ascending")])
             if rest else READINGS_EMPTY.select(READ_COLUMNS))
    a, d1 = _part_arrays(main, meter_ids, start_s, interval_s)
    b, d2 = _part_arrays(extra, meter_ids, start_s, interval_s)
    return a, b, d1 + d2


def _run_day(lake: Lake, day: dt.date, reg: _Registry | None, cfg: Config, progress, client=None,
             shards: list[tuple[int, int]] | None = None) -> DayResult:
    """Compute the day (here, or over meter shards on a Dask ``client``), then write and commit."""
    t_start = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc)
    run_id = f"{day.isoformat()}-{uuid.uuid4().hex[:8]}"
    res = DayResult(day=day, run_id=run_id)

    def lap(name, t0):
        res.timings[name] = res.timings.get(name, 0.0) + time.perf_counter() - t0
        if progress:
            progress(day, name)
        return time.perf_counter()

    t0 = time.perf_counter()
    if client is None:
        out = _compute_day(lake, day, reg, cfg, run_id, lap)
    else:
        _hide_new_files(lake, "intervals", day.isoformat())      # shards write their intervals files
        futures = client.map(_shard_day, [str(lake.root)] * len(shards), [day] * len(shards),
                             [cfg] * len(shards), [lo for lo, _ in shards], [hi for _, hi in shards],
                             [run_id] * len(shards), pure=False, retries=SHARD_RETRIES)
        parts = [p for p in client.gather(futures) if p is not None]
        if not parts:
            raise MetersError(f"lake {lake.root} has no accounts; run `meters accounts import` first")
        out = _merge_outputs(parts)
        for p in parts:
            for k, v in p["timings"].items():
                res.timings[f"{k} (shards)"] = res.timings.get(f"{k} (shards)", 0.0) + v
        lap("shards", t0)
    t0 = time.perf_counter()
    for k in ("accounts", "readings", "intervals", "money_cents", "adjustments_cents"):
        setattr(res, k, out[k])
    res.bills = out["bills_n"]
    res.vee = out["vee"]
    # write everything for the day, then the state as the commit
    (lake.root / INFLIGHT).write_text(day.isoformat())
    if "intervals_files" in out:       # written by the shards: switch them in
        _switch_files(lake, "intervals", day.isoformat(), out["intervals_files"])
    else:
        _replace_partition_dict(lake, "intervals", day.isoformat(), out["intervals_table"],
                                stats=INTERVAL_STATS, **INTERVAL_OPTIONS)
    lake.replace_partition("charges", day.isoformat(), out["charges"])
    lake.replace_partition("charge_lines", day.isoformat(), out["charge_lines"])
    lake.write("ledger", out["ledger"], day.strftime("%Y-%m"), file_name=f"billing-{day.isoformat()}.parquet")
    lake.write("alerts", out["alerts"], day.isoformat(), file_name="billing.parquet")
    lake.write("bills", out["bills"], day.strftime("%Y-%m"), file_name=f"bills-{day.isoformat()}.parquet")
    lake.write("bill_lines", out["bill_lines"], day.strftime("%Y-%m"), file_name=f"bills-{day.isoformat()}.parquet")
    res.ledger_rows = out["ledger"].num_rows
    res.alerts = Counter(out["alerts"].column("kind").to_pylist())
    t0 = lap("write", t0)
    lake.replace_partition("billing_state", day.isoformat(), out["state"])  # the commit
    res.seconds = time.perf_counter() - t_start
    run = pa.table({"run_id": [run_id], "started_at": pa.array([started], UTC_MS),
                    "duration_s": [res.seconds], "accounts": [res.accounts], "readings_in": [res.readings],
                    "intervals_out": [res.intervals], "charges_out": [out["charges"].num_rows],
                    "ledger_out": [res.ledger_rows], "alerts_out": [out["alerts"].num_rows],
                    "bills_out": [res.bills], "money": money([res.money_cents]),
                    "vee_counts": [json.dumps(res.vee, sort_keys=True)]})
    lake.replace_partition("runs", day.isoformat(), run)
    (lake.root / INFLIGHT).unlink(missing_ok=True)
    lap("commit", t0)
    return res


# statistics only where readers filter (they cost more than the encoding on the other columns);
# zstd level 1: as small as level 3 on interval data (measured), and faster to write and read
INTERVAL_STATS = ["meter_id", "ts"]
INTERVAL_OPTIONS = {"compression_level": 1}
SHARD_RETRIES = 3   # a shard task that raises (e.g. a transient read error) is run again by Dask


def _shard_day(lake_root: str, day: dt.date, cfg: Config, lo: int, hi: int, run_id: str):
    """A Dask task: compute one day for the accounts whose meter is in ``lo..hi`` (None when empty).

    Pure: it only reads the lake (state of D−1, readings, payments, registry) and returns tables, so a
    retry — after an exception, or on another worker when its worker dies — gives the same output;
    only the driver writes and commits."""
    lake = Lake(lake_root)
    reg = _Registry(lake, cfg, (lo, hi), required=False)
    if reg.n == 0:
        return None
    timings: dict[str, float] = {}

    def lap(name, t0):
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        return time.perf_counter()
    out = _compute_day(lake, day, reg, cfg, run_id, lap)
    # the biggest output is written here, in parallel with the other shards, not shipped to the
    # driver: invisible until the driver's switch (a retried task's orphan files are removed then)
    t0 = time.perf_counter()
    out["intervals_files"] = _write_pieces(lake, "intervals", day.isoformat(), out.pop("intervals_table"),
                                           pieces=1, stats=INTERVAL_STATS, prefix=f"{lo:020d}-",
                                           **INTERVAL_OPTIONS)
    lap("write", t0)
    out["timings"] = timings
    return out


def _merge_outputs(parts: list[dict]) -> dict:
    """Concatenate shard outputs (shards are contiguous meter ranges, in order)."""
    out = {}
    for k, v in parts[0].items():
        if isinstance(v, pa.Table):
            out[k] = pa.concat_tables([p[k] for p in parts])
        elif k == "vee":
            out[k] = {n: sum(p[k].get(n, 0) for p in parts) for n in v}
        elif isinstance(v, int):
            out[k] = sum(p[k] for p in parts)
        elif isinstance(v, list):
            out[k] = [x for p in parts for x in p[k]]
    return out


def _compute_day(lake: Lake, day: dt.date, reg: _Registry, cfg: Config, run_id: str, lap) -> dict:
    """Read → VEE → price → settle for the registry's accounts; returns the day's output tables and
    counts (nothing is written)."""
    from .engine import local_times, price_grid, price_intervals

    out: dict = {"accounts": reg.n}
    I = cfg.interval_s
    start, end = lake.day_bounds_utc(day)
    start_s, end_s = int(start.timestamp()), int(end.timestamp())
    S = (end_s - start_s) // I
    slot_end = start_s + I * np.arange(1, S + 1, dtype=np.int64)
    dn = day_number(day)
    t0 = time.perf_counter()
    # 1. read
    half = dt.timedelta(seconds=I // 2)  # readings snap to the nearest grid instant
    dup: list[int] = []
    readings = _read_window(lake, start - half, end + half, dup, reg.meter_range)
    out["readings"] = sum(t.num_rows for t in readings)
    state, engine_state = _load_state(lake, day, reg, start_s, I)
    t0 = lap("read", t0)
    # 2. VEE
    main, extra, unknown = _vee_inputs(readings, reg.meter_ids, start_s, I)
    del readings
    q, quality, flag, nb_pos, nb_reg, n_avg, n_pend, n_step, counts = vee.vee_kernel_parts(
        *main, *extra, state["base_pos"], state["base_reg"], state["avg"], state["pending"], reg.reg_max,
        reg.limit, state["step"], S)
    del main, extra
    out["vee"] = vee.count_dict(counts)
    out["vee"]["unknown_meter"] = unknown
    out["vee"]["duplicate"] += sum(dup)
    out["intervals"] = int(q.size)
    t0 = lap("vee", t0)
    # 3. price
    q_units = q
    q_units /= 1000.0  # in place: one 8-byte matrix per interval is enough
    off0 = start.astimezone(lake.tz).utcoffset().total_seconds()
    off1 = end.astimezone(lake.tz).utcoffset().total_seconds()
    if off0 == off1:
        priced = price_grid(reg.tables, q_units, start_s + int(off0) + I, I, reg.meter_tariff,
                            state=engine_state, billing_day=reg.billing_day)
    else:
        lts = local_times(slot_end, lake.tz)
        # when clocks go back, the repeated hour's local times repeat: the engine prices them in
        # that wall-clock hour again (its band), in UTC order
        lts = np.tile(lts, reg.n)
        priced = price_intervals(reg.tables, np.arange(reg.n + 1, dtype=np.int64) * S, lts, q_units.ravel(),
                                 reg.meter_tariff, state=engine_state, billing_day=reg.billing_day)
    if len(priced.day_meter) != reg.n or len(priced.bill_meter) != reg.n:
        raise MetersError("tariff engine returned an unexpected number of day rows")
    new_es = priced.state
    same_period = new_es.bill_start == engine_state.bill_start
    total_cents = to_cents(priced.day_total)
    today = total_cents - np.where(same_period, state["charged_cents"], 0)
    day_qty = q_units.sum(axis=1)
    t0 = lap("price", t0)
    # 4. settle
    payments = _payments(lake, day, reg)
    original = _original_charges(lake, day, reg)
    prepaid = reg.mode_prepaid
    first = np.where(original >= 0, original, today) if original is not None else today
    first = np.where(prepaid, first, 0)
    charge = np.where(prepaid, today, 0)
    adjust = charge - first
    st = settle_prepaid(dn, state["balance"], payments, charge, state["level"], state["arrears_since"],
                        state["disconnected"], reg.warn_1, reg.warn_2, reg.topup_below, reg.topup_amount,
                        cfg.policy)
    post = ~prepaid
    # postpaid: payments, bills on closed periods, notices
    closed = post & priced.bill_closed
    bill_lines, bill_cents = _bill_lines(reg, priced, closed)
    balance = np.where(prepaid, st.balance, state["balance"] + payments - bill_cents)
    due = np.where(closed & (state["due_date"] == NONE_DAY), dn + cfg.policy.due_days, state["due_date"])
    notice, overdue, penalty, due = postpaid_notices(dn, balance, due.astype(np.int32), cfg.policy)
    notice &= post
    due = np.where(post, due, NONE_DAY)
    t0 = lap("settle", t0)
    # 5. output tables
    ts_end = pa.scalar(end - dt.timedelta(milliseconds=1), UTC_MS)
    out["intervals_table"] = _intervals_table(reg, slot_end, q_units, quality, flag)
    out["charges"] = pa.table({"account_id": reg.account_arrow, "quantity": day_qty, "amount": money(today),
                               "tariff_id": reg.tariff_ids, "run_id": [run_id] * reg.n}, schema=CHARGES)
    out["charge_lines"] = _charge_lines(reg, priced, engine_state, same_period)
    out["ledger"] = _ledger(reg, day, start, ts_end, state, payments, first, adjust, st, prepaid, closed,
                            bill_cents, balance, priced)
    from .payments import reconnected_by_payment

    paid_back = reconnected_by_payment(lake, day)
    if paid_back:  # already ordered by `meters pay`: do not repeat
        st.reconnect &= ~np.isin(reg.account_ids, list(paid_back))
    issued = (closed, bill_cents, priced.bill_start, priced.bill_end, dn + cfg.policy.due_days)
    out["alerts"] = _alerts(reg, day, ts_end, st, prepaid, quality, flag, balance, notice, overdue, penalty, S,
                            issued)
    out["bills"] = _bills(reg, priced, closed, bill_cents, dn + cfg.policy.due_days, run_id)
    out["bill_lines"] = bill_lines
    out["money_cents"] = int(today.sum())
    out["adjustments_cents"] = int(adjust.sum())
    out["bills_n"] = int(closed.sum())
    out["state"] = _state_table(reg, slot_end, nb_pos, nb_reg, n_avg, n_pend, n_step, new_es, balance, st,
                                prepaid, due, total_cents, start_s, I)
    lap("tables", t0)
    return out


def _payments(lake: Lake, day: dt.date, reg: _Registry) -> np.ndarray:
    from .payments import day_payments

    return day_payments(lake, day, reg.account_ids)


def _original_charges(lake: Lake, day: dt.date, reg: _Registry):
    """Cents of the first ``charge`` of each account in an earlier run of ``day`` (−1 = none), or None."""
    f = lake.partition_dir("ledger", day.strftime("%Y-%m")) / f"billing-{day.isoformat()}.parquet"
    if not f.exists():
        return None
    t = pq.read_table(f, schema=LEDGER)
    t = t.filter(pc.equal(t.column("kind"), "charge"))
    out = np.full(reg.n, -1, np.int64)
    rows = reg.index_of(t.column("account_id"))
    ok = rows >= 0
    out[rows[ok]] = -cents(t.column("amount"))[ok]
    return out


def _intervals_table(reg, slot_end, q_units, quality, flag) -> pa.Table:
    """The day's intervals, quality and flag dictionary-encoded (see :func:`_replace_partition_dict`)."""
    n, S = q_units.shape
    qual = pa.DictionaryArray.from_arrays(pa.array(quality.ravel(), pa.int8()), pa.array(vee.QUALITY_NAMES))
    f = flag.ravel()
    flg = pa.DictionaryArray.from_arrays(pa.array(f, pa.int8(), mask=f == vee.OK), pa.array(vee.FLAG_NAMES))
    return pa.table({"meter_id": np.repeat(reg.meter_ids, S),
                     "ts": pa.array(np.tile(slot_end, n), pa.int64()).cast(UTC_S),
                     "quantity": q_units.ravel(), "quality": qual, "flag": flg})


def _replace_partition_dict(lake: Lake, name: str, key: str, data: pa.Table, pieces: int = 2,
                            stats: list[str] | bool = True, **options) -> None:
    """:meth:`Lake.replace_partition` for a table that matches the schema except that string columns
    are dictionary-encoded: Parquet stores them as strings either way, and skipping the cast saves
    materialising ~10⁸ strings a night; large tables are written as ``pieces`` files in parallel threads,
    with column statistics for ``stats`` only; ``options`` override the lake's Parquet options (e.g.
    ``compression_level``). Same protocol: new files, one ``_current`` switch, old files removed."""
    _hide_new_files(lake, name, key)
    names = _write_pieces(lake, name, key, data, pieces, stats, **options)
    _switch_files(lake, name, key, names)


def _hide_new_files(lake: Lake, name: str, key: str) -> None:
    """Make sure the partition has a ``_current`` manifest, so files written next stay invisible
    until :func:`_switch_files`."""
    from meters.lake import MANIFEST, atomic_write_bytes

    d = lake.partition_dir(name, key)
    d.mkdir(parents=True, exist_ok=True)
    if not (d / MANIFEST).exists():
        atomic_write_bytes(d / MANIFEST, json.dumps([p.name for p in lake.files(name, key)]).encode())


def _write_pieces(lake: Lake, name: str, key: str, data: pa.Table, pieces: int = 2,
                  stats: list[str] | bool = True, prefix: str = "", **options) -> list[str]:
    """Write ``data`` as up to ``pieces`` new files of the partition (invisible until switched in);
    returns their names (``part-<prefix><uuid>.parquet``: a prefix orders shards' files)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from meters.lake import PARQUET_OPTIONS
    from meters.schemas import table as table_of

    schema = table_of(name).schema
    for f in schema:
        got = data.schema.field(f.name).type
        if got != f.type and not (pa.types.is_dictionary(got) and got.value_type == f.type):
            raise MetersError(f"table {name}: column {f.name} is {got}, expected {f.type}")
    data = data.select(schema.names)
    d = lake.partition_dir(name, key)
    k = max(1, min(pieces, data.num_rows // 1_000_000))
    cuts = [data.num_rows * i // k for i in range(k + 1)]
    names = [f"part-{prefix}{uuid.uuid4().hex}.parquet" for _ in range(k)]

    def write(i):  # pyarrow releases the GIL: the pieces are encoded in parallel
        final = d / names[i]
        tmp = d / f".{final.name}.tmp"
        with open(tmp, "wb") as fh:
            pq.write_table(data.slice(cuts[i], cuts[i + 1] - cuts[i]), fh, **{**PARQUET_OPTIONS, **options},
                           write_statistics=stats)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)

    with ThreadPoolExecutor(k) as pool:
        list(pool.map(write, range(k)))
    return names


def _switch_files(lake: Lake, name: str, key: str, names: list[str]) -> None:
    """The switch: the manifest names exactly ``names``; every other file of the partition (the old
    ones, and any left by an interrupted or retried shard task) is removed."""
    import contextlib

    from meters.lake import MANIFEST, atomic_write_bytes

    names = sorted(names)
    atomic_write_bytes(lake.partition_dir(name, key) / MANIFEST, json.dumps(names).encode())
    for p in lake.files(name, key):
        if p.name not in names:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _line_names(reg: _Registry, version: int, p: int) -> str:
    period = reg.tables.versions[version].periods[p] if p < reg.tables.versions[version].n_periods else None
    if period is None:
        return "all"
    return period.band if period.band != "all" else period.name


def _charge_lines(reg, priced, before, same_period) -> pa.Table:
    keep = same_period[:, None, None]
    dq = priced.line_quantity - np.where(keep, before.line_qty, 0.0)
    da = priced.line_amount - np.where(keep, before.line_amount, 0.0)
    a, p, t = np.nonzero((dq != 0) | (da != 0))
    ver = priced.bill_version[a]
    P = priced.line_quantity.shape[1]
    names = pa.array([_line_names(reg, v, pp) for v in range(len(reg.tables.versions)) for pp in range(P)],
                     pa.string())
    rows = {"account_id": reg.account_arrow.take(pa.array(a)), "tier": (t + 1).astype(np.int32),
            "band": names.take(pa.array(ver.astype(np.int64) * P + p)),   # (no Python string per line)
            "quantity": dq[a, p, t], "amount": da[a, p, t], "unit_price": reg.tables.prices[ver, p, t]}
    return pa.table(rows)


def _bill_lines(reg, priced, closed):
    """Bill lines (tier × band, plus tier 0 for fixed and minimum charges) of the closed periods and
    each bill's total: the rounded period cost, its lines allocated so that they sum to it."""
    acc = np.flatnonzero(closed)
    bill_cents = np.zeros(reg.n, np.int64)
    rows = {"account_id": [], "period_start": [], "tier": [], "band": [], "quantity": [], "unit_price": [],
            "amount": []}
    for a in acc:
        v = int(priced.bill_version[a])
        start = EPOCH + dt.timedelta(days=int(priced.bill_start[a]))
        lq, la = priced.line_quantity[a], priced.line_amount[a]
        lines = [(int(t) + 1, _line_names(reg, v, int(p)), float(lq[p, t]), float(reg.tables.prices[v, p, t]),
                  float(la[p, t])) for p, t in zip(*np.nonzero((lq != 0) | (la != 0)))]
        extra = float(priced.bill_fixed[a] + priced.bill_minimum[a])
        if extra:
            lines.append((0, "fixed", 0.0, None, extra))
        total = int(to_cents(priced.bill_total[a]))
        amounts = allocate_cents([x[4] for x in lines], total) if lines else []
        for (tier, band, qty, price, _), c in zip(lines, amounts):
            for k, val in zip(rows, (reg.account_ids[a], start, tier, band, qty, price, int(c))):
                rows[k].append(val)
        bill_cents[a] = total
    t = pa.table({**{k: v for k, v in rows.items() if k != "amount"},
                  "amount": money(np.array(rows["amount"], np.int64))},
                 schema=pa.schema([BILL_LINES.field(k) for k in list(rows)]))
    return t, bill_cents


def _bills(reg, priced, closed, bill_cents, due_day, run_id) -> pa.Table:
    a = np.flatnonzero(closed)
    return pa.table({"account_id": reg.account_arrow.take(pa.array(a)),
                     "period_start": _date_array(priced.bill_start[a]),
                     "period_end": _date_array(priced.bill_end[a]),
                     "quantity": priced.bill_quantity[a], "amount": money(bill_cents[a]),
                     "due_date": _date_array(np.full(len(a), due_day)), "run_id": [run_id] * len(a)},
                    schema=BILLS)


def _ledger(reg, day, start, ts_end, state, payments, first, adjust, st, prepaid, closed, bill_cents,
            balance, priced) -> pa.Table:
    """The day's ledger file: opening balances, charges (first run's amount), adjustments,
    auto top-ups and postpaid bills — in that order per account."""
    blocks = []
    d = day.isoformat()
    ts_open = pa.scalar(start, UTC_MS)

    def block(mask, kind, amount, after, ref, ts):
        i = np.flatnonzero(mask)
        if len(i):
            refs = ref[i] if isinstance(ref, np.ndarray) else np.array([ref] * len(i), dtype=object)
            blocks.append((i, kind, amount[i], after[i], refs, ts))

    after_pay_open = state["balance"]  # the opening entry comes before the day's payments
    block(state["opening"], "opening", reg.opening, after_pay_open, "opening", ts_open)
    after_first = st.after_payments - first
    block(prepaid, "charge", -first, after_first, f"charge:{d}", ts_end)
    block(prepaid & (adjust != 0), "adjustment", -adjust, st.after_charge, f"adjustment:{d}", ts_end)
    block(prepaid & (st.topup > 0), "auto_topup", st.topup, st.balance, f"auto_topup:{d}", ts_end)
    bill_refs = np.array([f"bill:{from_number(int(b))}" if c else "" for b, c in zip(priced.bill_start, closed)],
                         dtype=object)
    block(closed, "charge", -bill_cents, balance, bill_refs, ts_end)
    if not blocks:
        return LEDGER.empty_table()
    order_key = np.concatenate([b[0] * 8 + k for k, b in enumerate(blocks)])
    idx = np.concatenate([b[0] for b in blocks])
    kinds = np.concatenate([[b[1]] * len(b[0]) for b in blocks])
    amounts = np.concatenate([b[2] for b in blocks])
    afters = np.concatenate([b[3] for b in blocks])
    refs = np.concatenate([b[4] for b in blocks])
    tss = pa.concat_arrays([pa.array([b[5].value] * len(b[0]), pa.int64()) for b in blocks])
    o = np.argsort(order_key, kind="stable")
    return pa.table({"account_id": reg.account_arrow.take(pa.array(idx[o])),
                     "ts": tss.take(pa.array(o)).cast(UTC_MS), "kind": kinds[o].tolist(),
                     "amount": money(amounts[o]), "balance_after": money(afters[o]), "ref": refs[o].tolist()},
                    schema=LEDGER)


def _alerts(reg, day, ts_end, st, prepaid, quality, flag, balance, notice, overdue, penalty, S,
            issued) -> pa.Table:
    rows = {"account_id": [], "kind": [], "recipient": [], "message": []}

    def emit(i, kind, message, recipients=None):
        a = reg.account_ids[i]
        for r in recipients or reg.recipients(a):
            rows["account_id"].append(a); rows["kind"].append(kind)
            rows["recipient"].append(r); rows["message"].append(message)

    warn = {1: reg.warn_1, 2: reg.warn_2}
    customer = prepaid & ((st.topup > 0) | (st.low_alert > 0) | st.arrears_alert | st.disconnect | st.reconnect)
    closed, bill_cents, bill_start, bill_end, due_day = issued
    reg.load_contacts(np.flatnonzero(customer | notice | closed))
    for i in np.flatnonzero(closed):
        emit(i, "bill_issued", f"Bill for account {reg.account_ids[i]}, {from_number(int(bill_start[i]))} to "
             f"{from_number(int(bill_end[i]))}: {fmt(bill_cents[i])} {reg.currency[i]}, due "
             f"{from_number(due_day)}.")
    for i in np.flatnonzero(prepaid & (st.topup > 0)):
        emit(i, "auto_topup", f"Balance low, auto-paid {fmt(st.topup[i])} {reg.currency[i]} for account "
             f"{reg.account_ids[i]} on {day}; balance now {fmt(st.balance[i])} {reg.currency[i]}.")
    for i in np.flatnonzero(prepaid & (st.low_alert > 0)):
        lvl = int(st.low_alert[i])
        emit(i, "low_balance", f"Balance of account {reg.account_ids[i]} is {fmt(st.balance[i])} "
             f"{reg.currency[i]}, below {fmt(warn[lvl][i])} {reg.currency[i]} (level {lvl}); please top up.")
    for i in np.flatnonzero(prepaid & st.arrears_alert):
        emit(i, "arrears", f"Account {reg.account_ids[i]} is in arrears: balance {fmt(st.balance[i])} "
             f"{reg.currency[i]} on {day}; supply will be disconnected unless topped up.")
    for i in np.flatnonzero(prepaid & st.disconnect):
        emit(i, "disconnect", f"Disconnection ordered for account {reg.account_ids[i]} (meter "
             f"{reg.meter_ids[i]}): balance {fmt(st.balance[i])} {reg.currency[i]} since "
             f"{from_number(int(st.arrears_since[i]))}.")
    for i in np.flatnonzero(prepaid & st.reconnect):
        emit(i, "reconnect", f"Reconnection ordered for account {reg.account_ids[i]} (meter "
             f"{reg.meter_ids[i]}): balance {fmt(st.after_payments[i])} {reg.currency[i]} after payment.")
    for i in np.flatnonzero(notice):
        emit(i, "arrears", f"Bill of account {reg.account_ids[i]} is {int(overdue[i])} day(s) overdue: "
             f"{fmt(-balance[i])} {reg.currency[i]} unpaid; late penalty so far {fmt(penalty[i])} "
             f"{reg.currency[i]} (1‰ per day).")
    est = (quality != vee.ACTUAL).sum(axis=1)
    for i in np.flatnonzero(est):
        reasons = Counter(vee.FLAG_NAMES[f] for f in flag[i][quality[i] != vee.ACTUAL])
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        emit(i, "data_gap", f"Meter {reg.meter_ids[i]} (account {reg.account_ids[i]}): {int(est[i])} of {S} "
             f"intervals estimated on {day} ({why}).", ["operator"])
    n = len(rows["kind"])
    return pa.table({"account_id": pa.array(rows["account_id"], pa.string()),
                     "ts": pa.array([ts_end.value] * n, pa.int64()).cast(UTC_MS), "kind": rows["kind"],
                     "recipient": rows["recipient"], "message": rows["message"]},
                    schema=ALERTS)


def _state_table(reg, slot_end, nb_pos, nb_reg, n_avg, n_pend, n_step, es, balance, st, prepaid, due, total_cents,
                 start_s, I) -> pa.Table:
    n = reg.n
    S = len(slot_end)
    has = nb_pos > vee.NO_BASE
    base_ts = np.zeros(n, np.int64)
    base_ts[has] = start_s + np.round((nb_pos[has] + S) * I).astype(np.int64)
    P, T = es.period_qty.shape[1], es.line_qty.shape[2]

    def lists(a, width):
        return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(a).reshape(-1)), width) \
            .cast(pa.list_(pa.float64()))

    level = np.where(prepaid, st.level, 0).astype(np.int8)
    since = np.where(prepaid, st.arrears_since, NONE_DAY)
    disc = np.where(prepaid, st.disconnected, False)
    return pa.table({
        "account_id": reg.account_arrow, "meter_id": reg.meter_ids,
        "base_ts": pa.array(base_ts, pa.int64(), mask=~has).cast(UTC_S), "base_reg_milli": nb_reg,
        "avg_milli": n_avg, "pending_milli": n_pend, "step": n_step.astype(np.int32),
        "bill_start": es.bill_start, "cycle_key": es.cycle_key, "cycle_qty": es.cycle_qty,
        "period_qty": lists(es.period_qty, P), "line_qty": lists(es.line_qty, P * T),
        "line_amount": lists(es.line_amount, P * T), "fixed": es.fixed, "days": es.days.astype(np.int32),
        "charged": es.charged, "last_ts": es.last_ts, "year_end": es.year_end, "charged_cents": total_cents,
        "balance": money(balance), "level": level, "arrears_since": _date_array(since),
        "disconnected": disc, "due_date": _date_array(due), "period_start": _date_array(np.where(es.bill_start < 0, NONE_DAY, es.bill_start)),
    }, schema=BILLING_STATE)
