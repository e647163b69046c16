"""The tariff engine: numba kernels that price every interval, parallel over meters.

Inputs (sorted by meter, then time):

- ``offsets[M + 1]`` (CSR: meter ``m`` owns intervals ``offsets[m]:offsets[m+1]``), ``local_ts[N]``
  (int64 local wall-clock seconds of the instant 1 s before each interval end — see
  :func:`local_times`; an interval ending at local midnight belongs to the previous day) and
  ``quantity[N]`` (float64, ≥ 0). :func:`price_grid` takes a dense ``[M, N]`` matrix on one time grid.
- ``meter_tariff[M]``: family index into :class:`billing.tariff_arrays.TariffTables`;
  ``billing_day[M]`` (1..28: every meter's bill period runs from it to the day before it next month).
- ``state``: :class:`CycleState` carried from the previous run (``None`` = fresh meters).

Semantics (docs/tariffs.md):

- Bill periods run from the account's ``billing_day`` to the day before it in the next month (1 = the
  calendar month), whatever the tier cycle. Monthly and ``period`` tier cycles are the bill period (tiers
  counted per meter-reading cycle, as Chinese utilities do); annual cycles reset on 1 January, also
  inside a bill period that straddles New Year. ``cycle_qty`` is the cycle counter at the start of the
  open period (``-`` the period quantity before the reset once the reset is passed).
- A bill period uses the version in force on its first day for bounds, fixed and minimum charges;
  chronological tariffs price each day's energy with the version in force that day; pro-rata tariffs
  price the whole period with its first day's version.
- Tier bounds of a period come from the row of the month the period starts in, times the days of the
  period when per day ("kWh daily").
- chronological: intervals in time order fill tiers; an interval crossing a bound is split at it.
  pro_rata: at the end of each day the period-to-date total ``Q`` (on top of ``cycle_qty``) is split
  into tiers and each tier's quantity is shared among periods in proportion to their period-to-date use.
- Period cost to date = energy + fixed (monthly fixed from the period's first day with data, per-day
  fixed for each day with data) + minimum top-up ``max(0, minimum - energy - fixed)`` on the period's
  last calendar day. The day's charge = period cost to date after the day − cost already charged,
  so daily charges sum exactly to the period bill.

Outputs (:class:`Priced`): one row per (meter, local day) and one row per (meter, bill period touched)
with *period-to-date* lines ``line_quantity/line_amount[B, P, T]`` (they include earlier runs' part
of the period, carried in ``state``), and the state to carry forward. Splitting the input into days or
batches and carrying the state gives the same money as one run.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from zoneinfo import ZoneInfo

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from meters.errors import MetersError

from .tariff_arrays import TariffTables

NO_TIME = np.iinfo(np.int64).min
NO_TIME_ = NO_TIME  # module constant frozen into the kernels
CHUNK = 256         # meters a kernel thread prices with one set of scratch arrays and caches
PF = 384            # grid: prefetch the intervals this far ahead (4 days of 15 minutes) while a day is priced
ERRORS = {1: "intervals are not strictly increasing in time (or precede the carried state)",
          2: "a quantity is negative or NaN",
          3: "no tariff version is in force on a day"}


# -- calendar (proleptic Gregorian, days since 1970-01-01) ----------------------------------------
@njit(cache=True)
def civil_from_days(z):
    """(year, month, day) of day number ``z`` (H. Hinnant's algorithm)."""
    z = z + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return y, m, d


@njit(cache=True)
def days_from_civil(y, m, d):
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True)
def bill_period(day, billing_day):
    """(first day, last day) of the account's bill period holding ``day``: ``billing_day`` of one
    month to the day before it in the next (1 = the calendar month), whatever the tier cycle."""
    y, m, d = civil_from_days(day)
    if billing_day > 1:
        if d < billing_day:
            if m > 1:
                m -= 1
            else:
                y, m = y - 1, 12
        ny, nm = (y, m + 1) if m < 12 else (y + 1, 1)
        return days_from_civil(y, m, billing_day), days_from_civil(ny, nm, billing_day) - 1
    ny, nm = (y, m + 1) if m < 12 else (y + 1, 1)
    return days_from_civil(y, m, 1), days_from_civil(ny, nm, 1) - 1


@njit(cache=True)
def version_on(f, day, fam_start, fam_count, v_from_day):
    """Version index of family ``f`` in force on ``day`` (-1 when none)."""
    v = -1
    for k in range(fam_count[f]):
        if v_from_day[fam_start[f] + k] <= day:
            v = fam_start[f] + k
        else:
            break
    return v


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Ask the CPU to bring ``arr[idx]``'s cache line in (a hint: no load, no fault, any index)."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(arr, idx), codegen


@njit(cache=True, inline="always")
def _day_end(i, hi, lo, day, grid, t0, step, lts):
    """First index in (i, hi] whose local day is after ``day`` (grid: interval j at t0 + (j - lo) * step)."""
    if grid:
        k = lo + ((day + 1) * 86400 - t0 + step - 1) // step
        return min(max(k, i + 1), hi)
    k = i + 1
    lim = (day + 1) * 86400
    while k < hi and lts[k] < lim:
        k += 1
    return k


