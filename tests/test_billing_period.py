"""Bill periods follow each account's billing day, whatever the tariff's tier cycle (hand-checked).

Guangdong electricity (monthly tiers; November row: 200 / 400 kWh at 0.59886875 / 0.64886875 /
0.89886875 CNY/kWh) and Beijing electricity (annual tiers 2880 / 4800 kWh at 0.4883 / 0.5383 / 0.7883).
1 kWh per quarter hour = 96 kWh a day.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference import tariff as reference
from billing.batch import bill_day, bill_range
from billing.engine import CycleState, local_times, price_intervals
from billing.tariff_arrays import compile_tariffs, day_date
from meters.lake import init_lake
from meters.registry import import_accounts
from meters.tariffs import builtin_catalog
from tests.test_billing_batch import alerts, days, feed, ledger
from tests.test_tariff_properties import tariffs

HEADER = "account_id,meter_id,tariff_id,mode,billing_day,balance,warn_1,warn_2,topup_below,topup_amount,contacts\n"
P1, P2, P3 = 0.59886875, 0.64886875, 0.89886875


def make_lake(tmp_path, rows: str):
    lake = init_lake(tmp_path / "lake")
    (tmp_path / "accounts.csv").write_text(HEADER + rows)
    import_accounts(lake, tmp_path / "accounts.csv")
    return lake


def cents(x: float) -> Decimal:
    return Decimal(round(x * 100)) / 100


def test_billing_day_15_bill_on_the_15th_with_monthly_tiers_per_period(tmp_path):
    lake = make_lake(tmp_path, "A,21,cn-gd-res-elec,postpaid,15,,,,,,self:150\n"
                               "B,22,cn-gd-res-elec,postpaid,1,,,,,,self:151\n"
                               "C,23,cn-gd-res-elec,prepaid,15,5000,,,,,self:152\n")
    first, last = dt.date(2026, 11, 28), dt.date(2026, 12, 15)
    n = (last - first).days + 1
    for m in (21, 22, 23):
        feed(lake, m, first, n, step=1000)
    bill_range(lake, first, last)
    bills = {(r["account_id"], r["period_start"]): r for r in lake.read("bills").to_pylist()}
    # first bills are partial: from the first billed day (28 Nov), not the periods' 15 Nov / 1 Nov
    assert sorted(bills) == [("A", first), ("B", first)]
    assert all(b["partial"] for b in bills.values())
    # A (billing day 15): period 15 Nov .. 14 Dec, data 28 Nov .. 14 Dec = 17 days = 1632 kWh:
    # tiers 200 / 200 / 1232 of the period (not of the calendar month)
    a = bills[("A", first)]
    total = 200 * P1 + 200 * P2 + 1232 * P3
    assert a["period_end"] == dt.date(2026, 12, 14) and a["quantity"] == pytest.approx(1632)
    assert a["amount"] == cents(total) == Decimal("1356.95")
    lines = sorted((r["tier"], round(r["quantity"], 6), r["amount"]) for r in lake.read("bill_lines").to_pylist()
                   if r["account_id"] == "A")
    assert lines == [(1, 200, Decimal("119.77")), (2, 200, Decimal("129.77")), (3, 1232, Decimal("1107.41"))]
    # issued by the nightly run of the 14th (run once the 14th is over, i.e. on the 15th)
    [issued] = [r for r in alerts(lake, "bill_issued") if r["recipient"] == "150"]
    assert issued["day"] == "2026-12-14" and "2026-11-28 to 2026-12-14 (first bill, partial" in issued["message"]
    [entry] = [r for r in ledger(lake, "A") if r["ref"] == "bill:2026-11-28"]
    assert entry["amount"] == Decimal("-1356.95")
    assert lake.local_day(entry["ts"] + dt.timedelta(milliseconds=1)) == dt.date(2026, 12, 15)  # 14th's last ms
    # the 15th opens a new period: its tiers start again at tier 1
    dec15 = [r for r in lake.read("charge_lines", "2026-12-15").to_pylist() if r["account_id"] == "A"]
    assert [(r["tier"], round(r["quantity"], 6)) for r in dec15] == [(1, 96)]
    # B (billing day 1): the calendar month, unchanged: 28-30 Nov = 288 kWh → 200 / 88
    b = bills[("B", first)]
    assert b["period_end"] == dt.date(2026, 11, 30) and b["amount"] == cents(200 * P1 + 88 * P2)
    # C (prepaid, billing day 15): the daily charges of the period sum exactly to the same bill
    ch = [r for r in lake.read("charges").to_pylist() if r["account_id"] == "C"]
    period = [r["amount"] for r in ch if r["day"] <= "2026-12-14"]
    assert len(period) == 17 and sum(period) == a["amount"]
    assert next(r["amount"] for r in ch if r["day"] == "2026-12-15") == cents(96 * P1)


def test_rerun_of_a_billing_day_is_identical(tmp_path):
    lake = make_lake(tmp_path, "A,21,cn-gd-res-elec,postpaid,15,,,,,,self:150\n")
    first = dt.date(2026, 12, 12)
    feed(lake, 21, first, 4, step=1000)
    bill_range(lake, first, first + dt.timedelta(days=3))
    snap = lambda: (lake.read("bills").drop_columns(["run_id"]).to_pylist(),  # noqa: E731 (run ids differ)
                    lake.read("bill_lines").to_pylist(),
                    [(r["account_id"], r["kind"], r["amount"], r["ref"]) for r in ledger(lake)],
                    lake.read("billing_state").drop_columns(["day"]).to_pylist())
    before = snap()
    assert before[0][0]["amount"] == cents(200 * P1 + 88 * P2)      # 12-14 Dec: 288 kWh
    bill_day(lake, dt.date(2026, 12, 14))                           # re-runs the 14th and the 15th
    assert snap() == before
    bill_day(lake, first)                                           # the first billed day: all four
    assert snap() == before


def test_annual_tiers_reset_on_new_year_inside_the_bill_period(tmp_path):
    lake = make_lake(tmp_path, "A,11,cn-bj-res-elec,postpaid,15,,,,,,self:150\n"
                               "C,12,cn-bj-res-elec,prepaid,15,5000,,,,,self:152\n")
    first = dt.date(2026, 12, 26)
    for m in (11, 12):
        feed(lake, m, first, 22, step=6000)                         # 576 kWh a day, 26 Dec .. 16 Jan
    bill_range(lake, first, first + dt.timedelta(days=21))
    ch = {r["day"]: r["amount"] for r in lake.read("charges").to_pylist() if r["account_id"] == "C"}
    # 26-30 Dec: 2880 kWh fill tier 1; 31 Dec tier 2; 1 Jan (same bill period) tier 1 again
    # (daily charges telescope: cents of the period cost to date minus cents already charged)
    cum = np.cumsum([576 * 0.4883] * 5 + [576 * 0.5383, 576 * 0.4883])
    want = np.diff(np.concatenate([[0], np.round(cum * 100)])) / 100
    assert [ch[d.isoformat()] for d in days(7, first)] == [Decimal(str(x)) for x in want]
    assert want[-1] < 281.30 and want[-2] > 310.0             # 1 Jan is tier 1 again
    [bill] = [r for r in lake.read("bills").to_pylist() if r["account_id"] == "A"]
    # the first bill: partial, from the first billed day (the period began on 15 Dec)
    assert (bill["period_start"], bill["period_end"], bill["partial"]) == (first, dt.date(2027, 1, 14), True)
    # 20 days: 2880 + 576 kWh in 2026, then 14 × 576 = 8064 kWh in 2027 (2880 / 1920 / 3264)
    total = (2880 + 2880) * 0.4883 + (576 + 1920) * 0.5383 + 3264 * 0.7883
    assert bill["amount"] == cents(total)
    lines = sorted((r["tier"], round(r["quantity"], 6)) for r in lake.read("bill_lines").to_pylist())
    assert lines == [(1, 5760), (2, 2496), (3, 3264)]
    assert sum(v for d, v in ch.items() if d <= "2027-01-14") == bill["amount"]
    # the next period (15 Jan) continues the 2027 counter: 8064 kWh already, so tier 3
    jan15 = [r for r in lake.read("charge_lines", "2027-01-15").to_pylist() if r["account_id"] == "C"]
    assert [r["tier"] for r in jan15] == [3]


def _hours(first: dt.date, n_days: int, kwh_per_hour: float):
    ts = [int(dt.datetime(first.year, first.month, first.day, tzinfo=dt.timezone.utc).timestamp()) + 3600 * (k + 1)
          for k in range(24 * n_days)]
    return np.asarray(ts, np.int64), np.full(len(ts), kwh_per_hour)


@pytest.mark.parametrize("tid", ["cn-sh-res-elec-tou", "cn-bj-res-elec"])
@pytest.mark.parametrize("split", [None, 3, 9])
def test_engine_new_year_reset_equals_reference(tid, split):
    """Pro-rata (Shanghai, annual, day/night) and chronological tiers across New Year inside a
    billing-day-20 period, with a counter seeded near the bound; runs split at a day carry the reset."""
    versions = [t for t in builtin_catalog() if t.tariff_id == tid]
    tb = compile_tariffs(versions)
    ts, q = _hours(dt.date(2026, 12, 25), 14, 2.0)
    lts = local_times(ts, "UTC")
    seeded = CycleState.seeded(tb, 2026, [2800.0])
    if split is None:
        r = price_intervals(tb, [0, q.size], lts, q, [0], state=seeded, billing_day=[20])
        bill_total = r.bill_total
        lines = r.line_quantity[0]
    else:
        k = 24 * split
        r1 = price_intervals(tb, [0, k], lts[:k], q[:k], [0], state=seeded, billing_day=[20])
        r = price_intervals(tb, [0, q.size - k], lts[k:], q[k:], [0], state=r1.state, billing_day=[20])
        bill_total = r.bill_total
        lines = r.line_quantity[0]
    ref_state = {**reference.new_state(), "cycle_key": 2026, "cycle_qty": 2800.0}
    ref = reference.price_meter(versions, lts.tolist(), q.tolist(), billing_day=20, state=ref_state)
    [b] = ref["bills"]
    assert (b["start"], b["end"]) == (dt.date(2026, 12, 20), dt.date(2027, 1, 19))
    assert day_date(r.bill_start[0]) == b["start"]
    assert bill_total[0] == pytest.approx(b["total"], rel=1e-12)
    for (p, t), (lq, _) in b["lines"].items():
        assert lines[p, t] == pytest.approx(lq, rel=1e-12)
    # 7 days of 2026 (336 kWh) on top of 2800; 7 days of 2027 (336 kWh) from 0: one tier-2 span only
    over = 2800 + 336 - tb.bounds[r.bill_version[0], 11, 0]
    assert 0 < over < 336 and lines.sum(axis=0)[:2] == pytest.approx([672 - over, over], rel=1e-12)


def test_engine_prices_the_repeated_hour_when_clocks_go_back():
    """America/New_York, 1 Nov 2026: 01:00-02:00 happens twice (100 quarter hours). Hour 1 and hour 2
    belong to different bands here: the repeated hour is priced in its own band (8 quarter hours),
    chronologically across the tier bound, equal to the reference; going back otherwise is refused."""
    from meters.errors import MetersError
    from meters.tariffs import Tariff

    sched = [[0] * 24 for _ in range(12)]
    for row in sched:
        row[1] = 1
    t = Tariff.from_dict(dict(tariff_id="x", utility="electricity", unit="kWh", currency="USD",
                              description="test", effective_from="2020-01-01",
                              periods=[{"name": "a", "band": "other"}, {"name": "b", "band": "one-am"}],
                              weekday_schedule=sched, weekend_schedule=sched,
                              tier_bounds=[[20.0]] * 12, prices=[[0.1, 0.2], [1.0, 2.0]]))
    tb = compile_tariffs([t])
    start = int(dt.datetime(2026, 11, 1, 4, tzinfo=dt.timezone.utc).timestamp())     # local midnight (EDT)
    ts = start + 900 * np.arange(1, 101, dtype=np.int64)
    lts = local_times(ts, "America/New_York")
    assert (np.diff(lts) <= 0).sum() == 1
    q = np.full(100, 0.25)
    r = price_intervals(tb, [0, 100], lts, q, [0])
    assert r.day.size == 1 and r.day_quantity[0] == pytest.approx(25.0)
    lq = r.line_quantity[0]
    assert lq[1].sum() == pytest.approx(2.0) and lq[0].sum() == pytest.approx(23.0)   # 8 quarter hours at 1 am
    ref = reference.price_meter([t], lts.tolist(), q.tolist())
    [b] = ref["bills"]
    assert r.bill_total[0] == pytest.approx(b["total"], rel=1e-12)
    for (p, k), (x, _) in b["lines"].items():
        assert lq[p, k] == pytest.approx(x, rel=1e-12)
    # split inside the repeated hour: the carried state continues it
    cut = int(np.flatnonzero(np.diff(lts) <= 0)[0]) + 3
    r1 = price_intervals(tb, [0, cut], lts[:cut], q[:cut], [0])
    with pytest.raises(MetersError, match="increasing"):   # a new run may not go back
        price_intervals(tb, [0, 100 - cut], lts[cut:], q[cut:], [0], state=r1.state)
    bad = lts.copy()
    bad[50] = bad[49] - 3600                                   # an hour back: not a clock change
    with pytest.raises(MetersError, match="increasing"):
        price_intervals(tb, [0, 100], bad, q, [0])


@st.composite
def new_year_loads(draw):
    """One meter: (billing_day 2..28, local_ts, quantity) from some day of December 2026 for 10–60
    days, so that its bill period straddles New Year."""
    start = dt.date(2026, 12, 1) + dt.timedelta(days=draw(st.integers(0, 30)))
    step = draw(st.sampled_from([3600, 4 * 3600, 86400]))
    n = draw(st.integers(1, 60 * 86400 // step))
    n = max(n, 10 * 86400 // step)
    t0 = (start - dt.date(1970, 1, 1)).days * 86400
    steps = np.asarray(draw(st.lists(st.sampled_from([1, 1, 1, 3]), min_size=n, max_size=n)), np.int64)
    lts = t0 + np.cumsum(steps) * step - 1
    q = np.asarray(draw(st.lists(st.sampled_from([0.0, 0.5, 2.0, 7.0, 30.0]), min_size=n, max_size=n)), float)
    return draw(st.integers(2, 28)), lts, q * (step / 3600) ** 0.5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tariffs(), new_year_loads(), st.integers(0, 10**9))
def test_annual_cycle_across_new_year_numba_equals_reference_and_splits(versions, load, cut_seed):
    """Random annual tariffs (chronological or pro rata) with a counter carried from the year before:
    the engine equals the reference, and cutting the run anywhere and carrying the state changes
    nothing."""
    versions = [dataclasses.replace(v, tier_cycle="year") for v in versions]
    if versions[0].effective_from > dt.date(2026, 1, 1):
        return
    bd, lts, q = load
    tb = compile_tariffs(versions)
    seeded = CycleState.seeded(tb, 2026, [37.0])
    whole = price_intervals(tb, [0, q.size], lts, q, [0], state=seeded, billing_day=[bd])
    ref = reference.price_meter(versions, lts.tolist(), q.tolist(), billing_day=bd,
                                state={**reference.new_state(), "cycle_key": 2026, "cycle_qty": 37.0})
    assert [day_date(x) for x in whole.bill_start] == [b["start"] for b in ref["bills"]]
    for i, b in enumerate(ref["bills"]):
        assert whole.bill_total[i] == pytest.approx(b["total"], rel=1e-9, abs=1e-9)
        want = np.zeros_like(whole.line_quantity[i])
        for (p, t), (lq, _) in b["lines"].items():
            want[p, t] = lq
        np.testing.assert_allclose(whole.line_quantity[i], want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(whole.day_amount, [d[2] for d in ref["days"]], rtol=1e-9, atol=1e-9)
    k = cut_seed % (q.size + 1)
    r1 = price_intervals(tb, [0, k], lts[:k], q[:k], [0], state=seeded, billing_day=[bd])
    r2 = price_intervals(tb, [0, q.size - k], lts[k:], q[k:], [0], state=r1.state, billing_day=[bd])
    last = {int(s): tot for s, tot in zip(r1.bill_start, r1.bill_total)}
    last.update({int(s): tot for s, tot in zip(r2.bill_start, r2.bill_total)})
    assert sorted(last) == [int(x) for x in whole.bill_start]
    for s, tot in zip(whole.bill_start, whole.bill_total):
        assert last[int(s)] == pytest.approx(tot, rel=1e-9, abs=1e-9)
