"""VEE — validation, estimation and editing of one billing day's readings, per meter.

Pure core: arrays in, arrays out. Positions are measured in grid slots from the local start of the
day (slot ``k`` covers ``(k, k+1]``; a reading at position ``p`` closes slot ``p-1``). Quantities are
in thousandths of the meter's unit (Wh, litres), like ``readings.register_milli``.

Per meter, with the carried last register (``base``) from the previous day:

- readings snap to the nearest grid instant; duplicates (same snapped position) are dropped, the
  first received wins; a reading at or before the day's start only serves as the base of a meter
  that has none;
- the meter's reading step is inferred: the smallest gap between its readings (carried from day to
  day as ``step``), so an hourly or daily meter is not a gap every hour;
- a register reading at position ``p`` after the base at ``b`` covers the slots ``b..p-1``:
  up to the meter's step → ``actual`` (shared equally); longer → the difference shared linearly,
  ``estimated`` / ``gap``;
  if the base is older than today (the register stopped on an earlier day, whose slots were billed
  from the profile), the difference minus what was already estimated is shared over today's
  slots: ``estimated`` / ``trueup``;
- a drop that the register maximum explains within the physical limit → ``rollover`` (actual);
- a drop larger than the limit → meter ``replacement``: slots estimated from the profile, the new
  register becomes the base; a small drop → ``negative``: 0, ``substituted``, the base is kept;
- a rise beyond ``limit × slots`` → ``spike``: the reading is discarded (its slots are filled when the
  register resumes), unless the next reading continues from it (a permanent jump, handled like a
  replacement);
- slots after the last reading → the profile (the meter's recent average), ``estimated`` /
  ``gap_open``; the amount is carried as ``pending`` and trued-up when the register resumes;
- interval rows (imports: quantity + interval length) fill their slots directly (``actual``, or
  ``estimated`` / ``source`` when the source flags them estimated); a quantity above the limit is a
  ``spike`` and replaced by the profile.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

QUALITY_NAMES = ("actual", "estimated", "substituted")
ACTUAL, ESTIMATED, SUBSTITUTED = 0, 1, 2
FLAG_NAMES = ("", "gap", "gap_open", "spike", "rollover", "replacement", "negative", "trueup",
              "no_data", "source")
OK, GAP, GAP_OPEN, SPIKE, ROLLOVER, REPLACEMENT, NEGATIVE, TRUEUP, NO_DATA, SOURCE = range(10)
# outcome counters returned by the kernels: one per flag, then these
N_COUNTS = len(FLAG_NAMES) + 2
C_DUPLICATE = len(FLAG_NAMES)       # readings dropped as duplicates
C_DISCARDED = len(FLAG_NAMES) + 1   # register readings discarded (spikes)
COUNT_NAMES = FLAG_NAMES[:0] + ("ok",) + FLAG_NAMES[1:] + ("duplicate", "discarded")
AVG_WEIGHT = 0.25  # weight of today's actual mean in the carried profile average
NO_BASE = -1.0e18  # sentinel position: no carried register


@njit(cache=True)
def _snap(pos, reg, lo, hi, rp, rr, nr, counts):
    """Register rows ``lo:hi`` snapped to the grid and appended to ``rp``/``rr`` from ``nr``, a reading at
    the position of the one before dropped (duplicate). Returns (readings now, interval rows seen)."""
    n_iv = 0
    for i in range(lo, hi):
        r = reg[i]
        if r < 0:
            n_iv += 1
            continue
        p = int(round(pos[i]))
        if nr > 0 and rp[nr - 1] == p:
            counts[C_DUPLICATE] += 1
            continue
        rp[nr] = p
        rr[nr] = r
        nr += 1
    return nr, n_iv


@njit(cache=True)
def _interval_rows(pos, reg, qty, qlen, src_est, lo, hi, last_qp, n_slots, qm, qualm, flagm, filled, counts):
    """Interval rows ``lo:hi`` fill their slots (a part without interval columns: rows of 0); a row at
    the position of the interval row before (``last_qp``) is a duplicate. Returns the last position."""
    has_q = qty.size > 0
    for i in range(lo, hi):
        if reg[i] >= 0:
            continue
        if pos[i] == last_qp:
            counts[C_DUPLICATE] += 1
            continue
        last_qp = pos[i]
        if pos[i] <= 0.0 or pos[i] > n_slots:
            continue
        e = int(math.ceil(pos[i])) - 1
        k = max(1, int(round(qlen[i]))) if has_q else 1
        v = qty[i] / k if has_q else 0 / k
        est = has_q and src_est[i]
        for s in range(max(e - k + 1, 0), min(e + 1, n_slots)):
            if not filled[s]:       # the slot's first value: outputs are not zeroed beforehand
                qm[s] = 0.0
                qualm[s] = ACTUAL
                flagm[s] = OK
                filled[s] = True
            qm[s] += v
            if est:
                flagm[s] = SOURCE
                qualm[s] = ESTIMATED
    return last_qp


@njit(cache=True)
def _in_order(pos, reg, qty, qlen, src_est, lo, hi, x_pos, x_reg, x_qty, x_qlen, x_est, x_lo, x_hi, rp, rr, n_slots,
              qm, qualm, flagm, filled, counts):
    """A meter's rows ``lo:hi``, then ``x_lo:x_hi`` of the other arrays, in that order: the readings
    snapped into ``rp``/``rr``, the interval rows filling their slots (a part without interval columns:
    rows of 0). Returns (readings, interval rows)."""
    nr, n1 = _snap(pos, reg, lo, hi, rp, rr, 0, counts)
    nr, n2 = _snap(x_pos, x_reg, x_lo, x_hi, rp, rr, nr, counts)
    if n1 + n2:
        last = _interval_rows(pos, reg, qty, qlen, src_est, lo, hi, -1.0e300, n_slots, qm, qualm, flagm, filled,
                              counts)
        _interval_rows(x_pos, x_reg, x_qty, x_qlen, x_est, x_lo, x_hi, last, n_slots, qm, qualm, flagm, filled, counts)
    return nr, n1 + n2


@njit(cache=True)
def _vee_meter(m, rp, rr, nr, intervals, base_pos, base_reg, avg, pending, reg_max, limit, step, n_slots,
               qm, qualm, flagm, nb_pos, nb_reg, n_avg, n_pend, n_step, counts, filled, spiked):
    """One meter's day from its readings ``rp``/``rr[:nr]`` (snapped, in position order) and the slots
    its interval rows filled (``filled``; ``intervals``: any). Writes every slot of ``qm``, ``qualm``,
    ``flagm`` (the meter's rows of the outputs)."""
    lim = limit[m]
    est = max(avg[m], 0.0)
    if intervals:
        for s in range(n_slots):
            if filled[s] and qm[s] > lim:
                qm[s] = est
                qualm[s] = ESTIMATED
                flagm[s] = SPIKE
    bp = base_pos[m]
    br = base_reg[m]
    pend = pending[m]
    has_base = bp > NO_BASE
    # the meter's reading step: the smallest gap seen (carried, or between today's readings)
    native = step[m] if step[m] > 0 else 1 << 40
    prev = bp if has_base else NO_BASE
    for j in range(nr):
        if rp[j] > n_slots:
            break
        if rp[j] > 0:
            if prev > NO_BASE and rp[j] - prev < native:
                native = int(rp[j] - prev)
            prev = float(rp[j])
    n_step[m] = native if native < (1 << 40) else step[m]
    if native >= (1 << 40):
        native = 1
    n_spiked = 0
    for j in range(nr):
        p, r = rp[j], rr[j]
        if p > n_slots:
            break
        if p <= 0:  # closes an earlier day: only a baseline for a meter without one
            if not has_base:
                bp, br, has_base = float(p), r, True
            continue
        if not has_base:
            for s in range(0, p):
                if not filled[s]:
                    qm[s] = est
                    qualm[s] = ESTIMATED
                    flagm[s] = NO_DATA
                    filled[s] = True
            bp, br, has_base = float(p), r, True
            continue
        gap = p - bp
        delta = float(r - br)
        how = OK
        if delta < 0 and reg_max[m] > 0 and br <= reg_max[m] and reg_max[m] - br + r <= lim * gap:
            delta = float(reg_max[m] - br + r)
            how = ROLLOVER
        elif delta < 0:
            how = NEGATIVE if -delta <= lim * gap else REPLACEMENT
        elif delta > lim * gap:
            jump = False
            if j + 1 < nr and rp[j + 1] <= n_slots:
                d2 = rr[j + 1] - r
                jump = d2 >= 0 and d2 <= lim * (rp[j + 1] - p)
            if not jump:
                counts[C_DISCARDED] += 1
                spiked[p - 1] = True
                n_spiked += 1
                continue
            how = REPLACEMENT
        first = max(int(bp), 0)
        if how == REPLACEMENT or how == NEGATIVE:
            for s in range(first, p):
                qm[s] = est if how == REPLACEMENT else 0.0
                qualm[s] = ESTIMATED if how == REPLACEMENT else SUBSTITUTED
                flagm[s] = how
                filled[s] = True
            if how == REPLACEMENT:
                br = r
                pend = 0.0
            bp = float(p)
            continue
        if bp < 0:
            share = max(delta - pend, 0.0) / (p - first)
            qual, fl = ESTIMATED, TRUEUP
            pend = 0.0
        else:
            share = delta / gap
            qual = ACTUAL if gap <= native else ESTIMATED
            fl = how if gap <= native else GAP
        for s in range(first, p):
            qm[s] = share
            qualm[s] = qual
            flagm[s] = fl
            filled[s] = True
        if n_spiked:
            for s in range(first, p):
                if spiked[s]:
                    qualm[s] = ESTIMATED
                    flagm[s] = SPIKE
        bp, br = float(p), r
    if n_spiked:
        spiked[:] = False
    # slots still empty: the profile
    for s in range(n_slots):
        if not filled[s]:
            qm[s] = est
            qualm[s] = ESTIMATED
            if has_base and s >= bp:
                flagm[s] = GAP_OPEN
                pend += est
            else:
                flagm[s] = NO_DATA
    # carry
    n_ok = 0
    n_act = 0
    s_act = 0.0
    for s in range(n_slots):
        f = flagm[s]
        if f == OK:         # (the common flag counted in a register, not through memory)
            n_ok += 1
        else:
            counts[f] += 1
        if qualm[s] == ACTUAL:
            n_act += 1
            s_act += qm[s]
    counts[OK] += n_ok
    if n_act * 4 >= n_slots and n_act > 0:
        mean = s_act / n_act
        n_avg[m] = mean if avg[m] < 0 else (1.0 - AVG_WEIGHT) * avg[m] + AVG_WEIGHT * mean
    nb_pos[m] = bp - n_slots if has_base else NO_BASE
    nb_reg[m] = br
    n_pend[m] = pend
    filled[:] = False   # (for the next meter)


@njit(cache=True)
def _steady_meter(m, pos, reg, lo, hi, x_pos, x_reg, x_lo, x_hi, base_pos, base_reg, avg, pending, limit, step,
                  n_slots, qm, qualm, flagm, nb_pos, nb_reg, n_avg, n_pend, n_step, counts):
    """The common meter's day in one pass over its rows ``lo:hi``, then ``x_lo:x_hi`` of the other
    arrays (in position order): its step one slot (carried, or none carried and today's smallest gap
    one slot or no gap at all), its base at the day's start, register readings only, each within the
    limit and not below the one before (``ok`` or ``gap``, then ``gap_open``) — what :func:`_vee_meter`
    gives such a meter. Returns False, having changed nothing but slots of ``qm``/``qualm``/``flagm``,
    for any other meter."""
    lim = limit[m]
    est = max(avg[m], 0.0)
    bp = base_pos[m]
    br = base_reg[m]
    has_base = bp > NO_BASE
    b = -1          # the base's slot, once it is the day's start
    n_ok = 0
    n_gap = 0
    n_dup = 0
    s_act = 0.0
    n1 = hi - lo
    last = 0
    known = step[m] > 0     # the step: carried (one slot), else today's smallest gap must be one slot
    from_base = has_base    # (a gap counts from a carried base, or from today's readings)
    gaps = False
    for k in range(n1 + x_hi - x_lo):
        if k < n1:
            x, r = pos[lo + k], reg[lo + k]
        else:
            x, r = x_pos[x_lo + k - n1], x_reg[x_lo + k - n1]
        if r < 0:
            return False
        p = int(round(x))
        if k > 0 and p == last:     # (a row at the position of the reading before: a duplicate)
            n_dup += 1
            continue
        last = p
        if p > n_slots:     # (beyond the day: only its duplicates are counted)
            continue
        if p <= 0:
            if not has_base:
                bp, br, has_base = float(p), r, True
            continue
        if b < 0:
            if not (has_base and bp == 0.0):
                return False
            b = 0
        gap = p - b
        if from_base:
            known = known or gap == 1
            gaps = True
        from_base = True
        delta = float(r - br)
        if delta < 0 or delta > lim * gap:
            return False
        if gap == 1:            # (delta / 1 is delta)
            qm[b] = delta
            qualm[b] = ACTUAL
            flagm[b] = OK
            n_ok += 1
            s_act += delta
        else:
            share = delta / gap
            for s in range(b, p):
                qm[s] = share
                qualm[s] = ESTIMATED
                flagm[s] = GAP
            n_gap += gap
        b = p
        br = r
    if b < 0:
        if not (has_base and bp == 0.0):
            return False
        b = 0
    if gaps and not known:      # (the smallest gap is the step: no slot of today is a gap)
        return False
    pend = pending[m]
    for s in range(b, n_slots):
        qm[s] = est
        qualm[s] = ESTIMATED
        flagm[s] = GAP_OPEN
        pend += est
    counts[OK] += n_ok
    counts[GAP] += n_gap
    counts[GAP_OPEN] += n_slots - b
    counts[C_DUPLICATE] += n_dup
    if n_ok * 4 >= n_slots and n_ok > 0:
        mean = s_act / n_ok
        n_avg[m] = mean if avg[m] < 0 else (1.0 - AVG_WEIGHT) * avg[m] + AVG_WEIGHT * mean
    n_step[m] = 1 if gaps or step[m] > 0 else step[m]
    nb_pos[m] = b - n_slots
    nb_reg[m] = br
    n_pend[m] = pend
    return True


@njit(cache=True)
def _merge_rows(a0, a1, pos, reg, qty, qlen, src_est, b0, b1, x_pos, x_reg, x_qty, x_qlen, x_est,
                s_pos, s_reg, s_qty, s_qlen, s_est):
    """Merge one meter's rows of two parts by position (ties: the first part first) into scratch."""
    k = 0
    i, j = a0, b0
    a_q = qty.size > 0      # a part without interval columns (register rows only): 0, 0.0, False
    b_q = x_qty.size > 0
    while i < a1 or j < b1:
        if j >= b1 or (i < a1 and pos[i] <= x_pos[j]):
            s_pos[k], s_reg[k] = pos[i], reg[i]
            if a_q:
                s_qty[k], s_qlen[k], s_est[k] = qty[i], qlen[i], src_est[i]
            else:
                s_qty[k], s_qlen[k], s_est[k] = 0, 0.0, False
            i += 1
        else:
            s_pos[k], s_reg[k] = x_pos[j], x_reg[j]
            if b_q:
                s_qty[k], s_qlen[k], s_est[k] = x_qty[j], x_qlen[j], x_est[j]
            else:
                s_qty[k], s_qlen[k], s_est[k] = 0, 0.0, False
            j += 1
        k += 1
    return k


@njit(cache=True, nogil=True)   # (the next block is read meanwhile)
def vee_kernel_parts(offsets, pos, reg, qty, qlen, src_est, x_offsets, x_pos, x_reg, x_qty, x_qlen, x_est,
                     base_pos, base_reg, avg, pending, reg_max, limit, step, n_slots):
    """Validate and estimate every meter's day. Rows come in two parts (e.g. the day's partition and
    the neighbouring days' edge readings), each grouped by meter (``offsets``, CSR) and sorted by
    position then arrival; a meter's rows of both parts are taken in position order (ties: the first
    part's first). ``reg`` < 0 marks an interval (quantity) row. A part of register rows only may pass
    empty ``qty``/``qlen``/``src_est`` (read as 0, 0.0, False: no 1.7 GB of zeros for a 97M-row day).

    Returns (q, quality, flag, new_base_pos, new_base_reg, new_avg, new_pending, new_step, counts)."""
    n_m = offsets.shape[0] - 1
    q = np.empty((n_m, n_slots))       # every slot is written (vee_kernel_into)
    quality = np.empty((n_m, n_slots), np.int8)
    flag = np.empty((n_m, n_slots), np.int8)
    out = (q, quality, flag, base_pos.copy(), base_reg.copy(), avg.copy(), pending.copy(), step.copy(),
           np.zeros(N_COUNTS, np.int64))
    vee_kernel_into(offsets, pos, reg, qty, qlen, src_est, x_offsets, x_pos, x_reg, x_qty, x_qlen, x_est,
                    base_pos, base_reg, avg, pending, reg_max, limit, step, n_slots, *out)
    return out


@njit(cache=True, nogil=True)
def vee_kernel_into(offsets, pos, reg, qty, qlen, src_est, x_offsets, x_pos, x_reg, x_qty, x_qlen, x_est,
                    base_pos, base_reg, avg, pending, reg_max, limit, step, n_slots,
                    q, quality, flag, nb_pos, nb_reg, n_avg, n_pend, n_step, counts):
    """:func:`vee_kernel_parts` into given outputs: every slot of ``q``, ``quality``, ``flag`` is written;
    ``nb_pos`` … ``n_step`` come holding the carried values, ``counts`` zeros. Serial, one meter after
    the other: a meter's rows of the two parts are read where they are when one part's come after
    the other's (the night's edge readings), merged into scratch only when they interleave."""
    n_m = offsets.shape[0] - 1
    widest = 1
    for m in range(n_m):
        widest = max(widest, offsets[m + 1] - offsets[m] + x_offsets[m + 1] - x_offsets[m])
    filled = np.zeros(n_slots, np.bool_)     # all False between meters (_vee_meter clears it)
    spiked = np.zeros(n_slots, np.bool_)
    rp = np.empty(widest, np.int64)
    rr = np.empty(widest, np.int64)
    s_pos = np.empty(widest)
    s_reg = np.empty(widest, reg.dtype)
    s_qty = np.empty(widest, qty.dtype)
    s_qlen = np.empty(widest)
    s_est = np.empty(widest, np.bool_)
    for m in range(n_m):
        qm, qualm, flagm = q[m], quality[m], flag[m]
        a0, a1 = offsets[m], offsets[m + 1]
        b0, b1 = x_offsets[m], x_offsets[m + 1]
        first = b1 == b0 or a1 == a0 or pos[a1 - 1] <= x_pos[b0]    # the first part's rows, then the second's
        second = not first and x_pos[b1 - 1] < pos[a0]                # the second part's, then the first's
        k = 0
        if not (first or second):                     # interleaved: merged into scratch
            k = _merge_rows(a0, a1, pos, reg, qty, qlen, src_est, b0, b1, x_pos, x_reg, x_qty, x_qlen, x_est,
                            s_pos, s_reg, s_qty, s_qlen, s_est)
        if step[m] <= 1:
            if first:
                done = _steady_meter(m, pos, reg, a0, a1, x_pos, x_reg, b0, b1, base_pos, base_reg, avg, pending,
                                     limit, step, n_slots, qm, qualm, flagm, nb_pos, nb_reg, n_avg, n_pend, n_step, counts)
            elif second:
                done = _steady_meter(m, x_pos, x_reg, b0, b1, pos, reg, a0, a1, base_pos, base_reg, avg, pending,
                                     limit, step, n_slots, qm, qualm, flagm, nb_pos, nb_reg, n_avg, n_pend, n_step, counts)
            else:
                done = _steady_meter(m, s_pos, s_reg, 0, k, s_pos, s_reg, k, k, base_pos, base_reg, avg, pending,
                                     limit, step, n_slots, qm, qualm, flagm, nb_pos, nb_reg, n_avg, n_pend, n_step, counts)
            if done:
                continue
        # the general path
        if b1 == b0:   # the first part's rows only (a part without interval columns: its register rows)
            nr, n_iv = _snap(pos, reg, a0, a1, rp, rr, 0, counts)
            n_iv = n_iv if qty.size > 0 else 0
            if n_iv:
                _interval_rows(pos, reg, qty, qlen, src_est, a0, a1, -1.0e300, n_slots, qm, qualm, flagm, filled,
                               counts)
        elif first:
            nr, n_iv = _in_order(pos, reg, qty, qlen, src_est, a0, a1, x_pos, x_reg, x_qty, x_qlen, x_est, b0, b1,
                                 rp, rr, n_slots, qm, qualm, flagm, filled, counts)
        elif second:
            nr, n_iv = _in_order(x_pos, x_reg, x_qty, x_qlen, x_est, b0, b1, pos, reg, qty, qlen, src_est, a0, a1,
                                 rp, rr, n_slots, qm, qualm, flagm, filled, counts)
        else:
            nr, n_iv = _in_order(s_pos, s_reg, s_qty, s_qlen, s_est, 0, k, s_pos, s_reg, s_qty, s_qlen, s_est, k, k,
                                 rp, rr, n_slots, qm, qualm, flagm, filled, counts)
        _vee_meter(m, rp, rr, nr, n_iv > 0, base_pos, base_reg, avg, pending, reg_max, limit, step, n_slots,
                   qm, qualm, flagm, nb_pos, nb_reg, n_avg, n_pend, n_step, counts, filled, spiked)


def vee_kernel(offsets, pos, reg, qty, qlen, src_est, base_pos, base_reg, avg, pending, reg_max, limit,
               step, n_slots):
    """:func:`vee_kernel_parts` with all rows in one part."""
    e = np.zeros(0)
    return vee_kernel_parts(offsets, pos, reg, qty, qlen, src_est, np.zeros_like(offsets), e,
                            np.zeros(0, reg.dtype), np.zeros(0, qty.dtype), e, np.zeros(0, np.bool_),
                            base_pos, base_reg, avg, pending, reg_max, limit, step, n_slots)


def merge_parts(offsets, pos, reg, qty, qlen, src_est, x_offsets, x_pos, x_reg, x_qty, x_qlen, x_est):
    """Plain-Python merge of two CSR parts into one (per meter by position, ties: first part first)."""
    out = {k: [] for k in ("pos", "reg", "qty", "qlen", "est")}
    offs = [0]
    for m in range(len(offsets) - 1):
        rows = [(pos[i], 0, i) for i in range(offsets[m], offsets[m + 1])]
        rows += [(x_pos[j], 1, j) for j in range(x_offsets[m], x_offsets[m + 1])]
        rows.sort(key=lambda r: (r[0], r[1]))
        for p, part, i in rows:
            src = (pos, reg, qty, qlen, src_est) if part == 0 else (x_pos, x_reg, x_qty, x_qlen, x_est)
            for k, a, none in zip(out, src, (None, None, 0, 0.0, False)):
                out[k].append(a[i] if len(a) else none)   # empty interval arrays: register rows only
        offs.append(offs[-1] + len(rows))
    return (np.array(offs, np.int64), np.array(out["pos"], np.float64), np.array(out["reg"], np.int64),
            np.array(out["qty"], np.int64), np.array(out["qlen"], np.float64), np.array(out["est"], np.bool_))


def count_dict(counts) -> dict[str, int]:
    """VEE outcome counts by name (slots per flag, plus dropped duplicates and discarded readings)."""
    return {name: int(c) for name, c in zip(COUNT_NAMES, counts)}
