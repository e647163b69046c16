"""Tariffs checked before they can move money: sane price bounds, a test day priced at import, and
removal of a version no settled day used.

``import_tariffs`` (``meters tariffs import``) refuses a version whose prices or charges are outside
the configured bounds (``billing.json``: ``price_max`` per unit, ``fixed_max`` for fixed and minimum
charges, in currency units) or that cannot price a test day for its accounts (compiled with the rest of
the catalog, against the carried state's table shape), so a bad version never lands. A billing run
checks the bounds again when it loads the catalog (a version written some other way: the lake is
damaged, exit 6). ``remove_version`` (``meters tariffs remove``) drops a version not yet in force on a
settled day.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meters.errors import LakeDamaged, MetersError
from meters.lake import Lake
from meters.registry import load_tariffs, save_tariffs
from meters.tariffs import Tariff

from .config import Config
from .state import settled_days

TEST_DAY_QUANTITY = 1.0   # units per interval on the test day


def bounds_problem(t: Tariff, cfg: Config) -> str | None:
    """Why ``t`` is outside the sane bounds (None: inside)."""
    worst = max((abs(p) for row in t.prices for p in row), default=0.0)
    if any(not 0.0 <= p <= cfg.price_max for row in t.prices for p in row):
        return f"a price of {worst:g} {t.currency}/{t.unit} is outside 0..{cfg.price_max:g}"
    for name, v in (("fixed charge", t.fixed_charge), ("minimum charge", t.minimum_charge)):
        if not 0.0 <= v <= cfg.fixed_max:
            return f"its {name} {v:g} {t.currency} is outside 0..{cfg.fixed_max:g}"
    return None


def check_catalog(lake: Lake, catalog: dict[str, list[Tariff]], cfg: Config) -> None:
    """At load time: every version inside the bounds, else :class:`LakeDamaged` naming it."""
    for versions in catalog.values():
        for t in versions:
            why = bounds_problem(t, cfg)
            if why:
                raise LakeDamaged(f"{lake.table_dir('tariffs')}: tariff {t.tariff_id} version {t.effective_from}: "
                                  f"{why}; remove it with `meters tariffs remove {t.tariff_id} --version "
                                  f"{t.effective_from}`")


def _width(tables) -> int:
    from .engine import CycleState
    return int(np.prod(CycleState.empty(1, tables).line_qty.shape[1:]))


def price_test_day(lake: Lake, catalog: dict[str, list[Tariff]], t: Tariff, cfg: Config) -> None:
    """Price ``t``'s first day in force (after the last settled day) for its accounts (one synthetic
    meter when none has it yet), with the whole ``catalog`` compiled; refuse what cannot be priced."""
    from .engine import CycleState, price_grid
    from .tariff_arrays import compile_tariffs

    who = f"tariff {t.tariff_id} version {t.effective_from}"
    settled = settled_days(lake)
    day = max(t.effective_from, settled[-1] + dt.timedelta(days=1)) if settled else t.effective_from
    try:
        tables = compile_tariffs(catalog)
    except MetersError as e:
        raise MetersError(f"{who} does not fit the catalog: {e}") from None
    if settled:
        st = lake.read("billing_state", settled[-1].isoformat(), columns=["line_qty"])
        if st.num_rows and len(st.column("line_qty")[0]) != _width(tables):
            raise MetersError(f"{who} changes the shape of the tariff tables (periods × tiers); the carried "
                              f"state of {settled[-1]} could not be priced with it (billing would stop)")
    acc = lake.read("accounts", columns=["tariff_id", "billing_day"])
    acc = acc.filter(pc.equal(acc.column("tariff_id"), t.tariff_id))
    n = max(acc.num_rows, 1)
    billing_day = acc.column("billing_day").fill_null(1).to_numpy().astype(np.int32) if acc.num_rows else \
        np.ones(1, np.int32)
    interval = cfg.interval_s
    start, end = lake.day_bounds_utc(day)
    slots = int((end - start).total_seconds()) // interval
    off = int(start.astimezone(lake.tz).utcoffset().total_seconds())
    try:
        priced = price_grid(tables, np.full((n, slots), TEST_DAY_QUANTITY), int(start.timestamp()) + off + interval,
                            interval, tables.indices([t.tariff_id] * n), state=CycleState.empty(n, tables),
                            billing_day=billing_day)
    except (MetersError, ValueError, OverflowError, FloatingPointError) as e:
        raise MetersError(f"{who} cannot price a test day ({day}): {e}") from None
    total = np.asarray(priced.day_total, np.float64)
    limit = (cfg.price_max * TEST_DAY_QUANTITY * slots + 2 * cfg.fixed_max)
    if not np.all(np.isfinite(total)) or np.any(np.abs(total) > limit):
        raise MetersError(f"{who} prices a test day ({day}, {TEST_DAY_QUANTITY:g} {t.unit} per interval) at "
                          f"{float(np.max(np.abs(total))):g} {t.currency}: not a sane amount")


def import_tariffs(lake: Lake, tariffs: list, cfg: Config | None = None) -> int:
    """Check ``tariffs`` (bounds, a test day; heating tariffs: a test season,
    :func:`billing.heating.check_version`) and save them; returns the versions new or changed."""
    from .heating import HeatingTariff, check_version

    heat = [t for t in tariffs if isinstance(t, HeatingTariff)]
    for t in heat:
        check_version(t)
    known = load_tariffs(lake, heating=True)
    for t in tariffs:
        other = known.get(t.tariff_id)
        is_heat = isinstance(t, HeatingTariff)
        if other and isinstance(other[0], HeatingTariff) != is_heat:
            raise MetersError(f"tariff {t.tariff_id} is a{' heating' if is_heat else 'n interval'} tariff; the "
                              f"catalog's {t.tariff_id} is not (import it under another --id)")
    stored = {r["tariff_id"] for r in lake.read("tariffs", columns=["tariff_id"]).to_pylist()}
    for tid in {t.tariff_id for t in heat} - stored:   # a lake made before heating tariffs were seeded
        mine = {t.effective_from for t in heat if t.tariff_id == tid}
        heat = [v for v in known.get(tid, []) if v.effective_from not in mine] + heat
    tariffs = [t for t in tariffs if not isinstance(t, HeatingTariff)]
    if not tariffs:
        return save_tariffs(lake, heat)
    cfg = cfg or Config.load(lake)
    for t in tariffs:
        why = bounds_problem(t, cfg)
        if why:
            raise MetersError(f"tariff {t.tariff_id} version {t.effective_from}: {why} (bounds: billing.json "
                              f"price_max, fixed_max); not imported")
    catalog = load_tariffs(lake)
    for t in tariffs:
        versions = [v for v in catalog.get(t.tariff_id, []) if v.effective_from != t.effective_from]
        catalog[t.tariff_id] = sorted(versions + [t], key=lambda v: v.effective_from)
    for t in tariffs:
        price_test_day(lake, catalog, t, cfg)
    return save_tariffs(lake, tariffs + heat)


def remove_version(lake: Lake, tariff_id: str, version: dt.date) -> None:
    """Remove one version of a tariff that no settled day used (in force after the last settled day)."""
    catalog = load_tariffs(lake, heating=True)
    versions = catalog.get(tariff_id)
    if not versions or version not in {v.effective_from for v in versions}:
        known = ", ".join(str(v.effective_from) for v in versions or [])
        raise MetersError(f"tariff {tariff_id} has no version {version}" + (f" (versions: {known})" if known else ""))
    settled = settled_days(lake)
    if settled and version <= settled[-1]:
        raise MetersError(f"tariff {tariff_id} version {version} is in force on settled days (last settled day "
                          f"{settled[-1]}); it cannot be removed (import a corrected version instead)")
    stored = lake.read("tariffs", columns=["tariff_id", "effective_from"]).to_pylist()
    if {"tariff_id": tariff_id, "effective_from": version} not in stored:
        raise MetersError(f"tariff {tariff_id} version {version} is built in, not in the lake's catalog; import a "
                          f"corrected version instead")
    if len(versions) == 1:
        used = lake.read("accounts", columns=["tariff_id"]).column("tariff_id")
        if pc.any(pc.equal(used, tariff_id)).as_py():
            raise MetersError(f"tariff {tariff_id} version {version} is its only version and accounts use it")
    with lake.lock():
        t = lake.read("tariffs")
        keep = pc.invert(pc.and_(pc.equal(t.column("tariff_id"), tariff_id),
                                 pc.equal(t.column("effective_from"), pa.scalar(version, pa.date32()))))
        lake.replace_partition("tariffs", None, t.filter(keep))
