"""Plain-Python reference of the heating charge (billing/heating.py): one account, exact fractions
from the tariff's decimal figures, half-up rounding to cents. Written from the rules, not the engine."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction


def _f(x: float) -> Fraction:
    return Fraction(Decimal(repr(x)))


def _round(x: Fraction) -> int:
    """Half-up rounding of a non-negative fraction of cents."""
    q, r = divmod(x.numerator, x.denominator)
    return q + (2 * r >= x.denominator)


def season(t, day: dt.date):
    for year in (day.year - 1, day.year):
        m1, d1 = map(int, t.season_start.split("-"))
        m2, d2 = map(int, t.season_end.split("-"))
        first = dt.date(year, m1, d1)
        last = dt.date(year + ((m2, d2) < (m1, d1)), m2, d2)
        if first <= day <= last:
            return first, last
    return None


def area_charge(t, area_m2: Fraction) -> int:
    return _round(area_m2 * _f(t.area_price) * 100)


def season_bills(t, area_m2: Fraction, daily_kwh: dict[dt.date, Fraction], first: dt.date, last: dt.date):
    """Every bill of one season: [(issued, basic, energy, adjust)] in cents, from the heat of each day."""
    if t.method == "area":
        return [(first, area_charge(t, area_m2), 0, 0)]
    n = (last - first).days + 1
    per_kwh = _f(t.energy_price) * (1 if t.energy_unit == "kWh" else Fraction(36, 10000))
    ends = []
    d = first
    while d <= last:
        nxt = d + dt.timedelta(days=1)
        if nxt.day == 1 or d == last:
            ends.append(d)
        d = nxt
    out, basic_prev, energy_prev, heat = [], 0, 0, Fraction(0)
    for end in ends:
        start = out[-1][0] + dt.timedelta(days=1) if out else first
        d = start
        while d <= end:
            heat += daily_kwh.get(d, Fraction(0))
            d += dt.timedelta(days=1)
        k = (end - first).days + 1
        basic_now = _round(area_m2 * _f(t.basic_price) * k / n * 100)
        energy_now = _round(heat * per_kwh * 100)
        adjust = 0
        if end == last:
            total = basic_now + energy_now
            ref = area_charge(t, area_m2)
            lo = _round(ref * _f(t.floor_ratio)) if t.floor_ratio is not None else 0
            hi = _round(ref * _f(t.cap_ratio)) if t.cap_ratio is not None else None
            clamped = max(total, lo) if hi is None else min(max(total, lo), hi)
            adjust = clamped - total
        out.append((end, basic_now - basic_prev, energy_now - energy_prev, adjust))
        basic_prev, energy_prev = basic_now, energy_now
    return out
