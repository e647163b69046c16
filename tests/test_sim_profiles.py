"""Load profiles and the register generator: numba == reference, determinism, realistic shapes."""
from __future__ import annotations

import gzip
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from reference.profiles import generate_block_py
from simulator import profiles as P
from simulator.engine import Plan, Shard
from simulator.faults import Faults
from simulator.fleet import make_fleet
from simulator.run import parse_start

TZ = ZoneInfo("Asia/Shanghai")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), salt=st.integers(0, 50),
       meters=st.lists(st.integers(1, 2**63 - 1), min_size=1, max_size=5),
       keys=st.lists(st.integers(0, 2**40), min_size=1, max_size=5))
def test_uniform_grid_matches_reference(seed, salt, meters, keys):
    m, k = np.array(meters, np.int64), np.array(keys, np.int64)
    got = P.uniform_grid(np.int64(seed), salt, m, k)
    assert np.array_equal(got, P.uniform_grid_py(seed, salt, m, k))
    assert ((got > 0) & (got < 1)).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**62), n=st.integers(1, 6), nk=st.integers(1, 10), opening=st.booleans(),
       interval=st.sampled_from([300, 900, 3600, 86400]), start_day=st.integers(20000, 21000),
       rep=st.integers(-1, 9), near_max=st.booleans(), data=st.data())
def test_generate_block_matches_reference(seed, n, nk, opening, interval, start_day, rep, near_max, data):
    rng = np.random.default_rng(seed % 2**32)
    meter_id = rng.integers(1, 2**62, n)
    profile = rng.integers(0, len(P.PROFILES), n).astype(np.int32)
    daily = rng.uniform(100, 20000, n)
    reg_max = np.full(n, 10**8, np.int64)
    acc0 = np.where(near_max, reg_max - rng.integers(1, 5000, n), rng.integers(0, 10**7, n))
    ts = start_day * 86400 + interval * (1 + np.arange(nk, dtype=np.int64))
    dayno = P.local_day_number(ts - interval, TZ)
    day_idx = dayno - dayno.min()
    if opening:
        day_idx[0] = -1
    F = P.factor_table(ts, interval, TZ)
    w = P.noise_weights(interval)
    rep_ts = np.where(rng.random(n) < 0.5, ts[rep] if 0 <= rep < nk else 0, 0).astype(np.int64)
    rep_start = rng.integers(0, 5000, n)
    outs = []
    for fn in (P.generate_block, generate_block_py):
        acc = acc0.copy()
        out = np.zeros((n, nk), np.int64)
        dq = np.zeros((n, int(day_idx.max()) + 1), np.int64)
        ds, df = np.full(n, -1, np.int64), np.ones(n)
        fn(np.int64(seed), meter_id, profile, daily, w, F, ts, dayno, day_idx, opening, acc, reg_max,
           rep_ts, rep_start, out, dq, ds, df)
        outs.append((acc, out, dq, ds, df))
    for a, b in zip(*outs):
        assert np.array_equal(a, b)
    acc, out, dq = outs[0][:3]
    assert (out >= 0).all() and (out < reg_max[:, None]).all()


def _readings(plan: Plan, hi=None):
    """Every published (meter, ts, register) of a plan, as a sorted structured array."""
    shard = Shard(plan, 0, hi)
    parts = []
    for b in range(plan.n_blocks):
        parts += [(u.meter_id, u.ts, u.register_milli) for u in shard.uploads(b)]
    parts += [(u.meter_id, u.ts, u.register_milli) for u in shard.leftovers()]
    arr = np.rec.fromarrays([np.concatenate([p[i] for p in parts]) for i in range(3)], names="m,t,r")
    arr.sort(order=["m", "t", "r"])
    return arr, shard


@pytest.mark.parametrize("faults", [Faults(), Faults(lost=0.05, duplicate=0.05, late=0.05, spike=0.01,
                                                      rollover=0.1, replacement=0.1, skew=0.1)])
def test_same_seed_same_readings_whatever_the_batching(faults):
    fleet = make_fleet(700, seed=5)
    start = parse_start("2026-03-01", TZ)
    runs = [_readings(Plan(fleet, start, 2, 900, 5, faults=faults, batch_intervals=b))[0] for b in (1, 4, 13)]
    assert len(runs[0]) > 0
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])
    # a shard of the first concentrators regenerates the same readings as the whole fleet
    part, shard = _readings(Plan(fleet, start, 2, 900, 5, faults=faults, batch_intervals=4), hi=1)
    assert np.array_equal(part, runs[0][np.isin(runs[0]["m"], shard.meter_id)])
    other, _ = _readings(Plan(fleet, start, 2, 900, 6, faults=faults, batch_intervals=4))
    assert not np.array_equal(other, runs[0])


def _hourly(fleet, start, days, utility):
    plan = Plan(fleet, parse_start(start, TZ), days, 3600, 1, batch_intervals=24)
    shard = Shard(plan)
    regs = [shard.registers(b)[1] for b in range(plan.n_blocks)]
    R = np.concatenate(regs, axis=1)
    q = np.diff(R, axis=1) % fleet.register_max_milli[:, None]
    return q[fleet.utility == utility] / 1000.0, shard


