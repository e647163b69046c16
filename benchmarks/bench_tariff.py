"""Tariff engine throughput against the best formulations without numba, each checked equal to the engine.

(a) monthly block bills: 10M account-months (Beijing annual tiers carried across months + Guangdong
    monthly seasonal tiers), numba ``block_bills`` against vectorised numpy (the counter by one cumsum,
    one clipped difference per tier bound), DuckDB (one row per account, every month's bill in one
    SELECT; timed with the result kept in DuckDB and returned to numpy) and pandas (the same on the
    wide frame).
(b) 15-minute intervals, tiers + time of use (monthly 260/600 kWh tiers, day 06–22 / night prices per
    tier, chronological split), 100k meters × 30 days with the numba engine (dense grid and CSR).
    numpy, DuckDB and pandas exploit the tier structure: one pass for each day's quantity per period,
    the counter by a cumsum over days, interval detail only on the day that crosses a bound. DuckDB
    (one row per meter-day holding the day's 96 quantities; the result one row per meter with its
    day amounts) and pandas price a subset of the meters, and numba prices that same subset too.
    Beside the engine's rate over all meters: its page faults and system time with fresh output arrays,
    the engine priced into the previous call's buffers (``out=``: nothing to fault in), and the
    ordered-sum floor (every interval read and each run of same-period hours summed in index order,
    nothing else), so the share of the engine's CPU that goes to its per-day bookkeeping is printed too;
    and the billing night's shape (every meter's first day alone: one day of 96 intervals per meter),
    its CPU per meter beside the floor's, which shows the engine's per-meter overhead.

Every formulation's money is checked equal to the engine's to the cent before its time is printed.
Ratios are against the best of them. The memory bound is bytes touched / memory bandwidth, the
bandwidth measured in this process (numpy sum and copy over every core, best of several samples).
Throughput per CPU-second is printed beside wall-clock rates (a shared machine takes cores away).
``--quick`` runs a small size.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import time

import numpy as np

from numba import njit, prange

from billing.engine import _run_sum, block_bills, price_grid, price_intervals
from billing.tariff_arrays import compile_tariffs, day_number
from meters.tariffs import Tariff, builtin_catalog

DAY, NIGHT = (0.61, 0.66, 0.91), (0.31, 0.36, 0.61)


def tou_tiers_tariff() -> Tariff:
    sched = [[0 if 6 <= h < 22 else 1 for h in range(24)] for _ in range(12)]
    return Tariff.from_dict(dict(
        tariff_id="bench-tou-tiers", utility="electricity", unit="kWh", currency="CNY",
        description="benchmark: monthly tiers 260/600 kWh with day/night prices per tier",
        effective_from="2012-07-01", periods=[{"name": "day", "band": "day"}, {"name": "night", "band": "night"}],
        weekday_schedule=sched, weekend_schedule=sched, tier_bounds=[[260.0, 600.0]] * 12,
        prices=[list(DAY), list(NIGHT)], tier_cycle="month", tier_method="chronological"))


CPU = {}
SYS = {}


def best(fn, repeat=3, key=None):
    """Best wall time of ``repeat`` runs (after one warm-up when repeat > 1) and the last result.
    With ``key``, also records the process CPU time of that best run in ``CPU[key]`` (the machine is
    shared: CPU seconds show what the kernel needs when other jobs take cores away) and its system
    CPU time and minor page faults in ``SYS[key]`` (fresh output pages are faulted in and zeroed by
    the kernel)."""
    times, out = [], None
    for k in range(repeat + (1 if repeat > 1 else 0)):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        t1, c1 = time.perf_counter(), time.process_time()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if repeat == 1 or k > 0:
            times.append((t1 - t0, c1 - c0, r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt))
    wall, cpu, sys_s, faults = min(times)
    if key:
        CPU[key] = cpu
        SYS[key] = (sys_s, faults)
    return wall, out


def bandwidth(mb: int = 256, tries: int = 5) -> dict:
    """Memory bandwidth of this machine, measured in this process: a numpy sum (read) and copy (read +
    write) of ``mb`` MB, split over every core in threads (numpy releases the GIL), best of ``tries``
    (the least disturbed moment of a shared machine). Returns GB/s and the load average then."""
    from concurrent.futures import ThreadPoolExecutor

    k = os.cpu_count() or 1
    src = np.ones(mb * 2**20 // 8)
    dst = np.empty_like(src)
    parts = np.array_split(np.arange(src.size), k)
    sl = [slice(int(p[0]), int(p[-1]) + 1) for p in parts]
    with ThreadPoolExecutor(k) as ex:
        def run(fn):
            list(ex.map(fn, sl))
        t_sum = min(_timed(lambda: run(lambda s: src[s].sum())) for _ in range(tries))
        t_copy = min(_timed(lambda: run(lambda s: np.copyto(dst[s], src[s]))) for _ in range(tries))
    return {"read": src.nbytes / t_sum / 1e9, "copy": 2 * src.nbytes / t_copy / 1e9, "load": os.getloadavg()[0]}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def same_to_the_cent(name: str, got, want) -> None:
    """Refuse to print a formulation's time unless its money equals the engine's to the cent
    (amounts within 1e-6 of a half cent may round either way and are compared unrounded)."""
    got, want = np.asarray(got, float).ravel(), np.asarray(want, float).ravel()
    assert got.shape == want.shape, f"{name}: {got.shape} amounts, the engine {want.shape}"
    tie = np.abs(np.abs(want * 100 - np.trunc(want * 100)) - 0.5) < 1e-6
    bad = (np.round(got, 2) != np.round(want, 2)) & ~tie | (np.abs(got - want) >= 0.005)
    assert not bad.any(), f"{name} disagrees with the engine at {np.flatnonzero(bad)[:5]}: " \
                          f"{got[bad][:5]} vs {want[bad][:5]}"


# -- (a) monthly block bills -------------------------------------------------------------------------
def block_params(tables) -> list[tuple]:
    """Per tariff family: (f, annual, bounds[12, T-1], price steps[12, T-1], top price[12], fixed,
    minimum) of its first version (what ``block_bills`` prices), the cost of a counter moving from c to
    e being ``top (e - c) + sum_t step_t (min(e, b_t) - min(c, b_t))``."""
    out = []
    for f in range(len(tables.ids)):
        v = int(tables.fam_start[f])
        pr = tables.prices[v][tables.sched[v, 0, :, 0]]               # [12, T] the month's period
        T = pr.shape[1]
        out.append((f, bool(tables.fam_cycle[f] == 1), tables.bounds[v, :, : T - 1], pr[:, :-1] - pr[:, 1:],
                    pr[:, -1], float(tables.fixed[v]), float(tables.minimum[v])))
    return out


def block_numpy(qty, fam, params, rows: int = 4096):
    """Vectorised numpy: per family, in blocks of ``rows`` accounts (the temporaries stay in cache:
    about twice as fast as whole-array passes), the running counter by one cumsum along the months,
    then one clipped difference per tier bound (``min(e, b) - min(c, b)``; ``c`` = 0 for monthly tiers,
    where ``min(0, b)`` = 0) over the [accounts, months] block."""
    out = np.empty_like(qty)
    for f, annual, b, step, top, fx, mn in params:
        assert (b >= 0).all()
        idx = np.flatnonzero(fam == f)
        for k in range(0, idx.size, rows):
            ii = idx[k:k + rows]
            q = qty[ii]
            amt = q * top
            amt += fx
            tmp = np.empty_like(q)
            if annual:
                e = np.cumsum(q, axis=1)
                c = np.empty_like(e)
                c[:, 0] = 0.0
                c[:, 1:] = e[:, :-1]
                tmp2 = np.empty_like(q)
            for t in range(b.shape[1]):
                if annual:
                    np.minimum(e, b[:, t], out=tmp)
                    tmp -= np.minimum(c, b[:, t], out=tmp2)
                else:
                    np.minimum(q, b[:, t], out=tmp)
                tmp *= step[:, t]
                amt += tmp
            np.maximum(amt, mn, out=amt)
            out[ii] = amt
    return out


def block_sql(params, K: int = 12) -> str:
    """One row per account (columns q1..q12), every month's bill computed in one SELECT: the running
    counter as a sum of the earlier months (annual tariffs), one LEAST difference per tier bound;
    the family's bounds and prices come from a joined 2-row table ``fam``."""
    T1 = params[0][2].shape[1]
    e = ["q1"]
    for j in range(2, K + 1):
        e.append(f"{e[-1]} + q{j}")
    cols = []
    for j in range(1, K + 1):
        c = "0.0" if j == 1 else f"(CASE WHEN annual THEN {e[j - 2]} ELSE 0.0 END)"
        ej = f"({c} + q{j})"
        terms = " + ".join(f"(LEAST({ej}, b{t}_{j}) - LEAST({c}, b{t}_{j})) * d{t}_{j}" for t in range(T1))
        cols.append(f"GREATEST(fx + q{j} * top_{j} + {terms}, mn) AS m{j}")
    return f"SELECT a, {', '.join(cols)} FROM acc JOIN fam USING (f)"


