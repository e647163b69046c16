"""The day's account snapshot: accounts sorted by meter, with their meters, settlement settings and
compiled tariffs, as the arrays the day's computation takes."""
from __future__ import annotations

from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meters.errors import MetersError
from meters.lake import Lake
from meters.registry import load_tariffs
from meters.schemas import MONEY as MONEY_TYPE

from . import heating
from .config import Config
from .guards import check_registry
from .tariff_check import check_catalog
from .money_io import cents, money


def no_accounts(lake: Lake) -> MetersError:
    return MetersError(f"lake {lake.root} has no accounts; run `meters accounts import` first")


class Accounts:
    """Accounts (sorted by meter), meters and compiled tariffs for a run; ``meter_range`` (lo, hi)
    takes the accounts of one shard. ``whole=False`` prepares only what the run's blocks share (the
    registry as Arrow, the tariffs, the meters' lookup): :meth:`blocks` then gives the per-account
    arrays block by block, so their memory is bounded by the block size."""

    def __init__(self, lake: Lake, cfg: Config, meter_range: tuple[int, int] | None = None,
                 required: bool = True, table=None, whole: bool = True):
        """``table``: the accounts (``accounts`` schema) — default the lake's registry; the account
        store gives the settings in force on the day (:mod:`billing.store_inputs`)."""
        from .tariff_arrays import compile_tariffs

        def column(name):   # the registry read column by column: one column's Arrow at a time
            if table is not None:
                return table.column(name)
            return lake.read("accounts", columns=[name]).column(name)
        ids = pa.table({"account_id": column("account_id"), "meter_id": column("meter_id")})
        if ids.num_rows == 0 and required:
            raise no_accounts(lake)
        check_registry(lake, ids)
        self.meter_range = meter_range
        keep = None
        if meter_range is not None:
            m = ids.column("meter_id")
            keep = pc.and_(pc.greater_equal(m, meter_range[0]), pc.less_equal(m, meter_range[1]))
            ids = ids.filter(keep)
        self.n = ids.num_rows
        if self.n == 0:
            return
        mid = ids.column("meter_id").to_numpy()
        order = None if self.n < 2 or bool(np.all(mid[1:] > mid[:-1])) else \
            pa.array(np.argsort(mid, kind="stable"))      # (a registry kept in meter order: no copy)
        del mid

        def arranged(col):
            if keep is not None and len(col) != self.n:
                col = col.filter(keep)
            return col if order is None else col.take(order)
        cols = {name: arranged(ids.column(name)) for name in ("account_id", "meter_id")}
        del ids
        for name in COMPACT:     # repeating strings as dictionaries (indices, not the strings)
            cols[name] = _compact(arranged(column(name)))
        cols["billing_day"] = arranged(column("billing_day"))
        for name, null in MONEY.items():   # as cents, int32 where every value fits (exact), few values: indices
            cols[name] = _compact(arranged(pa.chunked_array([_narrow(cents(column(name), null=null))])))
        area = column("premise_area")
        cols["premise_area"] = _compact(arranged(pa.chunked_array(
            [pa.array(_narrow(cents(area)), mask=np.asarray(area.is_null()))])))
        del area
        self.accounts = pa.table(cols)    # the registry in meter order, compact (≈ 34 bytes an account with 12-character ids)
        self.offset = 0
        catalog, self._heat_catalog = heating.split(load_tariffs(lake, heating=True))
        check_catalog(lake, catalog, cfg)
        self.tables = compile_tariffs({**heating.stand_ins(self._heat_catalog), **catalog})
        self._meters = _Meters(lake, self.accounts.column("meter_id").to_numpy())
        # the registry's and the meters' columns read: their pages back to the system (kept by the pool,
        # they stayed in the night's RSS: 1M accounts 181 → 114 MiB)
        pa.default_memory_pool().release_unused()
        self._limit_per_hour, self._interval_s = cfg.limit_per_hour, cfg.interval_s
        if whole:
            self._fill(self.accounts)

    def block(self, i0: int, i1: int, meter_range: tuple[int, int] | None = None) -> "Accounts":
        """The accounts at rows ``i0:i1`` (of the meter order) with their arrays; ``meter_range``: the
        readings the block reads (default its own meters')."""
        b = object.__new__(Accounts)
        b.tables, b._meters, b._heat_catalog = self.tables, self._meters, self._heat_catalog
        b._limit_per_hour, b._interval_s = self._limit_per_hour, self._interval_s
        b.accounts = self.accounts.slice(i0, i1 - i0)
        b.offset = getattr(self, "offset", 0) + i0       # rows i0:i1 of the run's snapshot
        b._fill(b.accounts)
        b.meter_range = meter_range or ((int(b.meter_ids[0]), int(b.meter_ids[-1])) if b.n else None)
        return b

    def block_bounds(self, size: int) -> list[tuple[int, int, tuple[int, int]]]:
        """(first row, end row, meter range) of each block of at most ``size`` accounts; the meter
        ranges cover every meter id, so each reading is read by exactly one block."""
        meters = self.accounts.column("meter_id")
        cuts = list(range(0, self.n, max(1, size))) + [self.n]
        lo = np.iinfo(np.int64).min
        out = []
        for i0, i1 in zip(cuts[:-1], cuts[1:]):
            hi = int(meters[i1 - 1].as_py()) if i1 < self.n else np.iinfo(np.int64).max
            out.append((i0, i1, (lo, hi)))
            lo = hi + 1
        return out

    def blocks(self, size: int):
        """The accounts block by block (:meth:`block`), in meter order."""
        for i0, i1, rng in self.block_bounds(size):
            yield self.block(i0, i1, rng)

    def _fill(self, acc) -> None:
        """The per-account arrays of the (sorted) accounts ``acc``."""
        self.account_arrow = acc.column("account_id").combine_chunks()
        self.__dict__.pop("account_ids", None)    # (made from account_arrow when asked for)
        self.meter_ids = acc.column("meter_id").to_numpy()
        self.n = len(self.meter_ids)
        self.mode_prepaid = np.asarray(pc.equal(_strings(acc.column("mode")), "prepaid").to_numpy(zero_copy_only=False))
        self.billing_day = acc.column("billing_day").to_numpy().astype(np.int32)
        self.opening, self.warn_1, self.warn_2, self.topup_below, self.topup_amount = (
            _plain(acc.column(name)).to_numpy().astype(np.int64) for name in MONEY)
        self.tariff_ids = _strings(acc.column("tariff_id"))
        area = _plain(acc.column("premise_area")).combine_chunks()
        area = pc.if_else(area.is_valid(), money(area.fill_null(0).to_numpy().astype(np.int64)),
                          pa.scalar(None, MONEY_TYPE))
        self.heat = heating.HeatAccounts.of(self.tariff_ids, area, self._heat_catalog)
        tariffs = pc.dictionary_encode(self.tariff_ids)
        self.meter_tariff = self.tables.indices(tariffs.dictionary.to_pylist())[
            tariffs.indices.to_numpy(zero_copy_only=False)] if self.n else np.zeros(0, np.int32)
        fam_first = self.tables.fam_start[np.arange(len(self.tables.ids))]
        self.currency = np.array([self.tables.versions[v].currency for v in fam_first],
                                 dtype=object)[self.meter_tariff]
        tariff_utility = [self.tables.versions[v].utility for v in fam_first]
        fallback = np.array(tariff_utility, dtype=object)[self.meter_tariff]
        self.utility, self.reg_max = self._meters.lookup(self.offset, self.offset + self.n, fallback)
        # the per-hour limit of each account's utility, by the meter's utility code (no compare of strings)
        limits = self._limit_per_hour
        per_hour = self._meters.of_utility(self.offset, self.offset + self.n, limits, LIMIT_PER_HOUR,
                                           np.array([limits.get(u, LIMIT_PER_HOUR) for u in tariff_utility],
                                                    np.float64)[self.meter_tariff])
        self.limit = per_hour * 1000.0 * self._interval_s / 3600.0

    @cached_property
    def account_ids(self) -> np.ndarray:
        """The account ids as a numpy object array (Python strings: made only when asked for)."""
        return self.account_arrow.to_numpy(zero_copy_only=False)

    def index_of(self, ids) -> np.ndarray:
        """Row of each account id in the snapshot (−1 = unknown). A city's ids are hashed
        :data:`LOOKUP_CHUNK` at a time: one hash table of them all took 236 MB at 4M accounts (the
        night's peak), the pieces take 59 MB for the same CPU time."""
        known = self.account_arrow if hasattr(self, "account_arrow") else \
            self.accounts.column("account_id")      # (a snapshot not filled: whole=False)
        out = None
        for i0 in range(0, max(len(known), 1), LOOKUP_CHUNK):
            part = known.slice(i0, LOOKUP_CHUNK)
            part = part.combine_chunks() if isinstance(part, pa.ChunkedArray) else part
            j = pc.index_in(ids, value_set=part).fill_null(-1).to_numpy().astype(np.int64)
            if out is None:
                out = j
            else:
                hit = (j >= 0) & (out < 0)      # (the first of ids listed twice, as one lookup gives)
                out[hit] = j[hit] + i0
        return out


