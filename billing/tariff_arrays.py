"""Compile :class:`meters.tariffs.Tariff` versions into stacked numpy tables for the engine.

Every version of every tariff becomes one row ``v`` of the tables; a tariff (a *family*) is the
contiguous run ``fam_start[f] .. fam_start[f] + fam_count[f]`` of its versions sorted by
``effective_from``. The engine picks the version in force by local day number (days since
1970-01-01 in the lake's time zone): ``v_from_day``.

Tables (``V`` versions, ``P`` = most periods, ``T`` = most tiers):

- ``sched[V, 2, 12, 24]`` period index by (weekday 0 / weekend 1, month - 1, local hour)
- ``bounds[V, 12, T]`` cumulative upper tier bounds per month; ``inf`` from the last tier on
- ``bound_per_day[V]`` 1 when bounds are per day (multiplied by the days in the bill period)
- ``prices[V, P, T]``; ``n_periods[V]``, ``n_tiers[V]``
- ``fixed[V]``, ``fixed_per_day[V]``, ``minimum[V]``
- ``fam_cycle[F]`` (0 month, 1 year, 2 billing period), ``fam_method[F]`` (0 chronological, 1 pro rata)
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from meters.errors import MetersError
from meters.tariffs import Tariff

CYCLE_CODES = {"month": 0, "year": 1, "period": 2}
METHOD_CODES = {"chronological": 0, "pro_rata": 1}
EPOCH = dt.date(1970, 1, 1)


def day_number(d: dt.date) -> int:
    """Days since 1970-01-01 (the engine's local day number)."""
    return (d - EPOCH).days


def day_date(n: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(n))


@dataclass(frozen=True)
class TariffTables:
    ids: tuple[str, ...]
    versions: tuple[Tariff, ...]
    fam_start: np.ndarray
    fam_count: np.ndarray
    fam_cycle: np.ndarray
    fam_method: np.ndarray
    v_from_day: np.ndarray
    sched: np.ndarray
    n_periods: np.ndarray
    n_tiers: np.ndarray
    bounds: np.ndarray
    bound_per_day: np.ndarray
    prices: np.ndarray
    fixed: np.ndarray
    fixed_per_day: np.ndarray
    minimum: np.ndarray

    @property
    def max_periods(self) -> int:
        return self.prices.shape[1]

    @property
    def max_tiers(self) -> int:
        return self.prices.shape[2]

    def index(self, tariff_id: str) -> int:
        """Family index of ``tariff_id`` (raises :class:`MetersError` when unknown)."""
        try:
            return self.ids.index(tariff_id)
        except ValueError:
            raise MetersError(f"unknown tariff {tariff_id!r}; known: {', '.join(self.ids)}") from None

    def indices(self, tariff_ids) -> np.ndarray:
        """Family index of each id in ``tariff_ids`` (vectorised over repeated ids)."""
        lookup = {t: i for i, t in enumerate(self.ids)}
        try:
            return np.fromiter((lookup[t] for t in tariff_ids), np.int32)
        except KeyError as e:
            raise MetersError(f"unknown tariff {e.args[0]!r}; known: {', '.join(self.ids)}") from None

    def period_name(self, version: int, period: int) -> str:
        return self.versions[version].periods[period].name

    def kernel_args(self) -> tuple:
        """The arrays in the order the numba kernels take them."""
        return (self.fam_start, self.fam_count, self.fam_cycle, self.fam_method, self.v_from_day,
                self.sched, self.bounds, self.bound_per_day, self.prices, self.n_tiers,
                self.fixed, self.fixed_per_day, self.minimum)


def compile_tariffs(catalog) -> TariffTables:
    """Stack tariffs into engine tables.

    ``catalog``: ``{tariff_id: [versions]}`` (as :func:`meters.registry.load_tariffs` returns) or a
    list of :class:`Tariff` (grouped by ``tariff_id``). Versions of one tariff must share the tier
    cycle, the tier method and the number of periods.
    """
    if not isinstance(catalog, dict):
        grouped: dict[str, list[Tariff]] = {}
        for t in catalog:
            grouped.setdefault(t.tariff_id, []).append(t)
        catalog = grouped
    if not catalog:
        raise MetersError("no tariffs to compile")
    ids = tuple(catalog)
    versions: list[Tariff] = []
    fam_start, fam_count, fam_cycle, fam_method = [], [], [], []
    for tid in ids:
        vs = sorted(catalog[tid], key=lambda t: t.effective_from)
        if len({t.effective_from for t in vs}) != len(vs):
            raise MetersError(f"tariff {tid}: two versions share an effective_from date")
        first = vs[0]
        for t in vs[1:]:
            if (t.tier_cycle, t.tier_method, t.n_periods) != (first.tier_cycle, first.tier_method, first.n_periods):
                raise MetersError(f"tariff {tid}: versions must share tier_cycle, tier_method and periods "
                                  f"(version {t.effective_from} differs from {first.effective_from})")
        fam_start.append(len(versions))
        fam_count.append(len(vs))
        fam_cycle.append(CYCLE_CODES[first.tier_cycle])
        fam_method.append(METHOD_CODES[first.tier_method])
        versions.extend(vs)
    V = len(versions)
    P = max(t.n_periods for t in versions)
    T = max(t.n_tiers for t in versions)
    sched = np.zeros((V, 2, 12, 24), np.int8)
    bounds = np.full((V, 12, T), np.inf)
    prices = np.zeros((V, P, T))
    for v, t in enumerate(versions):
        sched[v, 0] = np.asarray(t.weekday_schedule, np.int8)
        sched[v, 1] = np.asarray(t.weekend_schedule, np.int8)
        if t.n_tiers > 1:
            bounds[v, :, : t.n_tiers - 1] = np.asarray(t.tier_bounds, float)
        pr = np.asarray(t.prices, float)
        prices[v, : t.n_periods, : t.n_tiers] = pr
        prices[v, : t.n_periods, t.n_tiers:] = pr[:, -1:]  # unreachable tiers: repeat the last price
    return TariffTables(
        ids=ids, versions=tuple(versions),
        fam_start=np.asarray(fam_start, np.int32), fam_count=np.asarray(fam_count, np.int32),
        fam_cycle=np.asarray(fam_cycle, np.int8), fam_method=np.asarray(fam_method, np.int8),
        v_from_day=np.asarray([day_number(t.effective_from) for t in versions], np.int32),
        sched=sched,
        n_periods=np.asarray([t.n_periods for t in versions], np.int32),
        n_tiers=np.asarray([t.n_tiers for t in versions], np.int32),
        bounds=bounds,
        bound_per_day=np.asarray([t.tier_bound_unit == "day" for t in versions], np.uint8),
        prices=prices,
        fixed=np.asarray([t.fixed_charge for t in versions], float),
        fixed_per_day=np.asarray([t.fixed_charge_unit == "day" for t in versions], np.uint8),
        minimum=np.asarray([t.minimum_charge for t in versions], float),
    )
