"""A long batch job's allocators: keep freed memory for the next block instead of returning it.

The billing night allocates and frees the same few hundred MB block after block. With Arrow's default
pool (mimalloc) and glibc's defaults the memory goes back to the kernel between blocks and is faulted
in (and zeroed) again for the next one: a third of the night's CPU was the kernel zeroing pages.
:func:`for_batch` makes the process keep it: Arrow allocates from the system allocator, and glibc
serves allocations below ``MMAP_THRESHOLD`` from its heap (not fresh mappings), trims the heap only
above ``TRIM_THRESHOLD`` and grows it ``TOP_PAD`` at a time. It costs resident memory the process
keeps after a peak (the heap is not given back until exit; docs/capacity.md).

Arrow's C++ internals (Parquet encoders and decoders) allocate from the pool chosen when pyarrow is
first imported, whatever :func:`for_batch` sets later: :func:`before_arrow` (called when
:mod:`billing` is imported, as ``meters bill`` does before pyarrow) chooses it through the environment.

Process-wide and applied once. What the user set wins: ``ARROW_DEFAULT_MEMORY_POOL`` keeps Arrow's
pool, and any of glibc's ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``
keeps glibc's settings (the way to opt out). A no-op but for Arrow's pool off glibc Linux.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3   # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 2**31 - 1     # the largest mallopt takes (an int): in effect never trimmed
TOP_PAD = 64 << 20
GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_applied: dict | None = None


def before_arrow() -> None:
    """Have Arrow's C++ default pool be the system allocator, when pyarrow is not imported yet."""
    if "pyarrow" not in sys.modules:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def for_batch() -> dict:
    """Set the process's allocators for a long batch job (once; later calls return the first's
    outcome): ``{"arrow_pool": backend name, "glibc": True when mallopt was set}``."""
    import pyarrow as pa

    global _applied
    if _applied is None:
        if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
            pa.set_memory_pool(pa.system_memory_pool())
        _applied = {"arrow_pool": pa.default_memory_pool().backend_name, "glibc": _glibc()}
    return _applied


def _glibc() -> bool:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in GLIBC_ENV):
        return False
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all([mallopt(p, v) for p, v in settings])