@njit(cache=True, inline="always")
def _run_sum(qty, j, je):
    """Sum and minimum of ``qty[j:je]`` in index order (no reassociation: the same bits in every
    process and every compiled specialisation, so a Dask shard equals the single-process run).
    Four intervals a step, still one addition after the other; unsigned indices spare the loop
    numba's negative-index code, and no slice is made (a view's reference count is an atomic
    operation, which holds up the pricing loop around it)."""
    n = je - j
    base = np.uint64(j)
    s = 0.0
    mn = 0.0
    for k in range(0, n - 3, 4):
        u = base + np.uint64(k)
        v0, v1, v2, v3 = qty[u], qty[u + np.uint64(1)], qty[u + np.uint64(2)], qty[u + np.uint64(3)]
        s = (((s + v0) + v1) + v2) + v3
        a = v0 if v0 < v1 else v1
        b = v2 if v2 < v3 else v3
        a = a if a < b else b
        mn = a if a < mn else mn
    for k in range(n - n % 4, n):
        x = qty[base + np.uint64(k)]
        s += x
        mn = x if x < mn else mn
    return s, mn


@njit(cache=True, inline="always")
def _close_bill(row, qty, energy, fixed, top, cost, closed, lq, la, m,
                b_qty, b_energy, b_fixed, b_min, b_total, b_closed, b_lq, b_la):
    """Write bill row ``row`` from its last priced day: the figures and meter ``m``'s period-to-date
    lines (no array views: numba's reference counts are atomic)."""
    b_qty[row] = qty
    b_energy[row] = energy
    b_fixed[row] = fixed
    b_min[row] = top
    b_total[row] = cost
    b_closed[row] = closed
    for p in range(lq.shape[1]):
        for t in range(lq.shape[2]):
            b_lq[row, p, t] = lq[m, p, t]
            b_la[row, p, t] = la[m, p, t]


# -- kernels ---------------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def count_rows(offsets, lts, t0, step, meter_tariff, billing_day, fam_cycle, out_days, out_bills):
    """Per meter: number of local days and bill periods in its intervals."""
    grid = lts.size == 0
    for m in prange(offsets.size - 1):
        lo, hi = offsets[m], offsets[m + 1]
        nd = 0
        nb = 0
        last_ps = -(1 << 40)
        last_pe = -(1 << 40)
        i = lo
        while i < hi:
            lt = t0 + (i - lo) * step if grid else lts[i]
            day = lt // 86400
            nd += 1
            if not last_ps <= day <= last_pe:
                last_ps, last_pe = bill_period(day, billing_day[m])
                nb += 1
            i = _day_end(i, hi, lo, day, grid, t0, step, lts)
        out_days[m] = nd
        out_bills[m] = nb