LIMIT_PER_HOUR = 25.0   # a reading's plausible maximum per hour, of a utility the configuration has none for
LOOKUP_CHUNK = 1 << 20   # account ids hashed at a time by Accounts.index_of
KEPT = ["account_id", "meter_id", "tariff_id", "mode", "billing_day", "premise_area"]
MONEY = {"balance": 0, "warn_1": 3000, "warn_2": 2000, "topup_below": -1, "topup_amount": 0}   # cents of a null
COMPACT = ("tariff_id", "mode")     # kept dictionary-encoded in the run's snapshot


def _narrow(a: np.ndarray) -> np.ndarray:
    """``a`` as int32 when every value fits (exact), else as it is."""
    i32 = np.iinfo(np.int32)
    return a.astype(np.int32) if len(a) and i32.min <= a.min() and a.max() <= i32.max else a


def _compact(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """``col`` dictionary-encoded with the narrowest index that holds its distinct values, when the
    index is narrower than a value (strings always): what the run holds for every account."""
    d = col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)
    k = max((len(c.dictionary) for c in d.chunks), default=0)
    index = next(t for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64()) if k <= 2 ** (t.bit_width - 1) - 1)
    value = d.type.value_type
    if pa.types.is_integer(value) and index.bit_width >= value.bit_width:
        return col                      # (many values: as they are)
    return d.cast(pa.dictionary(index, value))


