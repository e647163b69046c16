"""Hypothesis: numba engine == plain-Python reference; bookkeeping invariants of bills."""
from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference import tariff as reference
from billing.engine import CycleState, Priced, block_bills, civil_from_days, days_from_civil, price_grid, \
    price_intervals
from billing.money import allocate_cents, to_cents
from billing.tariff_arrays import compile_tariffs, day_date, day_number
from meters.tariffs import Tariff

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tariffs(draw, monotone=False, n_versions=None):
    P = draw(st.integers(1, 3))
    T = draw(st.integers(1, 3))
    cycle = draw(st.sampled_from(["month", "year", "period"]))
    method = draw(st.sampled_from(["chronological", "pro_rata"]))
    unit = draw(st.sampled_from(["cycle", "day"]))
    sched = lambda: [[draw(st.integers(0, P - 1)) for _ in range(24)] if draw(st.booleans())  # noqa: E731
                     else [0] * 24 for _ in range(12)]
    wd, we = sched(), sched()
    scale = 3.0 if unit == "day" else 60.0
    bounds = []
    for _ in range(12):
        b, row = 0.0, []
        for _ in range(T - 1):
            b += draw(st.floats(0.5, 2.0)) * scale
            row.append(round(b, 3))
        bounds.append(row)
    out = []
    k = n_versions or draw(st.integers(1, 2))
    for v in range(k):
        prices = []
        for _ in range(P):
            row = [draw(st.floats(0.0, 2.0))]
            for _ in range(T - 1):
                row.append(row[-1] + draw(st.floats(0.0, 1.0)) if monotone else draw(st.floats(0.0, 2.0)))
            prices.append(row)
        out.append(Tariff.from_dict(dict(
            tariff_id="r", utility="electricity", unit="kWh", currency="X", description="random",
            effective_from=(dt.date(2020, 1, 1) + dt.timedelta(days=0 if v == 0 else draw(st.integers(1, 120))
                                                                + 2300 * v)).isoformat(),
            periods=[{"name": f"p{p}"} for p in range(P)], weekday_schedule=wd, weekend_schedule=we,
            tier_bounds=bounds, prices=prices, tier_cycle=cycle, tier_method=method, tier_bound_unit=unit,
            fixed_charge=draw(st.sampled_from([0.0, 1.5, 9.0])), fixed_charge_unit=draw(st.sampled_from(["month", "day"])),
            minimum_charge=draw(st.sampled_from([0.0, 20.0, 200.0])))))
    return out


@st.composite
def loads(draw, n_meters=None):
    """Per meter: (billing_day, local_ts, quantity) — irregular steps, gaps, zeros, days across months."""
    M = n_meters or draw(st.integers(1, 3))
    out = []
    for _ in range(M):
        start = dt.date(2026, 1, 1) + dt.timedelta(days=draw(st.integers(0, 400)))
        step = draw(st.sampled_from([900, 3600, 4 * 3600, 86400]))
        n = draw(st.integers(0, min(400, 90 * 86400 // step)))
        t0 = day_number(start) * 86400 + draw(st.integers(0, 86399)) // step * step
        steps = np.asarray(draw(st.lists(st.sampled_from([1, 1, 1, 2, 7]), min_size=n, max_size=n)), np.int64)
        lts = t0 + np.cumsum(steps) * step - 1
        q = np.asarray(draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5, 7.0, 30.0]), min_size=n,
                                     max_size=n)), float) * (step / 3600) ** 0.5
        out.append((draw(st.integers(1, 28)), lts, q))
    return out


def csr(meters):
    offsets = np.concatenate([[0], np.cumsum([len(q) for _, _, q in meters])]).astype(np.int64)
    lts = np.concatenate([l for _, l, _ in meters]) if meters else np.zeros(0, np.int64)
    q = np.concatenate([q for _, _, q in meters]) if meters else np.zeros(0)
    return offsets, lts.astype(np.int64), q, np.asarray([b for b, _, _ in meters], np.int32)


