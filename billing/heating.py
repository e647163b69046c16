"""The heating charge (供暖费): a season's bills of many accounts under one heating tariff, in exact
integer cents (:mod:`meters.heating` describes the tariffs).

- ``area``: one bill on the season's first day: premise m² × area price (line: tier 0, band ``area``).
- ``two_part``: a bill at every month end inside the season and on its last day. Each bill charges
  the basic price accrued over its days (tier 0, band ``basic``: the season's basic charge spread
  over the season's days) and the heat read in it (tier 1, band ``energy``). The season's last bill
  also carries the true-up that brings the season total inside [floor, cap] × the area charge
  (tier 0, band ``floor`` or ``cap``). Amounts are differences of rounded season-to-date sums, so the
  bills of a season add up exactly to the season's charge.

Prepaid accounts are debited the bill's total on its day; postpaid accounts get it as a bill
(:func:`statements`). The engine works on arrays; ``reference/heating.py`` is its plain-Python
reference, held equal by hypothesis (tests/test_heating.py).

Exactness: prices and ratios are kept to 1e-4 (checked), areas in hundredths of m² and heat in
thousandths of a kWh, so every product fits int64 for areas up to 100 000 m², heat up to 10^9 kWh
per season and prices up to 10 000 per unit.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from meters.errors import MetersError
from meters.heating import HeatingTariff
from meters.tariffs import Period

P = 10_000                     # prices and ratios in 1e-4 currency units
MAX_AREA_CENTI = 10_000_000    # 100 000 m²
MAX_HEAT_MILLI = 10**12        # 10^9 kWh


def scaled(x: float, what: str) -> int:
    """``x`` in 1e-4 units, or a :class:`MetersError` when it has more than 4 decimals."""
    v = round(x * P)
    if abs(v - x * P) > 1e-6 * max(1.0, abs(x)):
        raise MetersError(f"heating tariff: {what} {x!r} has more than 4 decimal places")
    return int(v)


def round_div(x: np.ndarray, d: int) -> np.ndarray:
    """``x / d`` rounded half up, for int64 ``x ≥ 0`` (no overflow: divmod, not 2x + d)."""
    q, r = np.divmod(x, d)
    return q + (2 * r >= d)


def energy_factor(t: HeatingTariff) -> tuple[int, int]:
    """Cents = heat_milli × price_e4 × num // den: kWh (1e-3 kWh × 1e-4 → 1e-7 currency) or GJ
    (× 0.0036 GJ per kWh)."""
    return (1, 100_000) if t.energy_unit == "kWh" else (36, 1_000_000_000)


def area_cents(area_centi: np.ndarray, price: float) -> np.ndarray:
    """Premise area (hundredths of m²) × a price per m², in cents rounded half up."""
    return round_div(np.asarray(area_centi, np.int64) * scaled(price, "price per m²"), P)


def basic_to_date(t: HeatingTariff, area_centi: np.ndarray, days: int, season_days: int) -> np.ndarray:
    """The basic charge accrued over the season's first ``days`` days (cents)."""
    full = np.asarray(area_centi, np.int64) * scaled(t.basic_price, "basic_price")   # 1e-6 currency
    return round_div(full * days, P * season_days)


def energy_to_date(t: HeatingTariff, heat_milli: np.ndarray) -> np.ndarray:
    """The energy charge of the season's heat so far (thousandths of a kWh), in cents."""
    num, den = energy_factor(t)
    return round_div(np.asarray(heat_milli, np.int64) * (scaled(t.energy_price, "energy_price") * num), den)


