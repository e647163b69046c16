"""Heating tariffs and the heating charge: area bills, two-part bills with floor and cap, the
plain-Python reference held equal to the engine."""
from __future__ import annotations

import dataclasses
import datetime as dt
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import heating as H
from meters.errors import MetersError
from meters.heating import HeatingTariff, builtin_heating, heating_in_force
from reference import heating as R

D = dt.date


def tariff(tid: str, day: D = D(2026, 11, 15)) -> HeatingTariff:
    return heating_in_force(builtin_heating()[tid], day)


def season_statements(t, area, daily_milli: dict[D, np.ndarray]):
    """Every statement of the season containing its first day, heat summed from ``daily_milli``."""
    first, last = t.season(min(daily_milli)) if daily_milli else (None, None)
    days = sorted(daily_milli)

    def to_date(d):
        return sum((daily_milli[x] for x in days if x <= d), np.zeros(len(area), np.int64))
    out, d = [], first
    while d <= last:
        out += H.statements(t, d, area, to_date)
        d += dt.timedelta(days=1)
    return out


def test_builtin_heating_catalog_has_beijing_and_harbin_with_sources():
    cat = builtin_heating()
    assert {"cn-bj-res-heat-area", "cn-bj-res-heat-metered", "cn-hrb-res-heat-metered"} <= set(cat)
    bj = tariff("cn-bj-res-heat-area")
    assert (bj.method, bj.area_price, bj.season_start, bj.season_end) == ("area", 24.0, "11-15", "03-15")
    for versions in cat.values():
        assert all(v.source for v in versions)
    assert any("NOT confirmed" in n for n in tariff("cn-hrb-res-heat-metered").notes)


def test_season_dates_are_data():
    bj = tariff("cn-bj-res-heat-area")
    assert bj.season(D(2026, 11, 14)) is None
    assert bj.season(D(2026, 11, 15)) == (D(2026, 11, 15), D(2027, 3, 15))
    assert bj.season(D(2027, 3, 15)) == (D(2026, 11, 15), D(2027, 3, 15))
    assert bj.season(D(2027, 3, 16)) is None
    early = dataclasses.replace(bj, season_start="11-01")
    assert early.season(D(2026, 11, 1)) == (D(2026, 11, 1), D(2027, 3, 15))


def test_area_bill_of_a_season():
    bj = tariff("cn-bj-res-heat-area")
    area = np.array([8645, 12000, 5033])              # 86.45, 120.00, 50.33 m²
    assert H.statements(bj, D(2026, 11, 14), area) == []
    assert H.statements(bj, D(2026, 11, 16), area) == []
    [st_] = H.statements(bj, D(2026, 11, 15), area)
    assert (st_.period_start, st_.period_end) == (D(2026, 11, 15), D(2027, 3, 15))
    assert st_.charge.total.tolist() == [207480, 288000, 120792]   # 86.45 × 24 = 2074.80 …
    [line] = H.lines(bj, st_, area, 0)
    assert line == {"tier": 0, "band": "area", "quantity": 86.45, "unit_price": 24.0, "amount_cents": 207480}


def test_two_part_monthly_bills_add_up_and_floor_and_cap_each_bind_once():
    hrb = dataclasses.replace(tariff("cn-hrb-res-heat-metered", D(2026, 10, 20)), floor_ratio=0.7)
    area = np.array([10000, 10000, 10000])               # 100 m² each: area charge 3874.00
    first, last = hrb.season(D(2026, 10, 20))
    n = (last - first).days + 1
    # season heat: 10 GJ (floor binds), 40 GJ (inside), 90 GJ (cap binds); spread evenly over the days
    season_kwh = np.array([10, 40, 90]) * 1_000_000 / 3600
    per_day = np.rint(season_kwh * 1000 / n).astype(np.int64)
    daily = {first + dt.timedelta(days=i): per_day for i in range(n)}
    sts = season_statements(hrb, area, daily)
    assert [s.issued for s in sts] == [D(2026, 10, 31), D(2026, 11, 30), D(2026, 12, 31), D(2027, 1, 31),
                                       D(2027, 2, 28), D(2027, 3, 31), D(2027, 4, 20)]
    assert [s.closing for s in sts] == [False] * 6 + [True]
    total = sum(s.charge.total for s in sts)
    basic = sum(s.charge.basic for s in sts)
    assert basic.tolist() == [193700] * 3                 # 19.37 × 100 m², spread without a cent lost
    lo, hi = 271180, 387400                                # 0.7 × and 1.0 × 3874.00
    assert total.tolist()[0] == lo and total.tolist()[2] == hi
    assert lo < total[1] < hi
    adjust = sts[-1].charge.adjust
    assert adjust[0] > 0 and adjust[1] == 0 and adjust[2] < 0
    bands = [[ln["band"] for ln in H.lines(hrb, sts[-1], area, i)] for i in range(3)]
    assert bands == [["basic", "energy", "floor"], ["basic", "energy"], ["basic", "energy", "cap"]]
    # the energy line shows GJ at the GJ price
    e = H.lines(hrb, sts[0], area, 1)[1]
    assert e["unit_price"] == 39.14 and e["quantity"] == pytest.approx(int(per_day[1]) * 12 / 1000 * 0.0036)