def engine_run(versions, meters, state=None):
    tb = compile_tariffs(versions)
    offsets, lts, q, bd = csr(meters)
    r = price_intervals(tb, offsets, lts, q, np.zeros(len(meters), np.int32), state=state, billing_day=bd)
    assert_same_into_dirty(r, lambda out: price_intervals(tb, offsets, lts, q, np.zeros(len(meters), np.int32),
                                                          state=state, billing_day=bd, out=out))
    return tb, r


def dirty(a: np.ndarray) -> np.ndarray:
    """A larger array of ``a``'s dtype and row shape full of garbage (NaN, -7, True)."""
    b = np.empty((a.shape[0] + 3,) + a.shape[1:], a.dtype)
    b[...] = np.nan if a.dtype.kind == "f" else (True if a.dtype.kind == "b" else -7)
    return b


def assert_same_into_dirty(r: Priced, price) -> None:
    """Pricing into an earlier result's buffers (larger, full of garbage) gives the same bits as fresh
    arrays: the kernel writes every row it returns."""
    buf = Priced(*(dirty(getattr(r, f)) for f in Priced.__dataclass_fields__ if f != "state"),
                 CycleState(*(dirty(getattr(r.state, f)) for f in CycleState.__dataclass_fields__)))
    got = price(buf)
    for f in Priced.__dataclass_fields__:
        if f != "state":
            assert np.array_equal(getattr(got, f), getattr(r, f), equal_nan=True), f
            assert np.shares_memory(getattr(got, f), getattr(buf, f)) or getattr(r, f).size == 0, f
    for f in CycleState.__dataclass_fields__:
        assert np.array_equal(getattr(got.state, f), getattr(r.state, f), equal_nan=True), f


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


