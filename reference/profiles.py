"""Plain-Python reference of the simulator's consumption kernel (:mod:`simulator.profiles`): tests
hold the numba kernel equal to it. Not shipped."""
from __future__ import annotations

import math

from simulator.profiles import SALT_DAY1, SALT_DAY2, SALT_NOISE, uniform_py


def generate_block_py(seed, meter_id, profile, daily_milli, noise_w, F, ts, dayno, day_idx, opening,
                      acc, reg_max, rep_ts, rep_start, out, day_q, day_state, dayf_state):
    """Plain-Python reference of :func:`simulator.profiles.generate_block` (same arguments, same effects)."""
    n, nk = out.shape
    for i in range(n):
        a = int(acc[i])
        m = int(meter_id[i])
        p = int(profile[i])
        w = float(noise_w[p])
        prev_day = int(day_state[i])
        dayf = float(dayf_state[i])
        for j in range(nk):
            if j == 0 and opening:
                out[i, j] = a
                continue
            d = int(dayno[j])
            if d != prev_day:
                dayf = 0.55 + 0.45 * (uniform_py(int(seed), m, d, SALT_DAY1) + uniform_py(int(seed), m, d, SALT_DAY2))
                prev_day = d
            u = uniform_py(int(seed), m, int(ts[j]), SALT_NOISE)
            q = int(float(daily_milli[i]) * float(F[p, j]) * dayf * ((1.0 - w) - w * math.log(u)) + 0.5)
            if int(rep_ts[i]) == int(ts[j]):
                a = int(rep_start[i])
            a = (a + q) % int(reg_max[i])
            out[i, j] = a
            if day_idx[j] >= 0:
                day_q[i, day_idx[j]] += q
        acc[i] = a
        day_state[i] = prev_day
        dayf_state[i] = dayf
