"""Plain-Python reference of the heat-meter kernel (:func:`simulator.heat.heat_block`): tests hold the
numba kernel equal to it. Not shipped."""
from __future__ import annotations

import math

from simulator.heat import SALT_FLOW, SALT_HEAT
from simulator.profiles import uniform_py


def heat_block_py(seed, meter_id, ua, ts, drive_k, supply, ret, interval_s, opening, acc, vol, reg_max,
                  out_e, out_v, out_supply, out_ret):
    """Same arguments and effects as :func:`simulator.heat.heat_block`."""
    n, nk = out_e.shape
    for i in range(n):
        a, v = int(acc[i]), int(vol[i])
        for j in range(nk):
            u = uniform_py(int(seed), int(meter_id[i]), int(ts[j]), SALT_HEAT)
            uf = uniform_py(int(seed), int(meter_id[i]), int(ts[j]), SALT_FLOW)
            jitter = 0.6 * (uf - 0.5) if ret[j] != supply[j] else 0.0
            s = float(supply[j]) + jitter
            r = float(ret[j]) + jitter
            out_supply[i, j] = math.floor(s * 100.0 + 0.5)
            out_ret[i, j] = math.floor(r * 100.0 + 0.5)
            if not (j == 0 and opening):
                q = int(float(ua[i]) * float(drive_k[j]) * (interval_s / 3600.0) * (0.85 + 0.3 * u) + 0.5)
                dk = float(supply[j]) - float(ret[j])
                if q > 0 and dk > 0.0:
                    v += int(q * 0.86 / dk + 0.5)
                a = (a + q) % int(reg_max[i])
            out_e[i, j] = a
            out_v[i, j] = v
        acc[i], vol[i] = a, v