def test_daily_shapes_peak_where_expected():
    fleet = make_fleet(3000, seed=2)
    for u, peaks, trough in ((0, range(18, 23), range(1, 6)), (1, [6, 7, 8, 19, 20, 21], range(1, 5)),
                             (2, [6, 7, 11, 12, 17, 18, 19], range(0, 5))):
        q, _ = _hourly(fleet, "2026-04-06", 14, u)     # a fortnight in spring
        # interval ending at local hour h+1 covers hour h; start is local midnight
        by_hour = q.reshape(q.shape[0], -1, 24).mean(axis=(0, 1))
        top = set(np.argsort(by_hour)[-3:].tolist())
        assert top <= set(peaks), (u, by_hour.round(3))
        assert by_hour[list(trough)].mean() < 0.65 * by_hour.mean(), (u, by_hour.round(3))


@pytest.mark.parametrize("month,ranges", [
    ("2026-01-01", {0: (150, 450), 1: (5, 20), 2: (20, 150)}),     # winter: gas heating
    ("2026-07-01", {0: (200, 600), 1: (6, 25), 2: (6, 40)}),       # summer: air conditioning
])
def test_monthly_totals_in_realistic_ranges(month, ranges):
    fleet = make_fleet(2000, seed=3)
    for u, (lo, hi) in ranges.items():
        q, _ = _hourly(fleet, month, 31, u)
        monthly = q.sum(axis=1)
        assert lo <= np.mean(monthly) <= hi, (u, np.mean(monthly))
        # households differ: 10th to 90th percentile spans at least a factor 2
        p10, p90 = np.percentile(monthly, [10, 90])
        assert p90 > 2 * p10


def test_registers_are_cumulative_and_wrap_at_register_max():
    fleet = make_fleet(500, seed=4)
    plan = Plan(fleet, parse_start("2026-08-01", TZ), 3, 900, 4, faults=Faults(rollover=0.3), batch_intervals=8)
    shard = Shard(plan)
    R = np.concatenate([shard.registers(b)[1] for b in range(plan.n_blocks)], axis=1)
    assert (R >= 0).all() and (R < shard.reg_max[:, None]).all()
    wrapped = (np.diff(R, axis=1) < 0).any(axis=1)
    assert wrapped[shard.rollover].mean() > 0.9          # started near the maximum: they wrap
    assert not wrapped[~shard.rollover].any()             # nobody else goes backwards
    total = (R[:, -1] - R[:, 0]) % shard.reg_max
    assert np.array_equal(total, shard.day_q.sum(axis=1))  # manifest truth equals register advance


def test_plausible_against_real_london_load(test_data):
    """Normalised daily curve and the spread of daily totals look like the real LCL households."""
    path = test_data / "real-load" / "lcl_2013_100households_halfhourly.csv.gz"
    import pandas as pd

    with gzip.open(path, "rt") as f:
        d = pd.read_csv(f, names=["id", "ts", "e"], header=0, dtype={"e": str})
    d["e"] = pd.to_numeric(d["e"].str.strip(), errors="coerce")
    d["ts"] = pd.to_datetime(d["ts"])
    d = d[(d.ts.dt.month >= 3) & (d.ts.dt.month <= 5)]
    real_curve = d.groupby(d.ts.dt.hour).e.mean().to_numpy().copy()
    real_curve /= real_curve.mean()
    day = d.groupby(["id", d.ts.dt.date]).e.agg(["sum", "count"])
    real_day = day[day["count"] == 48]["sum"].to_numpy()
    real_q = np.quantile(real_day / real_day.mean(), [0.1, 0.25, 0.5, 0.75, 0.9])

    fleet = make_fleet(3000, seed=9)
    q, _ = _hourly(fleet, "2026-04-01", 28, 0)
    sim_curve = q.reshape(q.shape[0], -1, 24).mean(axis=(0, 1))
    sim_curve /= sim_curve.mean()
    assert np.corrcoef(sim_curve, real_curve)[0, 1] > 0.75
    assert np.argmax(sim_curve) in range(17, 22) and np.argmax(real_curve) in range(17, 22)
    sim_day = q.reshape(q.shape[0], -1, 24).sum(axis=2).ravel()
    sim_q = np.quantile(sim_day / sim_day.mean(), [0.1, 0.25, 0.5, 0.75, 0.9])
    assert np.all(np.abs(sim_q - real_q) < 0.3), (sim_q.round(2), real_q.round(2))


def test_daily_frozen_reads_and_manifest_days():
    fleet = make_fleet(400, seed=13)
    plan = Plan(fleet, parse_start("2026-02-01", TZ), 10, 86400, 13, batch_intervals=1)
    assert plan.n_reads == 11 and plan.n_days == 10 and plan.n_blocks == 11
    shard = Shard(plan)
    R = np.concatenate([shard.registers(b)[1] for b in range(plan.n_blocks)], axis=1)
    daily = np.diff(R, axis=1) % shard.reg_max[:, None]
    assert np.array_equal(daily, shard.day_q)            # one read per local midnight: day = difference
    elec = daily[fleet.utility == 0] / 1000.0
    assert 3 < elec.mean() < 12 and elec.std() > 0
    # a start that is not local midnight: intervals belong to the local day they start in
    plan2 = Plan(fleet, parse_start("2026-02-01T12:00", TZ), 1, 3600, 13)
    assert plan2.n_days == 2 and plan2.day_label(0).isoformat() == "2026-02-01"