def _plain(col):
    """A column the run keeps compact (:func:`_compact`) as its values."""
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _strings(col) -> pa.Array:
    """A (dictionary-encoded) string column as one plain string array."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col


class _Meters:
    """The meters registry looked up once for the run's accounts (``meter_ids``, in their order): the
    utility code and register maximum of each account's meter, as narrow as their values allow (about
    5 bytes an account held for the night, instead of the registry's ids)."""

    def __init__(self, lake: Lake, meter_ids: np.ndarray):
        meters = lake.read("meters", columns=["meter_id", "utility", "register_max"])
        mid = meters.column("meter_id").to_numpy()
        order = np.argsort(mid, kind="stable")
        util = pc.dictionary_encode(meters.column("utility").combine_chunks())
        k = len(util.dictionary)
        self.utility_names = np.array(util.dictionary.to_pylist() + [None], dtype=object)  # k: no utility
        self.unknown = k + 1                                                             # no such meter
        code = np.full(len(meter_ids), self.unknown, np.min_scalar_type(self.unknown))
        reg_max = np.zeros(len(meter_ids), np.int64)
        if len(mid):
            mid = mid[order]
            pos = np.minimum(np.searchsorted(mid, meter_ids), len(mid) - 1)
            known = mid[pos] == meter_ids
            del mid
            at = order[pos[known]]
            code[known] = util.indices.fill_null(k).to_numpy()[at]
            reg_max[known] = np.rint(meters.column("register_max").fill_null(0).to_numpy()[at] * 1000)
        self.code, self.reg_max = code, _narrow(reg_max)      # reg_max: milli-units

    def lookup(self, i0: int, i1: int, fallback: np.ndarray):
        """(utility, register maximum in milli-units) of the meters of the run's accounts ``i0:i1``
        (unknown meters: ``fallback``, 0)."""
        code = self.code[i0:i1]
        known = code != self.unknown
        utility = np.where(known, self.utility_names[np.where(known, code, 0)], fallback)
        return utility, self.reg_max[i0:i1].astype(np.int64)

    def of_utility(self, i0: int, i1: int, by_utility: dict, default: float, fallback: np.ndarray) -> np.ndarray:
        """``by_utility`` of the utility of each meter of the run's accounts ``i0:i1`` (float64; a utility
        it lacks, or none: ``default``; unknown meters: ``fallback``), looked up per utility code."""
        per_code = np.array([by_utility.get(u, default) for u in self.utility_names] + [0.0], np.float64)
        code = self.code[i0:i1]
        return np.where(code != self.unknown, per_code[code], fallback)
