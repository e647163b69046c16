"""Worked examples of the tariff engine on the built-in tariffs, and its bookkeeping rules."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from billing.engine import CycleState, local_times, price_grid, price_intervals
from billing.money import allocate_cents, daily_cents, round_half_up, to_cents
from billing.tariff_arrays import compile_tariffs, day_date, day_number
from meters.errors import MetersError
from meters.tariffs import Tariff, builtin_catalog, uniform_schedule

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def tables():
    return compile_tariffs(builtin_catalog())


def hourly(start: dt.date, days: int, per_hour) -> tuple[np.ndarray, np.ndarray]:
    """Local times (end − 1 s) and quantities of hourly intervals from local midnight of ``start``."""
    t0 = day_number(start) * 86400
    lts = t0 + 3600 * np.arange(1, days * 24 + 1) - 1
    q = np.broadcast_to(np.asarray(per_hour, float), (days * 24,)).copy() if np.ndim(per_hour) == 0 \
        else np.tile(np.asarray(per_hour, float), days)
    return lts, q


def run(tables, tariff_id, lts, q, **kw):
    return price_intervals(tables, [0, q.size], lts, q, [tables.index(tariff_id)], **kw)


def lines(r, row=0):
    return r.line_quantity[row], r.line_amount[row]


def test_guangdong_july_700_kwh(tables):
    lts, q = hourly(dt.date(2026, 7, 1), 31, 700 / (31 * 24))
    r = run(tables, "cn-gd-res-elec", lts, q)
    lq, la = lines(r)
    np.testing.assert_allclose(lq.sum(axis=0), [260, 340, 100], rtol=1e-12)
    expected = 260 * 0.59886875 + 340 * 0.64886875 + 100 * 0.89886875
    assert r.bill_total[0] == pytest.approx(expected, rel=1e-13)
    assert round_half_up(r.bill_total[0]) == round_half_up(466.208125)
    assert str(round_half_up(r.bill_total[0])) == "466.21"
    assert r.bill_closed[0] and day_date(r.bill_start[0]) == dt.date(2026, 7, 1)
    assert day_date(r.bill_end[0]) == dt.date(2026, 7, 31)
    # daily charges sum to the bill, in float and in telescoped cents
    assert r.day_amount.sum() == pytest.approx(r.bill_total[0], rel=1e-13)
    assert daily_cents(r.day_total).sum() == to_cents(r.bill_total[0]) == 46621


def test_guangdong_winter_bounds(tables):
    lts, q = hourly(dt.date(2026, 1, 1), 31, 700 / (31 * 24))
    r = run(tables, "cn-gd-res-elec", lts, q)
    np.testing.assert_allclose(r.line_quantity[0].sum(axis=0), [200, 200, 300], rtol=1e-12)
    assert r.bill_total[0] == pytest.approx(200 * 0.59886875 + 200 * 0.64886875 + 300 * 0.89886875, rel=1e-13)


def test_beijing_2900_by_november_december_starts_in_tier_2(tables):
    # Jan–Nov: 2 900 kWh in daily intervals, then December in a second run carrying the state
    days = (dt.date(2026, 12, 1) - dt.date(2026, 1, 1)).days
    lts = day_number(dt.date(2026, 1, 1)) * 86400 + 86400 * np.arange(1, days + 1) - 1
    q = np.full(days, 2900 / days)
    r1 = run(tables, "cn-bj-res-elec", lts, q)
    assert r1.bill_start.size == 11 and r1.bill_closed.all()
    assert r1.state.cycle_qty[0] + r1.state.period_qty[0].sum() == pytest.approx(2900)
    lts2, q2 = hourly(dt.date(2026, 12, 1), 31, 300 / (31 * 24))
    r2 = run(tables, "cn-bj-res-elec", lts2, q2, state=r1.state)
    np.testing.assert_allclose(r2.line_quantity[0].sum(axis=0), [0, 300, 0], atol=1e-9)
    assert r2.bill_total[0] == pytest.approx(300 * 0.5383, rel=1e-12)
    # the same from a seeded counter, and January resets to tier 1
    seeded = CycleState.seeded(tables, 2026, [2900.0])
    r3 = run(tables, "cn-bj-res-elec", lts2, q2, state=seeded)
    assert r3.bill_total[0] == pytest.approx(r2.bill_total[0], rel=1e-13)
    lts4, q4 = hourly(dt.date(2027, 1, 1), 31, 300 / (31 * 24))
    r4 = run(tables, "cn-bj-res-elec", lts4, q4, state=r2.state)
    assert r4.bill_total[0] == pytest.approx(300 * 0.4883, rel=1e-12)
    assert r4.state.cycle_key[0] == 2027


def test_beijing_crossing_tier_1_within_a_month_is_split(tables):
    seeded = CycleState.seeded(tables, 2026, [2800.0])
    lts, q = hourly(dt.date(2026, 12, 1), 31, 310 / (31 * 24))
    r = run(tables, "cn-bj-res-elec", lts, q, state=seeded)
    np.testing.assert_allclose(r.line_quantity[0].sum(axis=0), [80, 230, 0], rtol=1e-9)
    assert r.bill_total[0] == pytest.approx(80 * 0.4883 + 230 * 0.5383, rel=1e-12)


def test_shanghai_day_night_across_a_tier_bound(tables):
    # 3 000 kWh used by May; June: 150 kWh by day (06–22), 90 kWh by night → 120 in tier 1, 120 in tier 2,
    # each shared day/night in proportion 150 : 90
    per_hour = np.array([90 / 30 / 8 if (h < 6 or h >= 22) else 150 / 30 / 16 for h in range(24)])
    lts, q = hourly(dt.date(2026, 6, 1), 30, per_hour)
    r = run(tables, "cn-sh-res-elec-tou", lts, q, state=CycleState.seeded(tables, 2026, [3000.0]))
    lq, la = lines(r)
    np.testing.assert_allclose(lq, [[75, 75, 0], [45, 45, 0]], rtol=1e-12)
    expected = 75 * 0.617 + 75 * 0.677 + 45 * 0.307 + 45 * 0.337
    assert r.bill_total[0] == pytest.approx(expected, rel=1e-13)
    assert str(round_half_up(r.bill_total[0])) == "126.03"
    # prepaid daily rule: cost of the period to date minus what was charged; sums exactly to the bill
    assert r.day_total[-1] == r.bill_total[0]
    assert np.all(r.day_amount > 0)
    assert daily_cents(r.day_total).sum() == 12603


def test_shanghai_tou_without_tier_change(tables):
    per_hour = np.array([1.0 if (h < 6 or h >= 22) else 2.0 for h in range(24)])
    lts, q = hourly(dt.date(2026, 3, 1), 31, per_hour)
    r = run(tables, "cn-sh-res-elec-tou", lts, q)
    night, day = 31 * 8 * 1.0, 31 * 16 * 2.0
    assert r.bill_total[0] == pytest.approx(day * 0.617 + night * 0.307, rel=1e-13)


def test_beijing_water_and_gas_annual_tiers(tables):
    days = 365
    lts = day_number(dt.date(2026, 1, 1)) * 86400 + 86400 * np.arange(1, days + 1) - 1
    water = run(tables, "cn-bj-res-water", lts, np.full(days, 300 / days))
    assert water.bill_total.sum() == pytest.approx(180 * 5 + 80 * 7 + 40 * 9, rel=1e-12)
    np.testing.assert_allclose(water.line_quantity.sum(axis=(0, 1)), [180, 80, 40], rtol=1e-9)
    gas = run(tables, "cn-bj-res-gas", lts, np.full(days, 600 / days))
    assert gas.bill_total.sum() == pytest.approx(350 * 2.61 + 150 * 2.83 + 100 * 4.23, rel=1e-12)
    assert gas.bill_start.size == 12


def _custom(**kw) -> Tariff:
    base = dict(tariff_id="x", utility="electricity", unit="kWh", currency="USD", description="test",
                effective_from="2020-01-01", periods=[{"name": "all"}], weekday_schedule=uniform_schedule(),
                tier_bounds=[[100.0]] * 12, prices=[[0.1, 0.2]])
    base.update(kw)
    return Tariff.from_dict(base)


def test_minimum_fixed_per_day_and_billing_period():
    t = _custom(fixed_charge=0.5, fixed_charge_unit="day", minimum_charge=30.0, tier_cycle="period",
                tier_bound_unit="day", tier_bounds=[[2.0]] * 12)
    tb = compile_tariffs([t])
    # billing day 15: period 2026-03-15 .. 2026-04-14 (31 days) → tier bound 62
    lts, q = hourly(dt.date(2026, 3, 15), 31, 1 / 24)      # 1 kWh a day: 31 kWh, all tier 1
    r = price_intervals(tb, [0, q.size], lts, q, [0], billing_day=[15])
    assert day_date(r.bill_start[0]) == dt.date(2026, 3, 15) and day_date(r.bill_end[0]) == dt.date(2026, 4, 14)
    assert r.bill_fixed[0] == pytest.approx(15.5)
    assert r.bill_energy[0] == pytest.approx(3.1)
    assert r.bill_minimum[0] == pytest.approx(30 - 18.6) and r.bill_total[0] == pytest.approx(30.0)
    assert r.day_amount[:-1].max() < 1 and r.day_amount[-1] > 11     # the top-up lands on the last day
    lts, q = hourly(dt.date(2026, 3, 15), 31, 3 / 24)      # 93 kWh: 62 in tier 1, 31 in tier 2
    r = price_intervals(tb, [0, q.size], lts, q, [0], billing_day=[15])
    np.testing.assert_allclose(r.line_quantity[0, 0], [62, 31], rtol=1e-12)


def test_monthly_fixed_charged_once_and_versions_by_day():
    v1 = _custom(fixed_charge=10.0, prices=[[0.1, 0.2]])
    v2 = _custom(fixed_charge=99.0, prices=[[1.0, 2.0]], effective_from="2026-03-16")
    tb = compile_tariffs([v1, v2])
    lts, q = hourly(dt.date(2026, 3, 1), 31, 1 / 24)
    r = price_intervals(tb, [0, q.size], lts, q, [0])
    # the period's fixed charge comes from the version in force on its first day; energy by day
    assert r.bill_fixed[0] == 10.0
    assert r.bill_energy[0] == pytest.approx(15 * 0.1 + 16 * 1.0)
    with pytest.raises(MetersError, match="no tariff version"):
        price_intervals(tb, [0, 24], lts[:24] - 86400 * 365 * 10, q[:24], [0])  # 2016: before any version


def test_bad_input_is_reported(tables):
    lts, q = hourly(dt.date(2026, 7, 1), 2, 1.0)
    with pytest.raises(MetersError, match="negative"):
        run(tables, "cn-gd-res-elec", lts, -q)
    with pytest.raises(MetersError, match="increasing"):
        run(tables, "cn-gd-res-elec", lts[::-1].copy(), q)
    r = run(tables, "cn-gd-res-elec", lts, q)
    with pytest.raises(MetersError, match="increasing"):       # the same intervals again
        run(tables, "cn-gd-res-elec", lts, q, state=r.state)
    with pytest.raises(MetersError, match="unknown tariff"):
        tables.index("nope")


def test_local_times_and_grid_agree(tables):
    start = dt.datetime(2026, 7, 1, tzinfo=SHANGHAI)
    ts = int(start.timestamp()) + 900 * np.arange(1, 96 * 3 + 1)
    lts = local_times(ts, "Asia/Shanghai")
    assert lts[0] == day_number(dt.date(2026, 7, 1)) * 86400 + 899
    assert lts[95] // 86400 == day_number(dt.date(2026, 7, 1))     # midnight closes the previous day
    q = np.random.default_rng(1).random((3, ts.size))
    mt = [tables.index("cn-sh-res-elec-tou")] * 3
    a = price_intervals(tables, np.arange(4) * ts.size, np.tile(lts, 3), q.ravel(), mt)
    b = price_grid(tables, q, int(lts[0]) + 1, 900, mt)
    np.testing.assert_array_equal(a.day_amount, b.day_amount)
    np.testing.assert_array_equal(a.line_amount, b.line_amount)
    # DST: London's clocks go forward on 2026-03-29 01:00 UTC
    ts = int(dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.timezone.utc).timestamp()) + 1800 * np.arange(4)
    got = local_times(ts, "Europe/London") + 1
    assert [(day_date(x // 86400), x % 86400 // 1800) for x in got] == \
        [(dt.date(2026, 3, 29), 1), (dt.date(2026, 3, 29), 2), (dt.date(2026, 3, 29), 5), (dt.date(2026, 3, 29), 6)]


def test_money_rounding_rules():
    assert str(round_half_up(2.675)) == "2.68" and str(round_half_up(-0.005)) == "-0.01"
    assert to_cents([2.675, 0.125, -0.125, 267.49999999999997 / 100]).tolist() == [268, 13, -13, 268]
    lines_ = [0.333, 0.333, 0.334, 10.005]
    c = allocate_cents(lines_)
    assert c.sum() == to_cents(sum(lines_)) and c.tolist() == [33, 33, 34, 1001]
    assert allocate_cents([0.004] * 5).sum() == 2          # 0.02 total spread over five 0.004 lines


def test_meter_batches_with_take_and_concat(tables):
    rng = np.random.default_rng(3)
    lts, _ = hourly(dt.date(2026, 12, 20), 20, 0.0)
    q = rng.random((4, lts.size)) * 2
    mt = tables.indices(["cn-bj-res-elec", "cn-sh-res-elec-tou", "cn-gd-res-elec", "cn-bj-res-gas"])
    seeded = CycleState.seeded(tables, 2026, [2870.0, 3100.0, 0.0, 340.0])
    whole = price_intervals(tables, np.arange(5) * lts.size, np.tile(lts, 4), q.ravel(), mt, state=seeded)
    parts = [price_intervals(tables, np.arange(3) * lts.size, np.tile(lts, 2), q[idx].ravel(), mt[idx],
                             state=seeded.take(idx)) for idx in (np.array([0, 1]), np.array([2, 3]))]
    np.testing.assert_array_equal(np.concatenate([p.day_amount for p in parts]), whole.day_amount)
    np.testing.assert_array_equal(np.concatenate([p.bill_total for p in parts]), whole.bill_total)
    joined = CycleState.concat([p.state for p in parts])
    for k, v in whole.state.to_dict().items():
        np.testing.assert_array_equal(getattr(joined, k), v)
    # December crosses tier 1 for the Beijing meter; January starts again at tier 1
    jan = whole.bill_start == day_number(dt.date(2027, 1, 1))
    assert whole.line_quantity[(whole.bill_meter == 0) & jan][0, 0, 1:].sum() == 0


def test_block_bills_match_the_interval_engine(tables):
    from billing.engine import block_bills

    rng = np.random.default_rng(5)
    monthly = rng.gamma(2.0, 200.0, size=(2, 14))            # Nov 2026 .. Dec 2027
    mt = tables.indices(["cn-gd-res-elec", "cn-bj-res-elec"])
    got = block_bills(tables, monthly, dt.date(2026, 11, 1), mt, cycle_qty=[0.0, 2500.0])
    for a in range(2):
        d, lts = dt.date(2026, 11, 1), []
        for _ in range(14):
            d = dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)
            lts.append(day_number(d) * 86400 - 1)            # the month's last second: a complete month
        r = price_intervals(tables, [0, 14], np.asarray(lts), monthly[a], mt[a:a + 1],
                            state=CycleState.seeded(tables, 2026, [[0.0, 2500.0][a]]))
        np.testing.assert_allclose(got[a], r.bill_total, rtol=1e-12)
    with pytest.raises(MetersError, match="one period per month"):
        block_bills(tables, monthly, dt.date(2026, 11, 1), tables.indices(["cn-sh-res-elec-tou"] * 2))


def test_pricing_into_the_previous_results_buffers(tables):
    """Day after day into one set of buffers (``out`` = yesterday's result, ``state`` = its state, read
    and updated in place) gives the same bits as fresh arrays; a larger first day leaves room."""
    rng = np.random.default_rng(11)
    q = rng.random((3, 96 * 5)) * 0.4
    mt = tables.indices(["cn-bj-res-elec", "cn-sh-res-elec-tou", "cn-gd-res-elec"])
    first = day_number(dt.date(2026, 12, 30)) * 86400 + 900
    seeded = CycleState.seeded(tables, 2026, [2870.0, 3100.0, 0.0])
    fresh, reused, state, buf = [], [], seeded, None
    for a, b in ((0, 96 * 2), (96 * 2, 96 * 3), (96 * 3, 96 * 5)):
        r = price_grid(tables, q[:, a:b], first + a * 900, 900, mt, state=state, billing_day=[1, 1, 20])
        fresh.append((r.day_amount.copy(), r.bill_total.copy(), r.line_amount.copy()))
        state = r.state
        buf = price_grid(tables, q[:, a:b], first + a * 900, 900, mt, state=seeded if buf is None else buf.state,
                         billing_day=[1, 1, 20], out=buf)
        first_buf = buf if a == 0 else first_buf
        assert np.shares_memory(buf.day_amount, first_buf.day_amount)     # 2 days, then 1, then 2 again
        reused.append((buf.day_amount.copy(), buf.bill_total.copy(), buf.line_amount.copy()))
    for x, y in zip(fresh, reused):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    for k, v in state.to_dict().items():
        np.testing.assert_array_equal(getattr(buf.state, k), v)
    assert seeded.cycle_qty.tolist() == [2870.0, 3100.0, 0.0]      # the caller's first state untouched