def test_beijing_two_part_has_no_bound_and_prices_kwh():
    bj = tariff("cn-bj-res-heat-metered")
    area = np.array([10000])
    ch = H.two_part_charge(bj, area, [0], [5_000_000], 0, 121, 121, True)   # 5000 kWh in a season
    assert ch.basic.tolist() == [120000] and ch.energy.tolist() == [80000] and ch.adjust.tolist() == [0]


def test_bad_inputs_are_refused():
    bj = tariff("cn-bj-res-heat-metered")
    with pytest.raises(MetersError, match="decrease"):
        H.two_part_charge(bj, [100], [5], [4], 0, 1, 121, False)
    with pytest.raises(MetersError, match="premise area"):
        H.statements(tariff("cn-bj-res-heat-area"), D(2026, 11, 15), np.array([-1]))
    with pytest.raises(MetersError, match="4 decimal"):
        H.area_cents(np.array([100]), 24.00001)
    with pytest.raises(MetersError, match="floor_ratio"):
        HeatingTariff.from_dict({**bj.to_dict(), "floor_ratio": 1.2, "cap_ratio": 1.0})
    with pytest.raises(MetersError, match="season_start"):
        HeatingTariff.from_dict({**bj.to_dict(), "season_start": "02-30"})


prices = st.integers(1, 2_000_000).map(lambda x: x / 10_000)            # ≤ 200, 4 decimals
ratios = st.one_of(st.none(), st.integers(0, 20_000).map(lambda x: x / 10_000))


@settings(max_examples=60, deadline=None)
@given(area=st.lists(st.integers(0, 50_000), min_size=1, max_size=4), basic=prices, energy=prices,
       area_price=prices, lo=ratios, hi=ratios, unit=st.sampled_from(["kWh", "GJ"]),
       method=st.sampled_from(["area", "two_part"]), start=st.sampled_from(["11-15", "10-20", "12-01"]),
       end=st.sampled_from(["03-15", "04-20", "02-28"]), seed=st.integers(0, 2**32 - 1))
def test_engine_equals_reference(area, basic, energy, area_price, lo, hi, unit, method, start, end, seed):
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    t = HeatingTariff(tariff_id="t", description="", effective_from=D(2000, 1, 1), method=method,
                      season_start=start, season_end=end, area_price=area_price, basic_price=basic,
                      energy_price=energy, energy_unit=unit, floor_ratio=lo, cap_ratio=hi)
    area = np.array(area, np.int64)
    first, last = t.season(D(2026, 12, 31)) or t.season(D(2027, 1, 1))
    n = (last - first).days + 1
    rng = np.random.default_rng(seed)
    heat = rng.integers(0, 2_000_000, (n, len(area))) * (rng.random((n, len(area))) < 0.9)
    daily = {first + dt.timedelta(days=i): heat[i] for i in range(n)}
    got = [(s.issued, s.charge.basic.tolist(), s.charge.energy.tolist(), s.charge.adjust.tolist())
           for s in season_statements(t, area, daily)]
    for j in range(len(area)):
        ref = R.season_bills(t, Fraction(int(area[j]), 100),
                             {d: Fraction(int(q[j]), 1000) for d, q in daily.items()}, first, last)
        assert [(d, b[j], e[j], a[j]) for d, b, e, a in got] == ref
