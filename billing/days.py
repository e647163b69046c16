"""Day numbers (days since 1970-01-01; :data:`NONE_DAY` = no date) ↔ dates and Arrow ``date32``."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from .settle import NONE_DAY
from .tariff_arrays import EPOCH, day_number

__all__ = ["EPOCH", "NONE_DAY", "date_array", "day_number", "day_numbers", "from_number"]


def from_number(n) -> dt.date | None:
    return None if n == NONE_DAY else EPOCH + dt.timedelta(days=int(n))


def day_numbers(col) -> np.ndarray:
    """A ``date32`` column → int32 day numbers (nulls → :data:`NONE_DAY`)."""
    return col.cast(pa.int32()).fill_null(NONE_DAY).to_numpy().astype(np.int32)


def date_array(days: np.ndarray) -> pa.Array:
    """int32 day numbers → a ``date32`` array (:data:`NONE_DAY` → null), built on a copy of their
    buffer (no Arrow cast: the date32 values *are* the day numbers)."""
    d = np.array(days, np.int32).reshape(-1)
    none = d == NONE_DAY
    valid = pa.py_buffer(np.packbits(~none, bitorder="little")) if none.any() else None
    return pa.Array.from_buffers(pa.date32(), len(d), [valid, pa.py_buffer(d)])
