"""meters/memory.py: the billing night sets the process's allocators for a long batch job (observed in a
fresh process: Arrow's pool, and glibc serving a 16 MB block from its heap instead of a fresh mapping;
Arrow's C++ internals on the system allocator when billing is imported before pyarrow)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from meters import memory

CHILD = r"""
import ctypes, datetime as dt, json, sys
if sys.argv[2] == "billing-first":
    import billing
from pathlib import Path
import numpy as np
import pyarrow as pa

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2

def mapped_for(nbytes):
    before = libc.mallinfo2().hblkhd
    a = np.ones(nbytes, np.uint8)
    grown = libc.mallinfo2().hblkhd - before
    del a
    return grown

from benchmarks.bench_billing import DAY, build_lake
from billing.batch import bill_day
out = {"pool_before": pa.default_memory_pool().backend_name, "mapped_before": mapped_for(16 << 20)}
lake = build_lake(Path(sys.argv[1]) / "lake", 20)
bill_day(lake, DAY)
out.update(pool_after=pa.default_memory_pool().backend_name, mapped_after=mapped_for(16 << 20),
           mimalloc_used=pa.mimalloc_memory_pool().total_bytes_allocated())
print(json.dumps(out))
"""


def child(tmp_path, first="pyarrow", **env):
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL" and k not in memory.GLIBC_ENV}
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), first], capture_output=True, text=True, check=True,
                         cwd=root, env={**clean, "PYTHONPATH": str(root), **env})
    return json.loads(run.stdout.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_night_keeps_freed_memory_for_the_next_block(tmp_path):
    out = child(tmp_path)
    assert out["pool_before"] != "system" and out["mapped_before"] >= 16 << 20   # the defaults: a fresh mapping
    assert out["pool_after"] == "system" and out["mapped_after"] == 0            # after the night: the heap
    assert out["mimalloc_used"] > 0        # pyarrow imported first: its C++ internals (Parquet) keep mimalloc


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_billing_imported_before_pyarrow_has_arrow_allocate_from_the_system_allocator_throughout(tmp_path):
    out = child(tmp_path, "billing-first")     # as `meters bill` runs
    assert out["pool_before"] == "system" and out["mimalloc_used"] == 0 and out["mapped_after"] == 0


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_what_the_user_set_wins(tmp_path):
    out = child(tmp_path, ARROW_DEFAULT_MEMORY_POOL="mimalloc", MALLOC_TOP_PAD_="131072")
    assert out["pool_after"] == "mimalloc" and out["mapped_after"] >= 16 << 20