def block_tables(params, qty, fam):
    """The account table (one row per account: a, f, q1..q12) and the family table for DuckDB/pandas."""
    import pandas as pd

    acc = pd.DataFrame({"a": np.arange(qty.shape[0], dtype=np.int32), "f": fam,
                        **{f"q{j + 1}": qty[:, j] for j in range(qty.shape[1])}})
    rows = []
    for f, annual, b, step, top, fx, mn in params:
        r = {"f": f, "annual": annual, "fx": fx, "mn": mn}
        for j in range(12):
            r[f"top_{j + 1}"] = top[j]
            for t in range(b.shape[1]):
                r[f"b{t}_{j + 1}"] = b[j, t]
                r[f"d{t}_{j + 1}"] = step[j, t]
        rows.append(r)
    return acc, pd.DataFrame(rows)


def block_pandas(acc, params):
    """pandas on the wide frame: per family ``cumsum(axis=1)`` for the counter, ``clip`` per tier bound."""
    import pandas as pd

    qcols = [c for c in acc.columns if c.startswith("q")]
    parts = []
    for f, annual, b, step, top, fx, mn in params:
        q = acc.loc[acc["f"] == f, qcols]
        if q.empty:
            continue
        e = q.cumsum(axis=1) if annual else q
        c = e.shift(1, axis=1, fill_value=0.0) if annual else q * 0.0
        amt = q * top + fx
        for t in range(b.shape[1]):
            amt += (e.clip(upper=b[:, t], axis=1) - c.clip(upper=b[:, t], axis=1)) * step[:, t]
        parts.append(amt.clip(lower=mn))
    return pd.concat(parts).sort_index().to_numpy()