def bounds(t: HeatingTariff, area_centi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The season total's floor and cap in cents (0 / int64 max where the tariff sets none)."""
    ref = area_cents(area_centi, t.area_price)
    lo = np.zeros_like(ref) if t.floor_ratio is None else round_div(ref * scaled(t.floor_ratio, "floor_ratio"), P)
    hi = (np.full_like(ref, np.iinfo(np.int64).max) if t.cap_ratio is None
          else round_div(ref * scaled(t.cap_ratio, "cap_ratio"), P))
    return lo, hi


@dataclass
class Charge:
    """One bill's money by line (int64 cents per account; zero where a line does not apply)."""

    basic: np.ndarray
    energy: np.ndarray
    adjust: np.ndarray         # the season-end true-up: > 0 floor, < 0 cap

    @property
    def total(self) -> np.ndarray:
        return self.basic + self.energy + self.adjust


def check_inputs(area_centi: np.ndarray, heat_milli: np.ndarray | None = None) -> None:
    a = np.asarray(area_centi)
    if len(a) and (a.min() < 0 or a.max() > MAX_AREA_CENTI):
        raise MetersError(f"premise area must be between 0 and {MAX_AREA_CENTI // 100} m²")
    if heat_milli is not None:
        h = np.asarray(heat_milli)
        if len(h) and (h.min() < 0 or h.max() > MAX_HEAT_MILLI):
            raise MetersError(f"season heat must be between 0 and {MAX_HEAT_MILLI // 1000} kWh")


def two_part_charge(t: HeatingTariff, area_centi, heat_prev, heat_now, day_prev: int, day_now: int,
                    season_days: int, closing: bool) -> Charge:
    """The charge of a two-part bill covering season days ``day_prev+1 .. day_now`` (1-based day
    counts into the season) whose season-to-date heat went from ``heat_prev`` to ``heat_now``
    (milli-kWh); ``closing`` for the season's last bill (adds the floor / cap true-up)."""
    area = np.asarray(area_centi, np.int64)
    heat_prev, heat_now = np.asarray(heat_prev, np.int64), np.asarray(heat_now, np.int64)
    check_inputs(area, heat_now)
    if (heat_now < heat_prev).any():
        raise MetersError("season heat to date cannot decrease")
    basic = basic_to_date(t, area, day_now, season_days) - basic_to_date(t, area, day_prev, season_days)
    energy = energy_to_date(t, heat_now) - energy_to_date(t, heat_prev)
    adjust = np.zeros_like(area)
    if closing:
        total = basic_to_date(t, area, season_days, season_days) + energy_to_date(t, heat_now)
        lo, hi = bounds(t, area)
        adjust = np.clip(total, lo, hi) - total
    return Charge(basic, energy, adjust)


def bill_days(t: HeatingTariff, first: dt.date, last: dt.date) -> list[dt.date]:
    """The days a season's bills are issued: area, its first day; two-part, every month end inside
    the season and its last day."""
    if t.method == "area":
        return [first]
    out, d = [], first
    while d < last:
        nxt = (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        end = nxt - dt.timedelta(days=1)
        if end >= last:
            break
        out.append(end)
        d = nxt
    return out + [last]


@dataclass
class Statement:
    """One heating bill of many accounts: the period it covers and its lines."""

    issued: dt.date
    period_start: dt.date
    period_end: dt.date
    closing: bool
    heat_milli: np.ndarray     # heat read in the period (thousandths of a kWh)
    charge: Charge


def statements(t: HeatingTariff, day: dt.date, area_centi, heat_to_date=None) -> list[Statement]:
    """The bills issued on ``day`` (none, or one) for accounts of ``area_centi`` under ``t``;
    ``heat_to_date(d)`` gives each account's season heat (milli-kWh) read up to the end of day ``d``
    (two-part only)."""
    season = t.season(day)
    if season is None:
        return []
    first, last = season
    days = bill_days(t, first, last)
    if day not in days:
        return []
    area = np.asarray(area_centi, np.int64)
    if t.method == "area":
        check_inputs(area)
        z = np.zeros_like(area)
        return [Statement(day, first, last, True, z, Charge(area_cents(area, t.area_price), z, z.copy()))]
    k = days.index(day)
    prev = days[k - 1] if k else first - dt.timedelta(days=1)
    season_days = (last - first).days + 1
    h_prev = heat_to_date(prev) if k else np.zeros_like(area)
    h_now = heat_to_date(day)
    ch = two_part_charge(t, area, h_prev, h_now, (prev - first).days + 1 if k else 0, (day - first).days + 1,
                         season_days, day == last)
    return [Statement(day, prev + dt.timedelta(days=1), day, day == last, np.asarray(h_now) - h_prev, ch)]


def lines(t: HeatingTariff, st: Statement, area_centi, i: int) -> list[dict]:
    """Readable bill lines of account ``i`` (``bill_lines`` rows without the account and period)."""
    area_m2 = int(area_centi[i]) / 100
    c = st.charge
    if t.method == "area":
        return [{"tier": 0, "band": "area", "quantity": area_m2, "unit_price": t.area_price,
                 "amount_cents": int(c.basic[i])}]
    scale = 1.0 if t.energy_unit == "kWh" else 0.0036
    out = [{"tier": 0, "band": "basic", "quantity": area_m2, "unit_price": t.basic_price,
            "amount_cents": int(c.basic[i])},
           {"tier": 1, "band": "energy", "quantity": int(st.heat_milli[i]) / 1000 * scale,
            "unit_price": t.energy_price, "amount_cents": int(c.energy[i])}]
    if st.closing and c.adjust[i]:
        ratio = t.floor_ratio if c.adjust[i] > 0 else t.cap_ratio
        out.append({"tier": 0, "band": "floor" if c.adjust[i] > 0 else "cap", "quantity": area_m2,
                    "unit_price": t.area_price * ratio, "amount_cents": int(c.adjust[i])})
    return out


# -- the nightly run: heat accounts among the others ------------------------------------------------
def stand_ins() -> dict:
    """Zero-priced interval tariffs under the heating tariffs' ids: heat accounts go through VEE and
    the interval engine like the others (their quantities, intervals and rollovers), and their money
    comes from :func:`day_heating`."""
    from meters.heating import builtin_heating
    from meters.tariffs import Tariff, uniform_schedule

    out = {}
    for tid, versions in builtin_heating().items():
        t = versions[0]
        out[tid] = [Tariff(tariff_id=tid, utility="heat", unit="kWh", currency=t.currency,
                           description=f"{t.description} (priced per season by billing/heating.py)",
                           effective_from=min(v.effective_from for v in versions), periods=(Period("all"),),
                           weekday_schedule=tuple(map(tuple, uniform_schedule())),
                           weekend_schedule=tuple(map(tuple, uniform_schedule())),
                           tier_bounds=((),) * 12, prices=((0.0,),), source=t.source)]
    return out


@dataclass
class HeatAccounts:
    """The snapshot's heat accounts: rows, heating tariff ids, premise areas (hundredths of m²)."""

    idx: np.ndarray
    tariff_ids: np.ndarray
    area_centi: np.ndarray

    @classmethod
    def of(cls, tariff_id, premise_area) -> "HeatAccounts":
        """From the snapshot's ``tariff_id`` and ``premise_area`` (Arrow) columns."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from meters.heating import builtin_heating

        mask = pc.is_in(tariff_id, value_set=pa.array(sorted(builtin_heating()), pa.string()))
        idx = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        area = premise_area.take(pa.array(idx, pa.int64()))
        if area.null_count:
            raise MetersError(f"{area.null_count} heat account(s) have no premise area; set premise_area in the "
                              "accounts registry")
        centi = pc.multiply(area.cast(pa.decimal128(14, 2)), 100).cast(pa.int64()).to_numpy(zero_copy_only=False)
        tids = np.array(tariff_id.take(pa.array(idx, pa.int64())).to_pylist(), dtype=object)
        return cls(idx, tids, np.asarray(centi, np.int64))

    def billing(self, day: dt.date) -> dict[str, tuple[HeatingTariff, np.ndarray, list[dt.date]]]:
        """Heating tariffs that issue a bill on ``day``: (version, positions in ``idx``, bill days)."""
        from meters.heating import builtin_heating, heating_in_force

        out = {}
        cat = builtin_heating()
        for tid in np.unique(self.tariff_ids) if len(self.idx) else ():
            try:
                t = heating_in_force(cat[tid], day)
            except MetersError:
                continue
            season = t.season(day)
            if season is None:
                continue
            days = bill_days(t, *season)
            if day in days:
                out[tid] = (t, np.flatnonzero(self.tariff_ids == tid), days)
        return out


def read_heat_before(lake, day: dt.date, heat: HeatAccounts, account_ids) -> dict[str, tuple]:
    """For each two-part tariff billing on ``day``: its accounts' season heat (milli-kWh) read up to
    the previous bill and up to the day before, summed from the settled days' ``charges``."""
    out = {}
    for tid, (t, pos, days) in heat.billing(day).items():
        if t.method != "two_part":
            continue
        first = t.season(day)[0]
        k = days.index(day)
        prev = days[k - 1] if k else None
        ids = account_ids[heat.idx[pos]]
        to_prev = np.zeros(len(pos), np.int64)
        to_yday = np.zeros(len(pos), np.int64)
        d = first
        while d < day:
            part = lake.read("charges", d.isoformat(), columns=["account_id", "quantity"])
            if part.num_rows:
                got = dict(zip(part.column("account_id").to_pylist(), part.column("quantity").to_pylist()))
                q = np.rint(np.array([got.get(a, 0.0) for a in ids], np.float64) * 1000).astype(np.int64)
                to_yday += q
                if prev is not None and d <= prev:
                    to_prev += q
            d += dt.timedelta(days=1)
        out[tid] = (to_prev, to_yday)
    return out


@dataclass
class HeatDay:
    """The day's heating money of every account of the snapshot (zeros for others)."""

    cents: np.ndarray                 # int64 [n]
    billed: np.ndarray                # bool [n]: a heating bill issued today
    period_start: np.ndarray          # day numbers of the bill's period
    period_end: np.ndarray
    quantity: np.ndarray              # kWh read in the period
    lines: list                       # (row, line dict)


def day_heating(heat: HeatAccounts, n: int, day: dt.date, before: dict, day_qty: np.ndarray) -> HeatDay:
    """The heating bills issued on ``day`` (area: the season's start; two-part: month ends and the
    season's end), from the season heat read ``before`` today plus today's ``day_qty`` (units)."""
    from .days import day_number

    hd = HeatDay(np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64),
                 np.zeros(n), [])
    for tid, (t, pos, _days) in heat.billing(day).items():
        rows = heat.idx[pos]
        area = heat.area_centi[pos]
        if t.method == "two_part":
            to_prev, to_yday = before[tid]
            today = np.rint(np.asarray(day_qty)[rows] * 1000).astype(np.int64)
            sts = statements(t, day, area, lambda d: to_yday + today if d == day else to_prev)
        else:
            sts = statements(t, day, area)
        for st_ in sts:
            hd.cents[rows] = st_.charge.total
            hd.billed[rows] = True
            hd.period_start[rows] = day_number(st_.period_start)
            hd.period_end[rows] = day_number(st_.period_end)
            hd.quantity[rows] = st_.heat_milli / 1000
            for j, r in enumerate(rows):
                hd.lines += [(int(r), ln) for ln in lines(t, st_, area, j)]
    return hd


def line_rows(hd: HeatDay, account_ids, rows_mask: np.ndarray | None, period_start: bool):
    """The day's heating lines as ``charge_lines`` (``period_start`` False; amount in currency) or
    ``bill_lines`` rows (the bill's ``period_start``; amount in cents) of the rows in ``rows_mask``."""
    from .days import EPOCH

    out = []
    for r, ln in hd.lines:
        if rows_mask is not None and not rows_mask[r]:
            continue
        row = {"account_id": account_ids[r], "tier": ln["tier"], "band": ln["band"], "quantity": ln["quantity"],
               "unit_price": ln["unit_price"]}
        if period_start:
            row["period_start"] = EPOCH + dt.timedelta(days=int(hd.period_start[r]))
            row["amount_cents"] = ln["amount_cents"]
        else:
            row["amount"] = ln["amount_cents"] / 100
        out.append(row)
    return out


def add_bills(bills, bill_lines, hd: HeatDay, heat_bill: np.ndarray, s, account_ids, run_id: str):
    """The day's ``bills`` and ``bill_lines`` with the postpaid heating bills (``heat_bill``) added."""
    import pyarrow as pa

    from meters.schemas import BILLS
    from .days import date_array
    from .money_io import money

    a = np.flatnonzero(heat_bill)
    heat = pa.table({"account_id": pa.array(account_ids[a].tolist(), pa.string()),
                     "period_start": date_array(hd.period_start[a]), "period_end": date_array(hd.period_end[a]),
                     "quantity": hd.quantity[a], "amount": money(hd.cents[a]),
                     "due_date": date_array(np.full(len(a), s.due_day)), "run_id": [run_id] * len(a),
                     "partial": np.zeros(len(a), bool), "estimated": s.estimated[a]}, schema=BILLS)
    rows = line_rows(hd, account_ids, heat_bill, True)
    lines = pa.table({"account_id": [r["account_id"] for r in rows],
                      "period_start": pa.array([r["period_start"] for r in rows], pa.date32()),
                      "tier": pa.array([r["tier"] for r in rows], pa.int32()),
                      "band": [r["band"] for r in rows],
                      "quantity": pa.array([float(r["quantity"]) for r in rows], pa.float64()),
                      "unit_price": pa.array([r["unit_price"] for r in rows], pa.float64()),
                      "amount": money(np.array([r["amount_cents"] for r in rows], np.int64))},
                     schema=bill_lines.schema)
    return pa.concat_tables([bills, heat]), pa.concat_tables([bill_lines, lines])
