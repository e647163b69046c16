"""Plain-Python reference of the VEE kernel (:mod:`billing.vee`): tests hold the numba kernel equal to
it, benchmarks time against it. Not shipped."""
from __future__ import annotations

import math

import numpy as np

from billing.vee import (ACTUAL, AVG_WEIGHT, C_DISCARDED, C_DUPLICATE, ESTIMATED, GAP, GAP_OPEN, NEGATIVE, NO_BASE, NO_DATA, N_COUNTS, OK, REPLACEMENT, ROLLOVER, SOURCE, SPIKE, SUBSTITUTED, TRUEUP)


def vee_reference(offsets, pos, reg, qty, qlen, src_est, base_pos, base_reg, avg, pending, reg_max,
                  limit, step, n_slots):
    """Plain-Python reference of :func:`billing.vee.vee_kernel` (same inputs, same outputs), written per meter
    with lists and dicts for readability."""
    n_m = len(offsets) - 1
    q = [[0.0] * n_slots for _ in range(n_m)]
    quality = [[ACTUAL] * n_slots for _ in range(n_m)]
    flag = [[OK] * n_slots for _ in range(n_m)]
    out_pos, out_reg, out_avg, out_pend, out_step = [], [], [], [], []
    counts = [0] * N_COUNTS
    for m in range(n_m):
        rows = list(range(offsets[m], offsets[m + 1]))
        lim, est = float(limit[m]), max(float(avg[m]), 0.0)
        filled: dict[int, bool] = {}

        def put(s, value, qual, fl):
            q[m][s], quality[m][s], flag[m][s] = value, qual, fl
            filled[s] = True

        seen_q: set = set()
        last = None
        for i in rows:
            if reg[i] >= 0:
                continue
            if last is not None and pos[i] == last:
                counts[C_DUPLICATE] += 1
                continue
            last = pos[i]
            seen_q.add(i)
            if not 0.0 < pos[i] <= n_slots:
                continue
            end = math.ceil(pos[i]) - 1
            k = max(1, round(qlen[i]))
            for s in range(end - k + 1, end + 1):
                if 0 <= s < n_slots:
                    q[m][s] += qty[i] / k
                    if src_est[i]:
                        quality[m][s], flag[m][s] = ESTIMATED, SOURCE
                    filled[s] = True
        for s in list(filled):
            if q[m][s] > lim:
                put(s, est, ESTIMATED, SPIKE)
        readings: list[tuple[int, int]] = []
        for i in rows:
            if reg[i] < 0:
                continue
            p = round(pos[i])
            if readings and readings[-1][0] == p:
                counts[C_DUPLICATE] += 1
                continue
            readings.append((p, int(reg[i])))
        base = None if base_pos[m] <= NO_BASE else (float(base_pos[m]), int(base_reg[m]))
        pend = float(pending[m])
        today = [p for p, _ in readings if 0 < p <= n_slots]
        chain = ([base[0]] if base is not None else []) + today
        gaps = [int(b - a) for a, b in zip(chain, chain[1:])]
        known = ([int(step[m])] if step[m] > 0 else []) + gaps
        out_step.append(min(known) if known else int(step[m]))
        native = min(known) if known else 1
        spiked: set[int] = set()
        for j, (p, r) in enumerate(readings):
            if p > n_slots:
                break
            if p <= 0:
                if base is None:
                    base = (float(p), r)
                continue
            if base is None:
                for s in range(p):
                    if s not in filled:
                        put(s, est, ESTIMATED, NO_DATA)
                base = (float(p), r)
                continue
            bp, br = base
            gap = p - bp
            delta = float(r - br)
            rmax = int(reg_max[m])
            if delta < 0 and rmax > 0 and br <= rmax and rmax - br + r <= lim * gap:
                delta, how = float(rmax - br + r), ROLLOVER
            elif delta < 0:
                how = NEGATIVE if -delta <= lim * gap else REPLACEMENT
            elif delta > lim * gap:
                nxt = readings[j + 1] if j + 1 < len(readings) else None
                if nxt is None or nxt[0] > n_slots or not 0 <= nxt[1] - r <= lim * (nxt[0] - p):
                    counts[C_DISCARDED] += 1
                    spiked.add(p - 1)
                    continue
                how = REPLACEMENT
            else:
                how = OK
            first = max(int(bp), 0)
            if how == REPLACEMENT:
                for s in range(first, p):
                    put(s, est, ESTIMATED, REPLACEMENT)
                base, pend = (float(p), r), 0.0
                continue
            if how == NEGATIVE:
                for s in range(first, p):
                    put(s, 0.0, SUBSTITUTED, NEGATIVE)
                base = (float(p), br)
                continue
            if bp < 0:
                share, qual, fl = max(delta - pend, 0.0) / (p - first), ESTIMATED, TRUEUP
                pend = 0.0
            elif gap <= native:
                share, qual, fl = delta / gap, ACTUAL, how
            else:
                share, qual, fl = delta / gap, ESTIMATED, GAP
            for s in range(first, p):
                if s in spiked:
                    put(s, share, ESTIMATED, SPIKE)
                else:
                    put(s, share, qual, fl)
            base = (float(p), r)
        for s in range(n_slots):
            if s not in filled:
                if base is not None and s >= base[0]:
                    put(s, est, ESTIMATED, GAP_OPEN)
                    pend += est
                else:
                    put(s, est, ESTIMATED, NO_DATA)
        actual = [q[m][s] for s in range(n_slots) if quality[m][s] == ACTUAL]
        for s in range(n_slots):
            counts[flag[m][s]] += 1
        new_avg = float(avg[m])
        if actual and len(actual) * 4 >= n_slots:
            mean = sum(actual) / len(actual)
            new_avg = mean if avg[m] < 0 else (1.0 - AVG_WEIGHT) * avg[m] + AVG_WEIGHT * mean
        out_avg.append(new_avg)
        out_pos.append(base[0] - n_slots if base is not None else NO_BASE)
        out_reg.append(base[1] if base is not None else int(base_reg[m]))
        out_pend.append(pend)
    return (np.array(q, dtype=np.float64).reshape(n_m, n_slots),
            np.array(quality, dtype=np.int8).reshape(n_m, n_slots),
            np.array(flag, dtype=np.int8).reshape(n_m, n_slots),
            np.array(out_pos, dtype=np.float64), np.array(out_reg, dtype=np.int64),
            np.array(out_avg, dtype=np.float64), np.array(out_pend, dtype=np.float64),
            np.array(out_step, dtype=np.int64), np.array(counts, dtype=np.int64))
