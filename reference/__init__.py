"""Plain-Python reference implementations of the numba kernels, written for obviousness, not speed:
the tariff engine (:mod:`reference.tariff`), VEE (:mod:`reference.vee`) and the simulator's
consumption kernel (:mod:`reference.profiles`). Tests hold the kernels equal to them (hypothesis) and
benchmarks time against them; they are not part of the shipped packages (run from the repository root,
as ``make test`` and ``python -m benchmarks`` do).
"""