@njit(cache=True, parallel=True)
def price_kernel(offsets, lts, t0, step, qty, meter_tariff, billing_day,
                 fam_start, fam_count, fam_cycle, fam_method, v_from_day, schedule, bounds, bound_per_day,
                 prices, n_tiers, fixed, fixed_per_day, minimum,
                 s_bill_start, s_cycle_key, s_cycle_qty, s_pq, s_lq, s_la, s_fixed, s_days, s_charged, s_last, s_year_end,
                 day_off, bill_off,
                 d_meter, d_day, d_qty, d_amt, d_total,
                 b_meter, b_start, b_end, b_version, b_qty, b_energy, b_fixed, b_min, b_total, b_closed,
                 b_lq, b_la, err, size):
    """Price every interval; state arrays ``s_*`` are updated in place (see module docstring).
    Parallel over chunks of ``size`` meters: a chunk's scratch arrays, hour runs, bill periods and
    versions are made once and reused by its meters."""
    M = offsets.size - 1
    for c in prange((M + size - 1) // size):
        _price_meters(c * size, min(M, (c + 1) * size), offsets, lts, t0, step, qty, meter_tariff, billing_day,
                      fam_start, fam_count, fam_cycle, fam_method, v_from_day, schedule, bounds, bound_per_day,
                      prices, n_tiers, fixed, fixed_per_day, minimum,
                      s_bill_start, s_cycle_key, s_cycle_qty, s_pq, s_lq, s_la, s_fixed, s_days, s_charged, s_last,
                      s_year_end, day_off, bill_off,
                      d_meter, d_day, d_qty, d_amt, d_total,
                      b_meter, b_start, b_end, b_version, b_qty, b_energy, b_fixed, b_min, b_total, b_closed,
                      b_lq, b_la, err)


@njit(cache=True)
def _price_meters(m0, m1, offsets, lts, t0, step, qty, meter_tariff, billing_day,
                  fam_start, fam_count, fam_cycle, fam_method, v_from_day, schedule, bounds, bound_per_day,
                  prices, n_tiers, fixed, fixed_per_day, minimum,
                  s_bill_start, s_cycle_key, s_cycle_qty, s_pq, s_lq, s_la, s_fixed, s_days, s_charged, s_last, s_year_end,
                  day_off, bill_off,
                  d_meter, d_day, d_qty, d_amt, d_total,
                  b_meter, b_start, b_end, b_version, b_qty, b_energy, b_fixed, b_min, b_total, b_closed,
                  b_lq, b_la, err):
    """Meters ``m0:m1`` one after the other (the body of :func:`price_kernel`). What depends only on the
    day, the billing day or the tariff (hour runs, bill period, month, versions) is kept from meter to
    meter while it still holds: a night's meters share their day."""
    grid = lts.size == 0
    P = prices.shape[1]
    T = prices.shape[2]
    dq = np.zeros((P, T))
    bnd = np.empty(T)
    hoff = np.zeros(25, np.int64)   # grid: intervals of a day ending before each local hour
    run_p = np.empty((2, 24), np.int64)  # weekdays' and weekends' runs of hours with one tariff period:
    run_h = np.empty((2, 24), np.int64)  # period, end hour
    n_run = np.zeros(2, np.int64)
    run_key = np.full(2, -1, np.int64)   # (version, weekend, month) each was made for
    day0 = 0
    jd0 = 0
    if grid:
        phase = (t0 % 86400) % step
        for hh in range(25):
            x = hh * 3600 - phase
            hoff[hh] = (x + step - 1) // step if x > 0 else 0
        day0 = t0 // 86400          # every meter's first interval: its day, and how far into it
        jd0 = (t0 - day0 * 86400) // step
    c_bd = -1                       # the last bill period computed: billing day, first and last day,
    c_ps = 1                        # and the year and month of its first day
    c_pe = 0
    c_y = 0
    c_mo = 0
    cv_f = -1                       # the version in force on the first day c_ps of family cv_f
    cv_ps = 0
    cv_vp = -1
    pv_f = -1                       # chronological: the version of family pv_f in force on [pv_lo, pv_hi)
    pv_lo = 1
    pv_hi = 0
    dv = 0
    m_lo = 1                        # the calendar month [m_lo, m_hi] of the current day
    m_hi = 0
    mo = 1
    yr = 0
    for m in range(m0, m1):
        lo, hi = offsets[m], offsets[m + 1]
        f = meter_tariff[m]
        cyc = fam_cycle[f]
        prorata = fam_method[f] == 1
        bd = billing_day[m]
        drow = day_off[m] - 1
        brow = bill_off[m] - 1
        last = s_last[m]
        fx = s_fixed[m]             # the period's fixed charges, days with data and cost charged
        ndays = s_days[m]
        chg = s_charged[m]
        ps_cur = -(1 << 40)
        pe = -(1 << 40)
        vp = 0
        c0 = 0.0
        ptot = 0.0
        for p in range(P):
            ptot += s_pq[m, p]
        t = 0
        energy = 0.0                # the last day's bill figures, written to the bill row once its
        top = 0.0                   # period (or the meter) is done
        cost = 0.0
        closed = False
        i = lo
        day = 0
        jd = -(1 << 50)                 # grid: virtual index of the current day's first interval
        while i < hi:
            k = hi                      # CSR: the hour runs find the day's end
            if grid:                    # grid: virtual index of the day's first interval, then table lookups
                if i == jd + hoff[24]:  # the next day (no division: a grid's days follow each other)
                    day += 1
                    jd = i
                elif i == lo:
                    day = day0
                    jd = lo - jd0
                else:
                    lt = t0 + (i - lo) * step
                    day = lt // 86400
                    jd = i - (lt - day * 86400) // step
                k = min(jd + hoff[24], hi)
                for x in range(k + PF, k + PF + hoff[24], 8):
                    _prefetch(qty, x)
            else:
                day = lts[i] // 86400
            # -- open the day (and the bill period when it changes)
            if ps_cur <= day <= pe:
                ps, pe_new = ps_cur, pe
            else:
                if not (bd == c_bd and c_ps <= day <= c_pe):
                    c_ps, c_pe = bill_period(day, bd)
                    c_bd = bd
                    c_y, c_mo, _ = civil_from_days(c_ps)
                ps, pe_new = c_ps, c_pe
            if ps != ps_cur:
                if bill_off[m] <= brow < bill_off[m + 1]:
                    _close_bill(brow, ptot, energy, fx, top, cost, closed, s_lq, s_la, m,
                                b_qty, b_energy, b_fixed, b_min, b_total, b_closed, b_lq, b_la)
                bs = s_bill_start[m]
                if ps < bs:
                    err[m] = 1
                    break
                if ps != bs:
                    ck = ps
                    if cyc == 1:
                        ck = c_y
                    if ck == s_cycle_key[m]:
                        if bs >= 0:
                            s_cycle_qty[m] += ptot
                    else:
                        s_cycle_qty[m] = 0.0
                    s_cycle_key[m] = ck
                    s_year_end[m] = -1.0
                    s_bill_start[m] = ps
                    for p in range(P):
                        s_pq[m, p] = 0.0
                        for tt in range(T):
                            s_lq[m, p, tt] = 0.0
                            s_la[m, p, tt] = 0.0
                    fx = 0.0
                    ndays = 0
                    chg = 0.0
                    ptot = 0.0
                ps_cur = ps
                pe = pe_new
                if not (f == cv_f and ps == cv_ps):
                    cv_vp = version_on(f, ps, fam_start, fam_count, v_from_day)
                    cv_f = f
                    cv_ps = ps
                vp = cv_vp
                if vp < 0:
                    err[m] = 3
                    break
                c0 = s_cycle_qty[m]
                mrow = c_mo - 1
                scale = float(pe - ps + 1) if bound_per_day[vp] else 1.0
                for j in range(T):
                    bnd[j] = bounds[vp, mrow, j] * scale
                t = 0
                while t < T - 1 and c0 + ptot >= bnd[t]:
                    t += 1
                brow += 1
                if brow >= bill_off[m + 1]:     # never write outside this meter's rows (bad input)
                    err[m] = 1
                    break
                b_meter[brow] = m
                b_start[brow] = ps
                b_end[brow] = pe
                b_version[brow] = vp
            pv = vp
            if not prorata:
                if not (f == pv_f and pv_lo <= day < pv_hi):
                    dv = version_on(f, day, fam_start, fam_count, v_from_day)
                    if dv < 0:
                        err[m] = 3
                        break
                    pv_f = f
                    pv_lo = v_from_day[dv]
                    pv_hi = v_from_day[dv + 1] if dv + 1 < fam_start[f] + fam_count[f] else (1 << 40)
                pv = dv
            if not m_lo <= day <= m_hi:
                y, mo, dd = civil_from_days(day)
                yr = y
                m_lo = day - dd + 1
                m_hi = days_from_civil(y + 1, 1, 1) - 1 if mo == 12 else days_from_civil(y, mo + 1, 1) - 1
            if cyc == 1 and yr != s_cycle_key[m]:
                # 1 January inside the bill period: the annual counter resets here. The counter reached
                # is kept (pro rata splits both segments); cycle_qty = -(period quantity so far), so the
                # counter c0 + ptot restarts at 0 and the next period's opening adds the period total.
                s_year_end[m] = c0 + ptot
                s_cycle_qty[m] = -ptot
                s_cycle_key[m] = yr
                c0 = -ptot
                t = 0
            wk = 1 if (day + 3) % 7 >= 5 else 0
            key = (pv * 2 + wk) * 12 + mo - 1
            if key != run_key[wk]:      # a new day type: its runs of hours, kept while days repeat it
                run_key[wk] = key
                n_runs = 0
                h = 0
                while h < 24:
                    p = schedule[pv, wk, mo - 1, h]
                    h1 = h + 1
                    while h1 < 24 and schedule[pv, wk, mo - 1, h1] == p:
                        h1 += 1
                    run_p[wk, n_runs] = p
                    run_h[wk, n_runs] = h1
                    n_runs += 1
                    h = h1
                n_run[wk] = n_runs
            n_runs = n_run[wk]
            dbase = day * 86400
            if not dbase <= last < dbase + 86400:  # not the continuation of a day begun earlier
                ndays += 1
                if fixed_per_day[vp]:
                    fx += fixed[vp]
                elif ndays == 1:
                    fx = fixed[vp]
            c = c0 + ptot
            dtot = 0.0
            bad = False
            # -- the intervals of the day
            # runs of hours with the same tariff period: sum each run's intervals, split only at tier bounds
            j = i
            r = 0
            while r < n_runs and j < k:
                p = run_p[wk, r]
                h1 = run_h[wk, r]
                r += 1
                lim = dbase + h1 * 3600
                if grid:
                    je = min(max(jd + hoff[h1], j), k)
                    if je > j:
                        if t0 + (j - lo) * step <= last:
                            bad = True
                            err[m] = 1
                            break
                        last = t0 + (je - 1 - lo) * step
                else:
                    je = j
                    while je < k and lts[je] < lim:
                        x = lts[je]
                        if x > last:
                            last = x
                        elif not (je > lo and x > last - 3600 and x // 86400 == last // 86400):
                            # (allowed: clocks going back — the same wall-clock hour again, less
                            # than an hour back within the day, after an interval of this run)
                            bad = True
                            err[m] = 1
                            break
                        je += 1
                    if bad:
                        break
                if je == j:
                    continue
                s, mn = _run_sum(qty, j, je)
                if mn < 0.0 or s != s:
                    bad = True
                    err[m] = 2
                    break
                dtot += s
                if prorata:
                    dq[p, 0] += s
                elif c + s <= bnd[t]:
                    dq[p, t] += s
                    c += s
                else:           # the run crosses a bound: interval by interval (the tier's sum kept in a register)
                    acc = dq[p, t]
                    for x in range(j, je):
                        rem = qty[x]
                        if 0.0 < rem < bnd[t] - c:  # (the loop below's one step when the interval fits)
                            acc += rem
                            c += rem
                            continue
                        while rem > 0.0:
                            room = bnd[t] - c
                            if room <= 0.0 and t < T - 1:
                                dq[p, t] = acc
                                t += 1
                                acc = dq[p, t]
                                continue
                            take = rem if rem < room else room
                            acc += take
                            c += take
                            rem -= take
                            if rem > 0.0 and t < T - 1:
                                dq[p, t] = acc
                                t += 1
                                acc = dq[p, t]
                    dq[p, t] = acc
                j = je
            if bad:
                break
            # -- close the day
            ptot += dtot
            if prorata:
                Q = 0.0
                for p in range(P):
                    s_pq[m, p] += dq[p, 0]
                    dq[p, 0] = 0.0
                    Q += s_pq[m, p]
                # the counter's segment(s) this period: [c0, c0 + Q], or across a New-Year reset
                # [R - Qa, R] then [0, Q - Qa] with R = s_year_end, Qa = -c0
                a1, b1, a2, b2 = c0, c0 + Q, 0.0, 0.0
                if s_year_end[m] >= 0.0:
                    a1, b1, a2, b2 = s_year_end[m] + c0, s_year_end[m], 0.0, c0 + Q
                lower = 0.0
                for tt in range(T):
                    upper = bnd[tt]
                    a = a1 if a1 > lower else lower
                    b = b1 if b1 < upper else upper
                    tq = b - a if b > a else 0.0
                    a = a2 if a2 > lower else lower
                    b = b2 if b2 < upper else upper
                    tq += b - a if b > a else 0.0
                    for p in range(P):
                        share = tq * s_pq[m, p] / Q if Q > 0.0 else 0.0
                        s_lq[m, p, tt] = share
                        s_la[m, p, tt] = share * prices[vp, p, tt]
                    lower = upper
                energy = 0.0
                for p in range(P):
                    for tt in range(T):
                        energy += s_la[m, p, tt]
            else:               # the day's cells into the lines, the lines summed in the same order
                energy = 0.0
                for p in range(P):
                    for tt in range(T):
                        x = dq[p, tt]
                        if x != 0.0:
                            s_pq[m, p] += x
                            s_lq[m, p, tt] += x
                            s_la[m, p, tt] += x * prices[pv, p, tt]
                            dq[p, tt] = 0.0
                        energy += s_la[m, p, tt]
            closed = day == pe
            top = 0.0
            if closed:
                top = minimum[vp] - energy - fx
                if top < 0.0:
                    top = 0.0
            cost = energy + fx + top
            drow += 1
            if drow >= day_off[m + 1]:
                err[m] = 1
                break
            d_meter[drow] = m
            d_day[drow] = day
            d_qty[drow] = dtot
            d_amt[drow] = cost - chg
            d_total[drow] = cost
            chg = cost
            i = j
        if err[m]:
            dq[:, :] = 0.0              # (a day broken off may have left quantities for the next meter)
        if bill_off[m] <= brow < bill_off[m + 1]:
            _close_bill(brow, ptot, energy, fx, top, cost, closed, s_lq, s_la, m,
                        b_qty, b_energy, b_fixed, b_min, b_total, b_closed, b_lq, b_la)
        s_last[m] = last
        s_fixed[m] = fx
        s_days[m] = ndays
        s_charged[m] = chg


@njit(cache=True, parallel=True)
def block_bills_kernel(qty, month0, meter_tariff, yearly, tab, fixed, minimum, cycle_qty, out):
    """Monthly block bills: ``qty[A, K]`` monthly totals of consecutive calendar months starting at
    0-based calendar month ``month0``. ``tab[F, 12, 2T - 1]`` per tariff and month: the tier bounds
    ``b_1 … b_{T-1}``, the price steps ``p_t − p_{t+1}`` and the top price ``p_T``, so that the cost of
    the counter moving from ``c`` to ``e`` is ``p_T (e − c) + Σ_t (p_t − p_{t+1}) (min(e, b_t) − min(c, b_t))``
    (branch-free). Annual tariffs (``yearly[F]``) carry ``cycle_qty[A]`` across months and reset it in
    January. ``out[A, K]`` receives the bills (with the monthly fixed charge and minimum)."""
    K = qty.shape[1]
    T1 = (tab.shape[2] - 1) // 2
    for a in prange(qty.shape[0]):
        f = meter_tariff[a]
        yr = yearly[f]
        c = cycle_qty[a] if yr else 0.0
        mo = month0
        fx = fixed[f]
        mn = minimum[f]
        tf = tab[f]
        for j in range(K):
            if mo == 12:
                mo = 0
                c = 0.0
            if not yr:
                c = 0.0
            q = qty[a, j]
            e = c + q
            amt = fx + q * tf[mo, 2 * T1]
            if T1 == 2:         # the common two bounds, unrolled (the same operations in the same order)
                b = tf[mo, 0]
                amt += ((e if e < b else b) - (c if c < b else b)) * tf[mo, 2]
                b = tf[mo, 1]
                amt += ((e if e < b else b) - (c if c < b else b)) * tf[mo, 3]
            else:
                for t in range(T1):
                    b = tf[mo, t]
                    amt += ((e if e < b else b) - (c if c < b else b)) * tf[mo, T1 + t]
            out[a, j] = amt if amt > mn else mn
            c = e
            mo += 1


# -- state -------------------------------------------------------------------------------------------
@dataclass
class CycleState:
    """Per-meter counters carried between runs (one row per meter of the run, same order)."""

    bill_start: np.ndarray   # int64 first day of the open bill period, -1 = none
    cycle_key: np.ndarray    # int64 tier cycle key: year (annual) or period start day
    cycle_qty: np.ndarray    # float64 cycle counter at the start of the open period
    period_qty: np.ndarray   # float64 [M, P] period-to-date quantity by tariff period
    line_qty: np.ndarray     # float64 [M, P, T] period-to-date lines
    line_amount: np.ndarray  # float64 [M, P, T]
    fixed: np.ndarray        # float64 fixed charges to date in the period
    days: np.ndarray         # int32 days with data in the period
    charged: np.ndarray      # float64 period cost already charged (sum of daily amounts)
    last_ts: np.ndarray      # int64 last local interval time priced (NO_TIME = none)
    year_end: np.ndarray     # float64 annual counter reached at a New-Year reset inside the open period (-1 = none)

    @classmethod
    def empty(cls, n_meters: int, tables: TariffTables) -> "CycleState":
        P, T = tables.max_periods, tables.max_tiers
        return cls(np.full(n_meters, -1, np.int64), np.full(n_meters, -1, np.int64), np.zeros(n_meters),
                   np.zeros((n_meters, P)), np.zeros((n_meters, P, T)), np.zeros((n_meters, P, T)),
                   np.zeros(n_meters), np.zeros(n_meters, np.int32), np.zeros(n_meters),
                   np.full(n_meters, NO_TIME, np.int64), np.full(n_meters, -1.0))

    @classmethod
    def seeded(cls, tables: TariffTables, cycle_key, cycle_qty) -> "CycleState":
        """Fresh meters whose tier cycle ``cycle_key`` (year for annual tariffs, first day number of
        the period otherwise) already holds ``cycle_qty``: e.g. 2 900 kWh by November."""
        cycle_qty = np.asarray(cycle_qty, float)
        s = cls.empty(cycle_qty.size, tables)
        s.cycle_key[:] = cycle_key
        s.cycle_qty[:] = cycle_qty
        return s

    def copy(self) -> "CycleState":
        return CycleState(*(getattr(self, f.name).copy() for f in fields(self)))

    def take(self, idx) -> "CycleState":
        """The rows ``idx`` (e.g. to split meters into batches)."""
        return CycleState(*(getattr(self, f.name)[idx] for f in fields(self)))

    @classmethod
    def concat(cls, parts: list["CycleState"]) -> "CycleState":
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def to_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Priced:
    """Engine output. Day numbers are local days since 1970-01-01 (:func:`billing.tariff_arrays.day_date`)."""

    day_meter: np.ndarray     # int32 meter index
    day: np.ndarray           # int64 local day number
    day_quantity: np.ndarray
    day_amount: np.ndarray    # the day's charge (float64, before rounding)
    day_total: np.ndarray     # period cost to date after the day
    bill_meter: np.ndarray
    bill_start: np.ndarray    # first day of the bill period
    bill_end: np.ndarray      # last day (inclusive)
    bill_version: np.ndarray  # version index into tables.versions
    bill_quantity: np.ndarray
    bill_energy: np.ndarray
    bill_fixed: np.ndarray
    bill_minimum: np.ndarray  # minimum-charge top-up (only once the period's last day is priced)
    bill_total: np.ndarray    # energy + fixed + minimum top-up, period to date
    bill_closed: np.ndarray   # True when the period's last calendar day was priced
    line_quantity: np.ndarray  # [B, P, T] period to date
    line_amount: np.ndarray
    state: CycleState


def local_times(ts_utc, tz) -> np.ndarray:
    """Local wall-clock seconds (as if UTC) of the instant 1 s before each interval end ``ts_utc``
    (int64 Unix seconds or datetime64); handles DST offsets changing at any quarter hour."""
    ts = np.asarray(ts_utc)
    if ts.dtype.kind == "M":
        ts = ts.astype("datetime64[s]").astype(np.int64)
    ts = ts.astype(np.int64) - 1
    if ts.size == 0:
        return ts
    try:
        zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    except (KeyError, ValueError):
        raise MetersError(f"unknown time zone {tz!r}") from None
    q0, q1 = int(ts.min()) // 900, int(ts.max()) // 900
    qs = np.arange(q0, q1 + 1, dtype=np.int64)
    if qs.size > 2_000_000:
        raise MetersError("local_times: the time span is too long (over 57 years)")
    # offsets at every quarter hour of the span, probed only at the hours (and quarters) where it changes
    offs = _quarter_offsets(q0, q1, zone)
    return ts + offs[ts // 900 - q0]


def _quarter_offsets(q0: int, q1: int, zone) -> np.ndarray:
    def off(q):
        return int(dt.datetime.fromtimestamp(q * 900, dt.timezone.utc).astimezone(zone).utcoffset().total_seconds())
    n = q1 - q0 + 1
    out = np.empty(n, np.int64)
    # probe days; refine a day whose start and end offsets differ
    step = 96
    a = 0
    oa = off(q0)
    while a < n:
        b = min(a + step, n - 1)
        ob = off(q0 + b)
        if ob == oa:
            out[a:b + 1] = oa
        else:
            for j in range(a, b + 1):
                out[j] = off(q0 + j)
        a, oa = b + 1, off(q0 + b + 1) if b + 1 < n else ob
    return out


def _prepare(tables: TariffTables, n_meters, meter_tariff, state, billing_day, out=None):
    meter_tariff = np.ascontiguousarray(meter_tariff, np.int32)
    if meter_tariff.shape != (n_meters,):
        raise MetersError(f"meter_tariff has {meter_tariff.size} entries for {n_meters} meters")
    if n_meters and (meter_tariff.min() < 0 or meter_tariff.max() >= len(tables.ids)):
        raise MetersError("meter_tariff refers to a tariff that is not in the tables")
    if billing_day is None:
        billing_day = np.ones(n_meters, np.int32)
    billing_day = np.ascontiguousarray(billing_day, np.int32)
    if billing_day.shape != (n_meters,) or (n_meters and (billing_day.min() < 1 or billing_day.max() > 28)):
        raise MetersError("billing_day must hold one value 1..28 per meter")
    if state is not None and state.bill_start.shape != (n_meters,):
        raise MetersError(f"state has {state.bill_start.size} meters, the input {n_meters}")
    if state is not None and state.line_qty.shape[1:] != (tables.max_periods, tables.max_tiers):
        raise MetersError("state was made for other tariff tables (periods × tiers differ)")
    if out is None:
        state = CycleState.empty(n_meters, tables) if state is None else state.copy()
    else:  # copied into the earlier result's state arrays (the same arrays when state is out.state)
        src = CycleState.empty(n_meters, tables) if state is None else state
        bufs = []
        for f in fields(CycleState):
            a = getattr(src, f.name)
            b = _reuse(getattr(out.state, f.name), a.shape, a.dtype)
            np.copyto(b, a)
            bufs.append(b)
        state = CycleState(*bufs)
    return meter_tariff, billing_day, state


def _reuse(old, shape, dtype) -> np.ndarray:
    """The first ``shape[0]`` rows of ``old`` (or of the array it is the leading rows of) when it can
    hold them (same dtype and row shape), else a new array (not zeroed: the kernel writes every row it
    returns)."""
    base = getattr(old, "base", None)
    if isinstance(base, np.ndarray) and base.dtype == old.dtype and base.shape[1:] == old.shape[1:] \
            and base.flags.c_contiguous and base.ctypes.data == old.ctypes.data:
        old = base
    if isinstance(old, np.ndarray) and old.dtype == dtype and old.shape[1:] == tuple(shape[1:]) \
            and old.shape[0] >= shape[0] and old.flags.c_contiguous:
        return old[: shape[0]]
    return np.empty(shape, dtype)


def _run(tables, offsets, lts, t0, step, qty, meter_tariff, billing_day, state, reuse=None) -> Priced:
    M = offsets.size - 1
    nd = np.zeros(M, np.int64)
    nb = np.zeros(M, np.int64)
    if lts.size == 0 and M:  # a grid: every meter has the same days, its bill periods follow its billing day
        bds, which = np.unique(billing_day, return_inverse=True)
        nd1, nb1 = np.zeros(bds.size, np.int64), np.zeros(bds.size, np.int64)
        count_rows(np.arange(bds.size + 1, dtype=np.int64) * int(offsets[1]), lts, t0, step, np.zeros(bds.size, np.int32), bds,
                   tables.fam_cycle, nd1, nb1)
        nd[:], nb[:] = nd1[which], nb1[which]
    else:
        count_rows(offsets, lts, t0, step, meter_tariff, billing_day, tables.fam_cycle, nd, nb)
    day_off = np.zeros(M + 1, np.int64)
    bill_off = np.zeros(M + 1, np.int64)
    np.cumsum(nd, out=day_off[1:])
    np.cumsum(nb, out=bill_off[1:])
    D, B = int(day_off[-1]), int(bill_off[-1])
    P, T = tables.max_periods, tables.max_tiers
    shapes = [((D,), np.int32), ((D,), np.int64)] + [((D,), np.float64)] * 3 \
        + [((B,), np.int32), ((B,), np.int64), ((B,), np.int64), ((B,), np.int32)] + [((B,), np.float64)] * 5 \
        + [((B,), np.bool_), ((B, P, T), np.float64), ((B, P, T), np.float64)]
    names = [f.name for f in fields(Priced)][:-1]
    out = Priced(*(_reuse(getattr(reuse, n, None), sh, dt_) for n, (sh, dt_) in zip(names, shapes)), state)
    err = np.zeros(M, np.int8)
    s = state
    price_kernel(offsets, lts, t0, step, qty, meter_tariff, billing_day, *tables.kernel_args(),
                 s.bill_start, s.cycle_key, s.cycle_qty, s.period_qty, s.line_qty, s.line_amount, s.fixed,
                 s.days, s.charged, s.last_ts, s.year_end, day_off, bill_off,
                 out.day_meter, out.day, out.day_quantity, out.day_amount, out.day_total,
                 out.bill_meter, out.bill_start, out.bill_end, out.bill_version, out.bill_quantity,
                 out.bill_energy, out.bill_fixed, out.bill_minimum, out.bill_total, out.bill_closed,
                 out.line_quantity, out.line_amount, err, min(CHUNK, max(1, M // (4 * get_num_threads()))))
    bad = np.flatnonzero(err)
    if bad.size:
        m = int(bad[0])
        raise MetersError(f"meter #{m} (and {bad.size - 1} more): {ERRORS[int(err[m])]}")
    return out


def price_intervals(tables: TariffTables, offsets, local_ts, quantity, meter_tariff, *,
                    state: CycleState | None = None, billing_day=None, out: Priced | None = None) -> Priced:
    """Price intervals in CSR layout (see the module docstring). ``local_ts`` from :func:`local_times`.
    ``out``: an earlier result whose arrays are overwritten and returned (their leading rows) when they
    are large enough — no fresh pages for the kernel to fault in; it may be the result ``state`` is from."""
    offsets = np.ascontiguousarray(offsets, np.int64)
    lts = np.ascontiguousarray(local_ts, np.int64)
    qty = np.ascontiguousarray(quantity, np.float64)
    if lts.shape != qty.shape or lts.ndim != 1:
        raise MetersError("local_ts and quantity must be 1-D arrays of the same length")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != qty.size \
            or np.any(np.diff(offsets) < 0):
        raise MetersError("offsets must rise from 0 to the number of intervals")
    M = offsets.size - 1
    meter_tariff, billing_day, state = _prepare(tables, M, meter_tariff, state, billing_day, out)
    if qty.size == 0:
        lts = np.zeros(1, np.int64)  # never read; keeps the kernel in CSR mode
    return _run(tables, offsets, lts, 0, 1, qty, meter_tariff, billing_day, state, out)


def price_grid(tables: TariffTables, quantity, first_end_local: int, step_s: int, meter_tariff, *,
               state: CycleState | None = None, billing_day=None, out: Priced | None = None) -> Priced:
    """Price a dense ``quantity[M, N]`` matrix whose interval ``j`` ends at local wall-clock second
    ``first_end_local + j * step_s`` for every meter (fixed UTC offset zones such as Asia/Shanghai).
    ``out``: as for :func:`price_intervals`."""
    qty = np.ascontiguousarray(quantity, np.float64)
    if qty.ndim != 2:
        raise MetersError("quantity must be a 2-D [meter, interval] matrix")
    if step_s <= 0 or 86400 % step_s:
        raise MetersError(f"step_s {step_s} must divide a day")
    M, N = qty.shape
    meter_tariff, billing_day, state = _prepare(tables, M, meter_tariff, state, billing_day, out)
    offsets = np.arange(M + 1, dtype=np.int64) * N
    return _run(tables, offsets, np.zeros(0, np.int64), int(first_end_local) - 1, int(step_s), qty.reshape(-1),
                meter_tariff, billing_day, state, out)


def block_bills(tables: TariffTables, quantity, first_month: dt.date, meter_tariff, cycle_qty=None,
                out=None) -> np.ndarray:
    """Monthly bills ``[A, K]`` from monthly totals ``quantity[A, K]`` of K consecutive calendar months
    from ``first_month``, for single-period block tariffs (first version of each; chronological tiers,
    monthly fixed charge and minimum). ``cycle_qty[A]``: annual counters before ``first_month``."""
    qty = np.ascontiguousarray(quantity, np.float64)
    A = qty.shape[0]
    mt = np.ascontiguousarray(meter_tariff, np.int32)
    cq = np.zeros(A) if cycle_qty is None else np.ascontiguousarray(cycle_qty, np.float64)
    if out is None:
        out = np.empty_like(qty)
    F, T = len(tables.ids), tables.max_tiers
    v = tables.fam_start
    sched = tables.sched[v]
    first = sched[:, 0, :, 0]                                            # [F, 12] the month's period
    used = np.unique(mt)
    if np.any(sched[used] != first[used][:, None, :, None]) or np.any(tables.fixed_per_day[v][used]):
        raise MetersError("block_bills takes tariffs with one period per month (seasons, no time of use) "
                          "and a monthly fixed charge")
    pr = tables.prices[v[:, None], first]                                # [F, 12, T]
    tab = np.empty((F, 12, 2 * T - 1))
    tab[:, :, : T - 1] = tables.bounds[v, :, : T - 1]
    tab[:, :, T - 1: 2 * T - 2] = pr[:, :, :-1] - pr[:, :, 1:]
    tab[:, :, 2 * T - 2] = pr[:, :, -1]
    block_bills_kernel(qty, first_month.month - 1, mt, tables.fam_cycle == 1, tab, tables.fixed[v],
                       tables.minimum[v], cq, out)
    return out