@SETTINGS
@given(tariffs(), loads())
def test_numba_equals_reference(versions, meters):
    if any(v.effective_from > dt.date(2026, 1, 1) for v in versions[:1]):
        return
    tb, r = engine_run(versions, meters)
    for m, (bd, lts, q) in enumerate(meters):
        ref = reference.price_meter(versions, lts.tolist(), q.tolist(), billing_day=bd)
        rows = np.flatnonzero(r.day_meter == m)
        assert len(rows) == len(ref["days"])
        for i, (day, dq, amt, total) in zip(rows, ref["days"]):
            assert day_date(r.day[i]) == day
            assert close(r.day_quantity[i], dq) and close(r.day_amount[i], amt) and close(r.day_total[i], total)
        brows = np.flatnonzero(r.bill_meter == m)
        assert len(brows) == len(ref["bills"])
        for i, b in zip(brows, ref["bills"]):
            assert day_date(r.bill_start[i]) == b["start"] and day_date(r.bill_end[i]) == b["end"]
            assert tb.versions[r.bill_version[i]] == b["version"]
            for name in ("quantity", "energy", "fixed", "minimum", "total"):
                assert close(getattr(r, f"bill_{name}")[i], b[name]), name
            assert bool(r.bill_closed[i]) == b["closed"]
            want = np.zeros_like(r.line_quantity[i])
            wamt = np.zeros_like(want)
            for (p, t), (lq, la) in b["lines"].items():
                want[p, t], wamt[p, t] = lq, la
            np.testing.assert_allclose(r.line_quantity[i], want, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(r.line_amount[i], wamt, rtol=1e-9, atol=1e-9)
        if ref["state"]["last"] is not None:
            assert r.state.last_ts[m] == ref["state"]["last"]
            assert close(r.state.cycle_qty[m], ref["state"]["cycle_qty"])


@SETTINGS
@given(tariffs(), loads(), st.data())
def test_split_and_carry_equals_one_run(versions, meters, data):
    if versions[0].effective_from > dt.date(2026, 1, 1):
        return
    tb, whole = engine_run(versions, meters)
    # cut every meter's intervals at the same random local times into 1–4 runs
    cuts = sorted(data.draw(st.lists(st.integers(day_number(dt.date(2026, 1, 1)) * 86400,
                                                 day_number(dt.date(2027, 6, 1)) * 86400), max_size=3)))
    state = None
    days, bills = {}, {}
    bounds = [-(1 << 62)] + cuts + [1 << 62]
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = [(bd, lts[(lts >= a) & (lts < b)], q[(lts >= a) & (lts < b)]) for bd, lts, q in meters]
        _, r = engine_run(versions, part, state)
        state = r.state
        for i in range(r.day.size):
            k = (r.day_meter[i], r.day[i])
            days[k] = days.get(k, np.zeros(2)) + [r.day_quantity[i], r.day_amount[i]]
        for i in range(r.bill_start.size):
            bills[(r.bill_meter[i], r.bill_start[i])] = (r.bill_total[i], r.line_amount[i], r.bill_closed[i])
    assert len(days) == whole.day.size
    for i in range(whole.day.size):
        got = days[(whole.day_meter[i], whole.day[i])]
        assert close(got[0], whole.day_quantity[i]) and close(got[1], whole.day_amount[i], 1e-8)
    assert len(bills) == whole.bill_start.size
    for i in range(whole.bill_start.size):
        total, la, closed = bills[(whole.bill_meter[i], whole.bill_start[i])]
        assert close(total, whole.bill_total[i]) and closed == whole.bill_closed[i]
        np.testing.assert_allclose(la, whole.line_amount[i], rtol=1e-9, atol=1e-9)


@SETTINGS
@given(tariffs(), st.data())
def test_grid_kernel_carrying_counters_equals_reference(versions, data):
    """The dense-grid path (tiers × time of use × counters carried between calls, the fused kernel's
    day stepping without divisions) against the plain-Python reference, in one or two calls."""
    if versions[0].effective_from > dt.date(2026, 1, 1):
        return
    M = data.draw(st.integers(1, 3))
    step = data.draw(st.sampled_from([300, 900, 1800, 3600, 4 * 3600]))
    n = data.draw(st.integers(0, min(400, 70 * 86400 // step)))
    start = dt.date(2026, 1, 1) + dt.timedelta(days=data.draw(st.integers(0, 400)))
    first_end = day_number(start) * 86400 + data.draw(st.integers(1, 86400 // step)) * step \
        - data.draw(st.sampled_from([0, 0, 0, 1, step // 2]))
    q = np.asarray(data.draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5, 7.0, 30.0]), min_size=M * n,
                                      max_size=M * n)), float).reshape(M, n) * (step / 3600) ** 0.5
    bd = np.asarray(data.draw(st.lists(st.integers(1, 28), min_size=M, max_size=M)), np.int32)
    tb = compile_tariffs(versions)
    mt = np.zeros(M, np.int32)
    cut = data.draw(st.integers(0, n))
    days, bills, state = {}, {}, None
    for a, b in ((0, cut), (cut, n)) if data.draw(st.booleans()) else ((0, n),):
        r = price_grid(tb, q[:, a:b], first_end + a * step, step, mt, state=state, billing_day=bd)
        assert_same_into_dirty(r, lambda out: price_grid(tb, q[:, a:b], first_end + a * step, step, mt, state=state,
                                                         billing_day=bd, out=out))
        state = r.state
        for i in range(r.day.size):
            k = (int(r.day_meter[i]), int(r.day[i]))
            days[k] = days.get(k, 0.0) + r.day_amount[i]
        for i in range(r.bill_start.size):
            bills[(int(r.bill_meter[i]), int(r.bill_start[i]))] = (r.bill_total[i], r.line_amount[i])
    lts = first_end - 1 + step * np.arange(n)
    for m in range(M):
        ref = reference.price_meter(versions, lts.tolist(), q[m].tolist(), billing_day=int(bd[m]))
        assert sorted(d for mm, d in days if mm == m) == [day_number(d) for d, *_ in ref["days"]]
        for day, _, amt, _ in ref["days"]:
            assert close(days[(m, day_number(day))], amt, 1e-8)
        assert len([k for k in bills if k[0] == m]) == len(ref["bills"])
        for b in ref["bills"]:
            total, la = bills[(m, day_number(b["start"]))]
            assert close(total, b["total"])
            want = np.zeros_like(la)
            for (p, t), (_, amount) in b["lines"].items():
                want[p, t] = amount
            np.testing.assert_allclose(la, want, rtol=1e-9, atol=1e-9)
        if ref["state"]["last"] is not None:
            assert state.last_ts[m] == ref["state"]["last"]
            assert close(state.cycle_qty[m], ref["state"]["cycle_qty"])


@SETTINGS
@given(tariffs(), loads())
def test_lines_sum_to_bill_and_tiers_within_width(versions, meters):
    if versions[0].effective_from > dt.date(2026, 1, 1):
        return
    tb, r = engine_run(versions, meters)
    for i in range(r.bill_start.size):
        total = r.line_amount[i].sum() + r.bill_fixed[i] + r.bill_minimum[i]
        assert close(total, r.bill_total[i])
        assert close(r.line_quantity[i].sum(), r.bill_quantity[i])
        cents = allocate_cents(np.concatenate([r.line_amount[i].ravel(), [r.bill_fixed[i], r.bill_minimum[i]]]),
                               int(to_cents(r.bill_total[i])))
        assert cents.sum() == to_cents(r.bill_total[i])
        v = tb.versions[r.bill_version[i]]
        ps, pe = day_date(r.bill_start[i]), day_date(r.bill_end[i])
        scale = (pe - ps).days + 1 if v.tier_bound_unit == "day" else 1
        def widths(month):
            edges = [0.0] + [b * scale for b in v.tier_bounds[month - 1]] + [np.inf]
            return np.diff(edges)

        width = widths(ps.month)
        if v.tier_cycle == "year" and ps.year != pe.year:  # annual tiers restart on 1 January inside the period
            width = width + np.maximum(width, widths(pe.month))
        per_tier = r.line_quantity[i].sum(axis=0)
        for t in range(v.n_tiers - 1):
            assert per_tier[t] <= width[t] + 1e-9 * max(1.0, width[t])
    # days sum to the bill of their period
    for m in np.unique(r.bill_meter):
        assert close(r.day_amount[r.day_meter == m].sum(), r.bill_total[r.bill_meter == m].sum(), 1e-8)


@SETTINGS
@given(tariffs(monotone=True, n_versions=1), loads(n_meters=1), st.data())
def test_more_consumption_never_costs_less(versions, meters, data):
    (bd, lts, q), = meters
    extra = np.asarray(data.draw(st.lists(st.sampled_from([0.0, 0.0, 0.3, 5.0]), min_size=q.size,
                                          max_size=q.size)), float)
    _, a = engine_run(versions, meters)
    _, b = engine_run(versions, [(bd, lts, q + extra)])
    assert b.bill_total.sum() >= a.bill_total.sum() - 1e-9 * max(1.0, a.bill_total.sum())
    np.testing.assert_array_less(a.bill_total - 1e-9 * np.maximum(1, a.bill_total), b.bill_total)


@settings(max_examples=200, deadline=None)
@given(st.integers(-719_162, 2_932_896))
def test_calendar_kernels_match_datetime(n):
    d = dt.date(1970, 1, 1) + dt.timedelta(days=n)
    assert civil_from_days(n) == (d.year, d.month, d.day)
    assert days_from_civil(d.year, d.month, d.day) == n


def block_reference(versions, qty, first_month, cycle_qty):
    """Monthly block bills the obvious way: one chronological run per account, one interval a month."""
    out = np.zeros_like(qty)
    for a in range(qty.shape[0]):
        ts = []
        d = first_month
        for _ in range(qty.shape[1]):
            d = dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)
            ts.append(day_number(d) * 86400 - 43200)   # noon of the month's last day: the bill is complete
        r = reference.price_meter(versions, ts, qty[a].tolist(), state={
            **reference.new_state(), "cycle_key": first_month.year if versions[0].tier_cycle == "year" else None,
            "cycle_qty": float(cycle_qty[a])})
        out[a] = [b["total"] for b in r["bills"]]
    return out


@SETTINGS
@given(tariffs(n_versions=1), st.integers(1, 5), st.integers(1, 26), st.integers(0, 11), st.data())
def test_block_bills_kernel_equals_reference(versions, A, K, m0, data):
    t = versions[0]
    t = Tariff.from_dict({**t.to_dict(), "periods": [{"name": "all"}], "prices": [t.prices[0]],
                          "weekday_schedule": [[0] * 24] * 12, "weekend_schedule": [[0] * 24] * 12,
                          "tier_method": "chronological", "tier_bound_unit": "cycle", "fixed_charge_unit": "month",
                          "tier_cycle": "year" if t.tier_cycle == "year" else "month"})
    qty = np.asarray(data.draw(st.lists(st.floats(0, 400), min_size=A * K, max_size=A * K)), float).reshape(A, K)
    cq = np.asarray(data.draw(st.lists(st.floats(0, 300), min_size=A, max_size=A)), float)
    if t.tier_cycle != "year":
        cq[:] = 0
    first = dt.date(2026, m0 + 1, 1)
    got = block_bills(compile_tariffs([t]), qty, first, np.zeros(A, np.int32), cq)
    want = block_reference([t], qty, first, cq)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(tariffs(n_versions=1), st.lists(st.integers(day_number(dt.date(2026, 1, 1)) * 86400,
                                                     day_number(dt.date(2026, 4, 1)) * 86400), min_size=1, max_size=60),
       st.lists(st.floats(-1, 5), min_size=60, max_size=60))
def test_bad_order_or_sign_is_refused_never_corrupts(versions, times, qs):
    """Negative quantities, and local times that go back by an hour or more or into another day,
    raise MetersError; strictly increasing clean input prices. A step back of less than an hour within
    the day is the repeated wall-clock hour when clocks go back: priced, never corrupted."""
    import pytest

    from meters.errors import MetersError
    lts = np.asarray(times, np.int64)
    q = np.asarray(qs[: lts.size])
    tb = compile_tariffs(versions)
    latest = np.maximum.accumulate(lts)
    back = lts[1:] <= latest[:-1]
    too_far = back & ((lts[1:] <= latest[:-1] - 3600) | (lts[1:] // 86400 != latest[:-1] // 86400))
    if np.any(q < 0) or np.any(too_far):
        with pytest.raises(MetersError):
            price_intervals(tb, [0, lts.size], lts, q, [0])
    else:  # strictly increasing, or only repeated-hour steps back
        r = price_intervals(tb, [0, lts.size], lts, q, [0])
        assert np.isclose(r.day_quantity.sum(), q.sum())


@SETTINGS
@given(tariffs(), tariffs(), loads(), st.data())
def test_mixed_tariffs_in_one_table_equal_reference(a, b, meters, data):
    """Tariffs with different period and tier counts share padded tables; each meter still prices right."""
    b = [Tariff.from_dict({**t.to_dict(), "tariff_id": "other"}) for t in b]
    tb = compile_tariffs(a + b)
    which = np.asarray(data.draw(st.lists(st.integers(0, 1), min_size=len(meters), max_size=len(meters))), np.int32)
    offsets, lts, q, bd = csr(meters)
    r = price_intervals(tb, offsets, lts, q, which, billing_day=bd)
    for m, (bd_m, lts_m, q_m) in enumerate(meters):
        ref = reference.price_meter([a, b][which[m]], lts_m.tolist(), q_m.tolist(), billing_day=bd_m)
        rows = np.flatnonzero(r.bill_meter == m)
        assert [close(r.bill_total[i], x["total"]) for i, x in zip(rows, ref["bills"])] == [True] * len(rows)
        assert len(rows) == len(ref["bills"])
        np.testing.assert_allclose(r.day_amount[r.day_meter == m], [d[2] for d in ref["days"]], rtol=1e-9, atol=1e-9)


@SETTINGS
@given(st.lists(st.tuples(st.lists(st.floats(-500, 500, allow_nan=False).map(lambda x: round(x, 4)), min_size=1,
                                   max_size=6), st.integers(-5, 5)), min_size=1, max_size=6))
def test_bills_allocated_at_once_equal_one_by_one(bills):
    """allocate_cents_grouped (every closed bill's lines at once, billing/outputs.py) gives each bill
    the cents allocate_cents gives it alone."""
    from billing.money import allocate_cents_grouped

    amounts = np.array([a for lines, _ in bills for a in lines])
    group = np.repeat(np.arange(len(bills)), [len(lines) for lines, _ in bills])
    totals = np.array([int(to_cents(sum(lines))) + off for lines, off in bills])
    want = np.concatenate([allocate_cents(lines, t) for (lines, _), t in zip(bills, totals)])
    np.testing.assert_array_equal(allocate_cents_grouped(amounts, group, totals), want)


@SETTINGS
@given(st.data())
def test_benchmark_ordered_sum_floor_equals_reference(data):
    """The benchmark's ordered-sum floor adds exactly what the plain-Python reference adds, in the
    same order (bit for bit): it is the engine's own run sum, so its rate is the engine's floor."""
    from benchmarks.bench_tariff import ordered_sum_floor, run_ends_of

    per_day = data.draw(st.sampled_from([4, 24, 96]))
    period = np.asarray(data.draw(st.lists(st.integers(0, 2), min_size=per_day, max_size=per_day)))
    onehot = np.eye(3)[period]
    M, days = data.draw(st.integers(1, 5)), data.draw(st.integers(0, 4))
    q = np.asarray(data.draw(st.lists(st.floats(0, 50, allow_nan=False), min_size=M * days * per_day,
                                      max_size=M * days * per_day)), float).reshape(M, days * per_day)
    ends = run_ends_of(onehot)
    out = np.empty(M)
    ordered_sum_floor(q, ends, out)
    assert out.tolist() == reference.ordered_run_totals(q.tolist(), ends.tolist())


def by_meter(r: Priced, m: int) -> list:
    """Meter ``m``'s rows of every output and of the carried state (meter index columns left out)."""
    d, b = r.day_meter == m, r.bill_meter == m
    out = [getattr(r, f)[d] for f in ("day", "day_quantity", "day_amount", "day_total")]
    out += [getattr(r, f)[b] for f in Priced.__dataclass_fields__ if f.startswith(("bill_", "line_"))
            and f != "bill_meter"]
    return out + [getattr(r.state, f)[m] for f in CycleState.__dataclass_fields__]


@SETTINGS
@given(tariffs(), tariffs(), loads(), st.booleans(), st.data())
def test_meters_priced_together_equal_each_alone(a, b, meters, grid, data):
    """The kernel keeps a chunk's hour runs, bill periods, months and versions from meter to meter:
    each meter's money and state are the same bits among many meters (two tariffs, billing days,
    carried state) as priced alone — or the same meters are refused with the same error."""
    import numba
    import pytest

    from meters.errors import MetersError
    b = [Tariff.from_dict({**t.to_dict(), "tariff_id": "other"}) for t in b]
    tb = compile_tariffs(a + b)
    M = 12 * numba.get_num_threads()          # chunks of several meters whatever the thread count
    mt = np.asarray(data.draw(st.lists(st.integers(0, 1), min_size=M, max_size=M)), np.int32)
    bd = np.asarray(data.draw(st.lists(st.integers(1, 28), min_size=M, max_size=M)), np.int32)
    if grid:
        bd_, lts, q = meters[0]
        q = np.stack([np.roll(q, k) * (1 + k % 3) for k in range(M)])
        price = lambda idx, state: price_grid(tb, q[idx], int(lts[0]) + 1 if lts.size else 1, 900,  # noqa: E731
                                              mt[idx], state=state, billing_day=bd[idx])
    else:
        loads_ = [meters[k % len(meters)] for k in range(M)]
        def price(idx, state):
            offsets, lts, q, _ = csr([loads_[k] for k in idx])
            return price_intervals(tb, offsets, lts, q, mt[idx], state=state, billing_day=bd[idx])
    seeded = CycleState.seeded(tb, 2026, np.asarray(data.draw(st.lists(st.sampled_from([0.0, 50.0, 400.0]),
                                                                       min_size=M, max_size=M))))
    every = np.arange(M)
    try:
        whole = price(every, seeded)
    except MetersError as e:
        first = int(str(e).split("#")[1].split()[0])
        with pytest.raises(MetersError):
            price(np.array([first]), seeded.take([first]))
        return
    for m in range(M):
        alone = price(np.array([m]), seeded.take([m]))
        for x, y in zip(by_meter(whole, m), by_meter(alone, 0)):
            assert np.array_equal(x, y, equal_nan=True)