def bench_block(n_account_months: int, rng) -> dict:
    import duckdb

    tables = compile_tariffs([t for t in builtin_catalog() if t.tariff_id in ("cn-bj-res-elec", "cn-gd-res-elec")])
    A = n_account_months // 12
    qty = rng.gamma(2.0, 150.0, size=(A, 12))
    fam = (np.arange(A) % 2).astype(np.int32)            # alternate Beijing (annual) / Guangdong (monthly)
    first = dt.date(2026, 1, 1)                          # January: the annual counter starts at 0
    buf = np.empty_like(qty)
    t_nb, out = best(lambda: block_bills(tables, qty, first, fam, out=buf), 5, key="block")
    params = block_params(tables)
    acc, fam_df = block_tables(params, qty, fam)
    con = duckdb.connect()
    con.execute("CREATE TABLE acc AS SELECT * FROM acc")     # DuckDB's own storage, loaded before timing
    con.execute("CREATE TABLE fam AS SELECT * FROM fam_df")
    sql = block_sql(params)
    res = {}
    t_np, got = best(lambda: block_numpy(qty, fam, params), 3, key="numpy")
    same_to_the_cent("numpy", got, out)
    res["numpy"] = t_np

    def sql_numpy():
        d = con.execute(sql + " ORDER BY a").fetchnumpy()
        return np.column_stack([d[f"m{j + 1}"] for j in range(12)])
    t, got = best(sql_numpy, 2, key="DuckDB → numpy")
    same_to_the_cent("DuckDB (to numpy)", got, out)
    res["DuckDB → numpy"] = t
    t, _ = best(lambda: con.execute(f"CREATE OR REPLACE TEMP TABLE bills AS {sql}"), 2, key="DuckDB, result in DuckDB")
    same_to_the_cent("DuckDB (in DuckDB)", sql_bills(con), out)
    res["DuckDB, result in DuckDB"] = t
    t, got = best(lambda: block_pandas(acc, params), 2, key="pandas")
    same_to_the_cent("pandas", got, out)
    res["pandas"] = t
    n = A * 12
    return {"n": n, "numba": n / t_nb, "numba_cpu": n / CPU["block"], "others": {k: n / v for k, v in res.items()},
            "others_cpu": {k: n / CPU[k] for k in res}, "bytes": 16 + 4 / 12}


