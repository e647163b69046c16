"""Billing: the nightly run (read → VEE → tariff engine → settlement → write), its tariffs and CLI."""
import os

# The numba kernels' parallel loops run on OpenMP threads, which by default spin while they wait for
# work: on a shared, loaded machine that tripled the VEE kernel's CPU time and doubled its wall time
# (250k meters at load 8: 1.3-1.7 s → 0.42-0.44 s CPU). They sleep instead, unless the caller chose.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Arrow's C++ internals allocate from the pool chosen when pyarrow is first imported: the system
# allocator, as meters/memory.py sets for the night (its Parquet writes kept faulting pages in anew).
from meters import memory as _memory  # noqa: E402

_memory.before_arrow()
