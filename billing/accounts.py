"""The day's account snapshot: accounts sorted by meter, with their meters, settlement settings and
compiled tariffs, as the arrays the day's computation takes."""
from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from meters.errors import MetersError
from meters.lake import Lake
from meters.registry import load_tariffs

from . import heating
from .config import Config
from .guards import check_registry
from .tariff_check import check_catalog
from .money_io import cents


def no_accounts(lake: Lake) -> MetersError:
    return MetersError(f"lake {lake.root} has no accounts; run `meters accounts import` first")


class Accounts:
    """Accounts (sorted by meter), meters and compiled tariffs for a run; ``meter_range`` (lo, hi)
    takes the accounts of one shard."""

    def __init__(self, lake: Lake, cfg: Config, meter_range: tuple[int, int] | None = None,
                 required: bool = True, table=None):
        """``table``: the accounts (``accounts`` schema) — default the lake's registry; the account
        store gives the settings in force on the day (:mod:`billing.store_inputs`)."""
        from .tariff_arrays import compile_tariffs

        acc = lake.read("accounts") if table is None else table
        if acc.num_rows == 0 and required:
            raise no_accounts(lake)
        check_registry(lake, acc)
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
        catalog, heat_catalog = heating.split(load_tariffs(lake, heating=True))
        self.heat = heating.HeatAccounts.of(acc.column("tariff_id"), acc.column("premise_area"), heat_catalog)
        check_catalog(lake, catalog, cfg)
        self.tables = compile_tariffs({**heating.stand_ins(heat_catalog), **catalog})
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

    def index_of(self, ids) -> np.ndarray:
        """Row of each account id in the snapshot (−1 = unknown)."""
        return pc.index_in(ids, value_set=self.account_arrow).fill_null(-1).to_numpy().astype(np.int64)