def sql_bills(con) -> np.ndarray:
    d = con.execute("SELECT * FROM bills ORDER BY a").fetchnumpy()
    return np.column_stack([d[f"m{j + 1}"] for j in range(12)])


# -- (b) 15-minute intervals, tiers + TOU -----------------------------------------------------------
def interval_params(tables, per_day: int):
    """The benchmark tariff as arrays: ``onehot[per_day, P]`` (the period of each slot of the day:
    June, weekdays = weekends here), the finite tier bounds and ``prices[P, T]``."""
    v = 0
    sched = tables.sched[v, 0, 5]                      # June
    assert np.array_equal(sched, tables.sched[v, 1, 5])
    P, T = tables.prices.shape[1:]
    slot_hour = (np.arange(per_day) * (86400 // per_day) + (86400 // per_day - 1)) // 3600
    onehot = np.zeros((per_day, P))
    onehot[np.arange(per_day), sched[slot_hour]] = 1.0
    return onehot, tables.bounds[v, 5, : T - 1], tables.prices[v]


def intervals_numpy(qty, n_days, onehot, bounds, prices):
    """Vectorised numpy exploiting the tier structure (chronological tiers of one bill period): one pass
    over the data for each day's quantity per tariff period (``[days, 96] @ onehot``), the counter at
    each day's end by a cumsum over days, and for each tier bound only the day that crosses it is
    looked at interval by interval (its cumsum, clipped at the bound). Tier 1 prices everything; each
    bound adds the price step on the quantity above it."""
    M = qty.shape[0]
    S = qty.reshape(M * n_days, -1) @ onehot          # [M*D, P]
    S = S.reshape(M, n_days, -1)
    dayq = S.sum(axis=2)
    C = np.cumsum(dayq, axis=1)                       # counter at the end of each day
    Cp = C - dayq
    amount = S @ prices[:, 0]
    q3 = qty.reshape(M, n_days, -1)
    for t, b in enumerate(bounds):
        step = prices[:, t + 1] - prices[:, t]
        amount += np.where(Cp >= b, S @ step, 0.0)
        mi, di = np.nonzero((Cp < b) & (C > b))         # the day that crosses b (one per meter at most)
        x = q3[mi, di]
        cum = Cp[mi, di, None] + np.cumsum(x, axis=1)
        ex = np.maximum(cum - np.maximum(cum - x, b), 0.0)
        amount[mi, di] += (ex @ onehot) @ step
    return amount


INTERVAL_SQL = """
WITH s AS (          -- one row per meter-day: the day's quantity per period, one pass over the lists
  SELECT m, d, q, {period_sums}, list_sum(q) AS dq FROM iv),
c AS (               -- the counter at the day's end: a window over 30 rows per meter
  SELECT *, SUM(dq) OVER (PARTITION BY m ORDER BY d ROWS UNBOUNDED PRECEDING) AS ce FROM s),
x AS (               -- only the days that cross a bound, interval by interval
  SELECT m, d, b, k, ce - dq + SUM(v) OVER (PARTITION BY m, d, b ORDER BY k ROWS UNBOUNDED PRECEDING) AS cum, v
  FROM (SELECT m, d, dq, ce, b, UNNEST(q) AS v, generate_subscripts(q, 1) AS k
        FROM c, (VALUES {bounds}) t(b) WHERE ce - dq < b AND ce > b)),
xb AS (
  SELECT m, d, SUM(GREATEST(cum - GREATEST(cum - v, b), 0) * {slot_step}) AS extra FROM x GROUP BY m, d),
a AS (
  SELECT c.m, c.d, {base} + {full} + COALESCE(xb.extra, 0) AS amount
  FROM c LEFT JOIN xb USING (m, d))
SELECT m, list(amount ORDER BY d) AS amounts FROM a GROUP BY m
"""


def interval_sql(onehot, bounds, prices) -> str:
    """INTERVAL_SQL for one tariff: each period's slots as ranges (1-based list positions)."""
    per_day, P = onehot.shape
    bounds, prices = [float(b) for b in bounds], prices.tolist()
    period = onehot.argmax(axis=1)
    runs = []                                          # (period, first slot, last slot), 1-based
    k = 0
    while k < per_day:
        j = k
        while j < per_day and period[j] == period[k]:
            j += 1
        runs.append((int(period[k]), k + 1, j))
        k = j

    def in_period(p, var):
        return " OR ".join(f"{var} BETWEEN {lo} AND {hi}" for q, lo, hi in runs if q == p) or "FALSE"
    sums = ", ".join(f"({' + '.join(f'list_sum(list_slice(q, {lo}, {hi}))' for q, lo, hi in runs if q == p) or '0.0'})"
                     f" AS s{p}" for p in range(P))
    base = " + ".join(f"s{p} * {prices[p][0]!r}" for p in range(P))
    full = " + ".join(f"(CASE WHEN ce - dq >= {b!r} THEN {' + '.join(f's{p} * {prices[p][t + 1] - prices[p][t]!r}' for p in range(P))} ELSE 0 END)"
                      for t, b in enumerate(bounds))
    slot_step = "CASE " + " ".join(
        f"WHEN b = {b!r} AND ({in_period(p, 'k')}) THEN {prices[p][t + 1] - prices[p][t]!r}"
        for t, b in enumerate(bounds) for p in range(P)) + " ELSE 0 END"
    return INTERVAL_SQL.format(period_sums=sums, bounds=", ".join(f"({b!r})" for b in bounds),
                               slot_step=slot_step, base=base, full=full)


def intervals_pandas(long, n_days, onehot, bounds, prices):
    """pandas on the long frame (m, d, k, q): a groupby sum per (meter, day, period), a groupby cumsum
    over days for the counter, and a groupby cumsum over the intervals of the bound-crossing days."""
    import pandas as pd

    period = onehot.argmax(axis=1)
    long = long.assign(p=period[long["k"].to_numpy()])
    S = long.groupby(["m", "d", "p"], sort=True)["q"].sum().unstack("p", fill_value=0.0)
    dayq = S.sum(axis=1)
    C = dayq.groupby(level="m").cumsum()
    Cp = C - dayq
    amount = S @ pd.Series(prices[:, 0], index=S.columns)
    for t, b in enumerate(bounds):
        step = pd.Series(prices[:, t + 1] - prices[:, t], index=S.columns)
        amount += (S @ step).where(Cp >= b, 0.0)
        cross = ((Cp < b) & (C > b))
        days = cross[cross].index.to_frame(index=False).assign(cp=Cp[cross].to_numpy())
        x = long.merge(days, on=["m", "d"])
        cum = x["cp"] + x.groupby(["m", "d"], sort=False)["q"].cumsum()
        ex = (cum - np.maximum(cum - x["q"], b)).clip(lower=0.0) * step.to_numpy()[x["p"].to_numpy()]
        extra = ex.groupby([x["m"], x["d"]]).sum()
        amount = amount.add(extra, fill_value=0.0)
    return amount.sort_index().to_numpy()


@njit(cache=True, parallel=True)
def ordered_sum_floor(qty, run_ends, out):
    """The part of the engine's work that no kernel keeping its sums exact-to-the-bit can skip: read
    every interval and add each run of same-period hours in index order (``billing.engine._run_sum``,
    ``run_ends``: the day's run ends in slots), per meter over all cores. Nothing else: no days,
    tiers, lines or bills. ``out[m]``: the meter's total (checked against numpy)."""
    per_day = run_ends[-1]
    for m in prange(qty.shape[0]):
        row = qty[m]
        tot = 0.0
        for d in range(row.size // per_day):
            j = d * per_day
            for e in run_ends:
                s, mn = _run_sum(row, j, d * per_day + e)
                tot += s
                j = d * per_day + e
        out[m] = tot


def run_ends_of(onehot) -> np.ndarray:
    """Slot ends of the day's runs of one tariff period (e.g. night 0–6, day 6–22, night 22–24)."""
    period = onehot.argmax(axis=1)
    return np.append(np.flatnonzero(period[1:] != period[:-1]) + 1, period.size).astype(np.int64)


def bench_intervals(n_meters: int, n_days: int, sub_meters: int, rng) -> dict:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    tables = compile_tariffs([tou_tiers_tariff()])
    per_day = 96
    N = n_days * per_day
    qty = rng.random((n_meters, N)) * 0.3                # ≈ 430 kWh a month: every tier is used
    start = day_number(dt.date(2026, 6, 1)) * 86400      # June: 30 days in one bill period
    mt = np.zeros(n_meters, np.int32)
    t_grid, r = best(lambda: price_grid(tables, qty, start + 900, 900, mt), 3, key="grid")
    n = qty.size
    # the same into the buffers of the previous call (``out=``: no fresh output pages to fault in)
    buf = [price_grid(tables, qty[:1], start + 900, 900, mt[:1])]

    def into_previous():
        buf[0] = price_grid(tables, qty, start + 900, 900, mt, out=buf[0])
        return buf[0]
    t_reuse, rr = best(into_previous, 3, key="grid_reuse")
    assert np.array_equal(rr.day_amount, r.day_amount) and np.array_equal(rr.line_amount, r.line_amount)
    del rr, buf
    onehot, bounds, prices = interval_params(tables, per_day)
    t_np_full, got = best(lambda: intervals_numpy(qty, n_days, onehot, bounds, prices), 3, key="np_full")
    same_to_the_cent("numpy (all meters)", got, r.day_amount)
    ends, tot = run_ends_of(onehot), np.empty(n_meters)
    ordered_sum_floor(qty[:2], ends, tot[:2])               # compile outside the timing
    t_floor, _ = best(lambda: ordered_sum_floor(qty, ends, tot), 3, key="floor")
    np.testing.assert_allclose(tot, qty.sum(axis=1), rtol=1e-9)
    # the night's shape: one day per meter
    night = np.ascontiguousarray(qty[:, :per_day])
    best(lambda: price_grid(tables, night, start + 900, 900, mt), 3, key="night")
    best(lambda: ordered_sum_floor(night, ends, tot), 3, key="night_floor")
    del night
    # the same subset in every formulation (DuckDB and pandas would not hold 288M rows here)
    S = sub_meters
    sub = qty[:S]
    lts = np.tile(start + 900 * np.arange(1, N + 1) - 1, S)
    offsets = np.arange(S + 1, dtype=np.int64) * N
    t_csr, rc = best(lambda: price_intervals(tables, offsets, lts, sub.ravel(), mt[:S]), 3)
    t_sub, rs = best(lambda: price_grid(tables, sub, start + 900, 900, mt[:S]), 3, key="grid_sub")
    assert np.array_equal(rc.day_amount, rs.day_amount)
    want = rs.day_amount
    res = {}
    t, got = best(lambda: intervals_numpy(sub, n_days, onehot, bounds, prices), 3, key="numpy")
    same_to_the_cent("numpy", got, want)
    res["numpy"] = t
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    days = pa.table({"m": np.repeat(np.arange(S, dtype=np.int32), n_days),
                     "d": np.tile(np.arange(n_days, dtype=np.int16), S),
                     "q": pa.ListArray.from_arrays(np.arange(S * n_days + 1, dtype=np.int32) * per_day, sub.ravel())})
    con.execute("CREATE TABLE iv AS SELECT * FROM days")  # one row per meter-day, DuckDB's own storage
    del days
    sql = interval_sql(onehot, bounds, prices)

    def sql_numpy():
        tb = con.sql(sql + " ORDER BY m").to_arrow_table()
        return tb.column("amounts").combine_chunks().flatten().to_numpy()
    t, got = best(sql_numpy, 2, key="DuckDB → numpy")
    same_to_the_cent("DuckDB (to numpy)", got, want)
    res["DuckDB → numpy"] = t
    t, _ = best(lambda: con.execute(f"CREATE OR REPLACE TEMP TABLE bills AS {sql}"), 2, key="DuckDB, result in DuckDB")
    got = con.execute("SELECT flatten(list(amounts ORDER BY m)) FROM bills").fetchone()[0]
    same_to_the_cent("DuckDB (in DuckDB)", got, want)
    res["DuckDB, result in DuckDB"] = t
    long = pd.DataFrame({"m": np.repeat(np.arange(S, dtype=np.int32), N),
                         "d": np.tile(np.repeat(np.arange(n_days, dtype=np.int16), per_day), S),
                         "k": np.tile(np.arange(per_day, dtype=np.int16), S * n_days), "q": sub.ravel()})
    t, got = best(lambda: intervals_pandas(long, n_days, onehot, bounds, prices), 1, key="pandas")
    same_to_the_cent("pandas", got, want)
    res["pandas"] = t
    assert abs(r.bill_total[:S].sum() - rs.bill_total.sum()) < 1e-6 * rs.bill_total.sum()
    m = S * N
    return {"n": n, "numba_grid": n / t_grid, "numba_grid_cpu": n / CPU["grid"], "numpy_full": n / t_np_full,
            "grid_sys": SYS["grid"], "numba_reuse": n / t_reuse, "numba_reuse_cpu": n / CPU["grid_reuse"],
            "reuse_sys": SYS["grid_reuse"],
            "floor": n / t_floor, "floor_cpu": n / CPU["floor"],
            "night_cpu": CPU["night"] / n_meters, "night_floor_cpu": CPU["night_floor"] / n_meters,
            "numpy_full_cpu": n / CPU["np_full"], "sub_n": m, "numba_sub": m / t_sub,
            "numba_sub_cpu": m / CPU["grid_sub"], "numba_csr": m / t_csr, "others": {k: m / v for k, v in res.items()},
            "others_cpu": {k: m / CPU[k] for k in res}}


def report(unit: str, numba_rate: float, numba_cpu: float, others: dict, others_cpu: dict, bw: dict,
           bytes_each: float, bw_kind: str) -> dict:
    """Print the numba rate, every other formulation, the ratios to the best of them and the memory bound."""
    bound = bw[bw_kind] * 1e9 / bytes_each
    print(f"    {'numba':<26} {numba_rate / 1e6:9.1f} M {unit}/s  ({numba_cpu / 1e6:,.0f} M per CPU-second)"
          f"  {numba_rate / bound:5.0%} of the memory bound")
    for name, rate in sorted(others.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<26} {rate / 1e6:9.1f} M {unit}/s  ({others_cpu[name] / 1e6:,.0f} M per CPU-second)"
              f"  numba ×{numba_rate / rate:6.1f}")
    best_name, best_rate = max(others.items(), key=lambda kv: kv[1])
    cpu_name, cpu_rate = max(others_cpu.items(), key=lambda kv: kv[1])
    print(f"    numba / best other: ×{numba_rate / best_rate:.2f} wall ({best_name}), ×{numba_cpu / cpu_rate:.2f} "
          f"per CPU-second ({cpu_name})  (target ≥ 3×)")
    print(f"    memory bound: {bytes_each:g} B per {unit[:-1] if unit.endswith('s') else unit} at "
          f"{bw[bw_kind]:.1f} GB/s ({bw_kind}, numpy over {os.cpu_count()} threads, load {bw['load']:.1f}) → "
          f"{bound / 1e6:,.0f} M {unit}/s")
    return {"best_other": best_name, "ratio": numba_rate / best_rate, "ratio_cpu": numba_cpu / cpu_rate,
            "bound": bound}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="bench_tariff", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n_am, meters, days, sub = (600_000, 10_000, 30, 2_000) if args.quick else (10_000_008, 100_000, 30, 10_000)
    import numba

    print(f"tariff engine benchmark ({'quick' if args.quick else 'full'}; numba threads {numba.get_num_threads()}; "
          f"{os.cpu_count()} cores; every formulation checked equal to the engine to the cent before its time)")
    # compile once outside the timings
    block_bills(compile_tariffs(builtin_catalog()), np.ones((2, 12)), dt.date(2026, 1, 1), np.zeros(2, np.int32))
    bw = bandwidth()
    a = bench_block(n_am, rng)
    bw2 = bandwidth()
    bw = bw if bw["read"] >= bw2["read"] else bw2
    print(f"(a) monthly block bills, {a['n']:,} account-months (Beijing annual + Guangdong seasonal tiers); "
          f"load {os.getloadavg()[0]:.1f}")
    a.update(report("account-months", a["numba"], a["numba_cpu"], a["others"], a["others_cpu"], bw, a["bytes"], "copy"))
    b = bench_intervals(meters, days, sub, rng)
    bw2 = bandwidth()
    bw = bw if bw["read"] >= bw2["read"] else bw2
    print(f"(b) 15-minute intervals, tiers + TOU: {meters:,} meters × {days} days = {b['n']:,} intervals; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"    all meters: numba grid {b['numba_grid'] / 1e6:,.1f} M intervals/s ({b['numba_grid_cpu'] / 1e6:,.0f} M "
          f"per CPU-second; target ≥ 1,500 M/s), numpy {b['numpy_full'] / 1e6:,.1f} M/s "
          f"({b['numpy_full_cpu'] / 1e6:,.0f} M per CPU-second): numba ×{b['numba_grid'] / b['numpy_full']:.2f}")
    (gs, gf), (rs, rf) = b["grid_sys"], b["reuse_sys"]
    print(f"    page faults: fresh outputs {gf:,} faults, system time {gs / (b['n'] / b['numba_grid_cpu']):.0%} of "
          f"the call's CPU; into the previous call's buffers (out=) {b['numba_reuse'] / 1e6:,.1f} M/s "
          f"({b['numba_reuse_cpu'] / 1e6:,.0f} M per CPU-second), {rf:,} faults, system {rs / (b['n'] / b['numba_reuse_cpu']):.0%}")
    print(f"    ordered-sum floor (every interval read and its run summed in index order, nothing else): "
          f"{b['floor'] / 1e6:,.1f} M/s ({b['floor_cpu'] / 1e6:,.0f} M per CPU-second); the engine's days, tiers, "
          f"lines and bills take {1 - b['numba_grid_cpu'] / b['floor_cpu']:.0%} of its CPU time")
    print(f"    the night's shape (each meter's first day alone, {meters:,} meters × 96 intervals): "
          f"{b['night_cpu'] * 1e9:,.0f} ns of CPU per meter, the ordered-sum floor {b['night_floor_cpu'] * 1e9:,.0f} ns")
    print(f"    the same {b['sub_n']:,} intervals ({sub:,} meters) in every formulation "
          f"(numba CSR, per-interval times: {b['numba_csr'] / 1e6:,.1f} M/s):")
    b.update(report("intervals", b["numba_sub"], b["numba_sub_cpu"], b["others"], b["others_cpu"], bw, 8, "read"))
    print(f"    memory bandwidth measured in this run: read {bw['read']:.1f} GB/s, copy {bw['copy']:.1f} GB/s "
          f"(best of the samples; load {bw['load']:.1f} then)")
    return {"block": a, "intervals": b, "bandwidth": bw}


if __name__ == "__main__":
    main()
