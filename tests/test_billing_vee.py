"""VEE kernel: hand-checked cases for each outcome, and numba == plain-Python reference."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import vee
from billing.vee import (ACTUAL, ESTIMATED, GAP, GAP_OPEN, NEGATIVE, NO_BASE, NO_DATA, OK, REPLACEMENT,
                         ROLLOVER, SOURCE, SPIKE, SUBSTITUTED, TRUEUP)
from reference.vee import vee_reference

N = 8          # slots per day in these tests
LIMIT = 1000.0  # milli-units per slot


def pack(meters):
    """meters: list of dicts with rows [(pos, reg)] or [(pos, None, qty, qlen, est)], base (pos, reg),
    avg, pending, reg_max."""
    offsets, pos, reg, qty, qlen, est = [0], [], [], [], [], []
    for m in meters:
        for r in m.get("rows", []):
            pos.append(float(r[0]))
            if r[1] is None:
                reg.append(-1); qty.append(r[2]); qlen.append(float(r[3])); est.append(bool(r[4]))
            else:
                reg.append(r[1]); qty.append(0); qlen.append(0.0); est.append(False)
        offsets.append(len(pos))
    base = [m.get("base") for m in meters]
    return (np.array(offsets, np.int64), np.array(pos, np.float64), np.array(reg, np.int64),
            np.array(qty, np.int64), np.array(qlen, np.float64), np.array(est, np.bool_),
            np.array([b[0] if b else NO_BASE for b in base], np.float64),
            np.array([b[1] if b else 0 for b in base], np.int64),
            np.array([m.get("avg", -1.0) for m in meters], np.float64),
            np.array([m.get("pending", 0.0) for m in meters], np.float64),
            np.array([m.get("reg_max", 0) for m in meters], np.int64),
            np.full(len(meters), LIMIT), np.array([m.get("step", 0) for m in meters], np.int64), N)


def into_poisoned(*args):
    """vee_kernel_into with its outputs poisoned beforehand: equal to the reference only when every
    slot is written."""
    state, n_slots = args[12:19], args[19]
    n_m = len(args[0]) - 1
    out = (np.full((n_m, n_slots), -7.25e300), np.full((n_m, n_slots), 99, np.int8),
           np.full((n_m, n_slots), 99, np.int8), *(a.copy() for a in state[:4]), state[6].copy(),
           np.zeros(vee.N_COUNTS, np.int64))
    vee.vee_kernel_into(*args, *out)
    return out


def check_parts(A, X, ref):
    """vee_kernel_parts and vee_kernel_into (poisoned outputs) on parts A and X equal ``ref``."""
    args = (*A[:6], *X[:6], *A[6:])
    for got in (vee.vee_kernel_parts(*args), into_poisoned(*args)):
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a, b)
    return got


def run(*meters):
    args = pack(list(meters))
    out = vee.vee_kernel(*args)
    ref = vee_reference(*args)
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(a, b)
    e = pack([{} for _ in meters])
    check_parts(args, e, ref)
    return out


def steady(start=0, step=100, base=(0, 5000), skip=()):
    return [(p, 5000 + step * p) for p in range(1, N + 1) if p not in skip], base


def test_actual_day():
    rows, base = steady()
    q, qual, flag, bp, br, avg, pend, step, counts = run({"rows": rows, "base": base})
    assert q[0].tolist() == [100.0] * N
    assert (qual == ACTUAL).all() and (flag == OK).all()
    assert bp[0] == 0 and br[0] == 5800 and avg[0] == 100.0 and pend[0] == 0
    assert vee.count_dict(counts)["ok"] == N


def test_duplicates_dropped_first_received_wins():
    rows, base = steady()
    rows = rows[:3] + [(3, 9999)] + rows[3:]   # a re-sent reading at the same instant
    q, qual, flag, *_, counts = run({"rows": rows, "base": base})
    assert q[0].tolist() == [100.0] * N
    assert vee.count_dict(counts)["duplicate"] == 1


def test_gap_linear_when_register_resumes():
    rows, base = steady(skip=(3, 4, 5))
    q, qual, flag, *_ = run({"rows": rows, "base": base})
    assert q[0].tolist() == [100.0] * N            # 400 over 4 slots shared linearly
    assert qual[0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    assert flag[0, 2:6].tolist() == [GAP] * 4


def test_open_gap_profile_then_trueup_next_day():
    rows = [(p, 5000 + 100 * p) for p in range(1, 5)]
    q, qual, flag, bp, br, avg, pend, step, _ = run({"rows": rows, "base": (0, 5000), "avg": 80.0})
    assert q[0, 4:].tolist() == [80.0] * 4 and (flag[0, 4:] == GAP_OPEN).all()
    assert bp[0] == 4 - N and br[0] == 5400 and pend[0] == 320.0
    # next day the register resumes at slot 2: 5400 → 6600 = 1200 over 6 slots, 320 already billed
    q2, qual2, flag2, bp2, br2, _, pend2, _, _ = run(
        {"rows": [(2, 6600), (3, 6700)], "base": (bp[0], br[0]), "avg": avg[0], "pending": pend[0]})
    assert q2[0, :2].tolist() == [440.0, 440.0] and (flag2[0, :2] == TRUEUP).all()
    assert q2[0, 2] == 100.0 and flag2[0, 2] == OK
    assert q[0, 4:].sum() + q2[0, :2].sum() == 1200.0
    assert pend2[0] == 5 * max(avg[0], 0)


def test_rollover_at_register_max():
    rows = [(1, 999_900), (2, 50), (3, 150)]
    q, qual, flag, *_ = run({"rows": rows, "base": (0, 999_800), "reg_max": 1_000_000})
    assert q[0, :3].tolist() == [100.0, 150.0, 100.0]
    assert flag[0, 1] == ROLLOVER and qual[0, 1] == ACTUAL


def test_replacement_no_negative_or_giant_charge():
    rows = [(1, 800_100), (2, 3), (3, 103), (4, 203)]
    q, qual, flag, bp, br, *_ = run({"rows": rows, "base": (0, 800_000), "avg": 90.0})
    assert q[0, :4].tolist() == [100.0, 90.0, 100.0, 100.0]
    assert flag[0, 1] == REPLACEMENT and qual[0, 1] == ESTIMATED
    assert (q >= 0).all() and q.max() <= LIMIT


def test_small_negative_keeps_base():
    rows = [(1, 5100), (2, 5090), (3, 5200)]
    q, qual, flag, *_ = run({"rows": rows, "base": (0, 5000)})
    assert q[0, :3].tolist() == [100.0, 0.0, 100.0]  # 5200 - kept base 5100
    assert flag[0, 1] == NEGATIVE and qual[0, 1] == SUBSTITUTED


def test_spike_discarded_and_estimated():
    rows, base = steady()
    rows[2] = (3, 5000 + 300 + 50_000)       # one corrupted reading
    q, qual, flag, *_, counts = run({"rows": rows, "base": base})
    assert q[0].tolist() == [100.0] * N
    assert flag[0, 2] == SPIKE and flag[0, 3] == GAP and qual[0, 2] == ESTIMATED
    assert vee.count_dict(counts)["discarded"] == 1


def test_permanent_jump_is_replacement():
    rows = [(1, 5100), (2, 90_000), (3, 90_100)]
    q, qual, flag, *_ = run({"rows": rows, "base": (0, 5000), "avg": 70.0})
    assert q[0, :3].tolist() == [100.0, 70.0, 100.0] and flag[0, 1] == REPLACEMENT


def test_new_meter_without_base():
    q, qual, flag, bp, br, *_ = run({"rows": [(3, 100), (4, 200)]})
    assert (flag[0, :3] == NO_DATA).all() and q[0, 3] == 100.0 and flag[0, 3] == OK
    assert (flag[0, 4:] == GAP_OPEN).all() and br[0] == 200


def test_no_readings_at_all():
    q, qual, flag, bp, *_ = run({"rows": [], "avg": 50.0})
    assert q[0].tolist() == [50.0] * N and (flag == NO_DATA).all() and bp[0] == NO_BASE


def test_interval_rows_and_source_estimates():
    rows = [(p, None, 100, 1, False) for p in range(1, 5)]
    rows += [(6, None, 400, 2, True)]            # a 2-slot interval closing slot 5, estimated at source
    rows += [(7, None, 5000, 1, False)]         # beyond the limit
    q, qual, flag, *_ = run({"rows": rows, "avg": 60.0})
    assert q[0].tolist() == [100.0] * 4 + [200.0, 200.0, 60.0, 60.0]
    assert flag[0, 4] == SOURCE and flag[0, 6] == SPIKE and flag[0, 7] == NO_DATA
    assert (qual[0, :4] == ACTUAL).all()


@st.composite
def meter_days(draw):
    n = draw(st.integers(0, 4))
    meters = []
    for _ in range(n):
        kind = draw(st.sampled_from(["reg", "qty", "mixed"]))
        rows = []
        k = draw(st.integers(0, 12))
        positions = sorted(draw(st.lists(st.integers(-1, N + 1), min_size=k, max_size=k)))
        r = draw(st.integers(0, 3000))
        for p in positions:
            use_qty = kind == "qty" or (kind == "mixed" and draw(st.booleans()))
            if use_qty:
                rows.append((p + draw(st.sampled_from([0.0, -0.5])), None, draw(st.integers(0, 2500)),
                             draw(st.integers(1, 3)), draw(st.booleans())))
            else:
                r = max(0, r + draw(st.integers(-2500, 4000)))
                rows.append((p + draw(st.sampled_from([0.0, 0.2, -0.3])), r))
        rows.sort(key=lambda x: x[0])
        base = draw(st.one_of(st.none(), st.tuples(st.integers(-5, 0), st.integers(0, 3000))))
        meters.append({"rows": rows, "base": base, "avg": draw(st.sampled_from([-1.0, 0.0, 37.5, 120.0])),
                       "pending": draw(st.sampled_from([0.0, 200.0])),
                       "reg_max": draw(st.sampled_from([0, 4000])),
                       "step": draw(st.sampled_from([0, 0, 1, 2, 4]))})
    return meters


@settings(max_examples=300, deadline=None)
@given(meter_days())
def test_kernel_equals_reference(meters):
    args = pack(meters)
    for a, b in zip(vee.vee_kernel(*args), vee_reference(*args)):
        np.testing.assert_array_equal(a, b)


def drop_interval_columns(P, rnd):
    if (P[2] >= 0).all() and rnd.random() < 0.5:
        return (P[0], P[1], P[2], np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.bool_)) + tuple(P[6:])
    return P


@settings(max_examples=200, deadline=None)
@given(meter_days(), st.randoms(use_true_random=False))
def test_two_part_kernel_equals_reference_on_merged_rows(meters, rnd):
    """Rows split over two parts (the day's partition and the neighbouring days' edges) give the same
    result as the reference on the merged rows."""
    def split(rows):
        a, b = [], []
        for r in rows:
            (a if rnd.random() < 0.6 else b).append(r)
        return a, b
    check_split(meters, split, rnd)


def check_split(meters, split, rnd):
    """Each meter's rows split over two parts (``split(rows)`` → the first part's, the second's): the
    kernel on the parts equals the reference on the merged rows."""
    main, extra = [], []
    for m in meters:
        a, b = split(m["rows"])
        main.append({**m, "rows": a})
        extra.append({"rows": b})
    A, X = pack(main), pack(extra)
    merged = vee.merge_parts(*A[:6], *X[:6])
    # a part of register rows only may come without its interval columns (empty arrays)
    A, X = [drop_interval_columns(P, rnd) for P in (A, X)]
    check_parts(A, X, vee_reference(*merged, *A[6:]))


@st.composite
def steady_meters(draw):
    """Meters as most are: a reading each slot (or each 2 or 4) from a base at the day's start, within
    the limit, with now and then a missed, re-sent, dropping or jumping reading, a base elsewhere or
    none, another step carried."""
    meters = []
    for _ in range(draw(st.integers(1, 4))):
        r = draw(st.integers(0, 3000))
        bpos = draw(st.sampled_from([0, 0, 0, 0, -2, None]))
        last = 0 if bpos is None else bpos
        rows = []
        every = draw(st.sampled_from([1, 1, 2, 4]))
        for p in sorted(draw(st.sets(st.integers(0, N + 1)))):
            if p > 0 and (p % every or draw(st.integers(0, 5)) == 0):
                continue                                    # between readings, or a missed one: a gap
            ev = draw(st.sampled_from(["ok"] * 10 + ["edge", "drop", "small_drop", "spike", "resent"]))
            gap = max(p - last, 1)
            r = {"ok": r + draw(st.integers(0, int(LIMIT))), "edge": r + int(LIMIT) * gap, "drop": 5,
                 "small_drop": max(r - 300, 0), "spike": r + 50_000, "resent": r}[ev]
            rows.append((p + draw(st.sampled_from([0.0, 0.0, 0.2, -0.3])), r))
            if ev == "resent":
                rows.append((rows[-1][0], r + 7))           # a re-sent reading: a duplicate
            last = p
        meters.append({"rows": rows, "base": None if bpos is None else (bpos, draw(st.integers(0, 3000))),
                       "avg": draw(st.sampled_from([-1.0, 0.0, 37.5])), "pending": draw(st.sampled_from([0.0, 200.0])),
                       "reg_max": draw(st.sampled_from([0, 4000])), "step": draw(st.sampled_from([1, 1, 1, 0, 2, 4]))})
    return meters


@settings(max_examples=300, deadline=None)
@given(steady_meters(), st.sampled_from(["one", "after", "before", "mixed"]), st.randoms(use_true_random=False))
def test_steady_meters_in_parts_equal_reference(meters, split, rnd):
    """The common meter's one-pass path and its fall-back to the general one (a meter's first event
    anywhere in its day), with the edge readings in a part after the day's rows (the night's case),
    before them, mixed in, or none: equal to the reference on the merged rows, every slot written."""
    def parts(rows):
        cut = rnd.randint(0, len(rows))
        return {"one": (rows, []), "after": (rows[:cut], rows[cut:]), "before": (rows[cut:], rows[:cut]),
                "mixed": (rows[1::2], rows[::2])}[split]
    check_split(meters, parts, rnd)


def test_hourly_meter_is_actual_not_a_gap():
    rows = [(p, 5000 + 100 * p) for p in range(2, N + 1, 2)]       # a reading every 2 slots
    q, qual, flag, *_, step, counts = run({"rows": rows, "base": (0, 5000)})
    assert q[0].tolist() == [100.0] * N and (qual == ACTUAL).all() and step[0] == 2
    # the next day a reading is lost: 4 slots since the last one → a gap, the step stays 2
    rows = [(2, 5000 + 1000), (6, 5000 + 1400), (8, 5000 + 1600)]
    q, qual, flag, *_, step, counts = run({"rows": rows, "base": (0, 5800), "step": 2})
    assert flag[0, :2].tolist() == [OK, OK] and (flag[0, 2:6] == GAP).all() and step[0] == 2
