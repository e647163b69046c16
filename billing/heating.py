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
