"""Exact money columns: int64 cents ↔ Arrow ``decimal128(18, 2)`` without Python objects."""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meters.schemas import MONEY


def money(cents) -> pa.Array:
    """int64 cents → ``decimal128(18, 2)`` (the unscaled value of a decimal(…, 2) *is* the cents)."""
    c = np.ascontiguousarray(cents, dtype=np.int64)
    buf = np.empty((len(c), 2), np.int64)
    buf[:, 0] = c
    buf[:, 1] = c >> 63  # sign extension into the high word
    return pa.Array.from_buffers(MONEY, len(c), [None, pa.py_buffer(buf)])


def cents(column, null: int = 0) -> np.ndarray:
    """A ``decimal128(…, 2)`` column → int64 cents (nulls → ``null``)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], MONEY)
    if column.type != MONEY:
        column = column.cast(MONEY)
    n = len(column)
    if n == 0:
        return np.zeros(0, np.int64)
    raw = np.frombuffer(column.buffers()[1], dtype=np.int64).reshape(-1, 2)
    out = raw[column.offset: column.offset + n, 0].copy()
    if column.null_count:
        out[np.asarray(column.is_null())] = null
    return out


def to_cents(value) -> int:
    """Decimal / str / int → cents (exact; more than 2 decimals is an error for the caller)."""
    return int((Decimal(str(value)) * 100).to_integral_exact())


def fmt(cents_value: int) -> str:
    """12345 → '123.45' (sign kept)."""
    sign = "-" if cents_value < 0 else ""
    c = abs(int(cents_value))
    return f"{sign}{c // 100}.{c % 100:02d}"


def fmt_column(cents_values) -> pa.Array:
    """:func:`fmt` of every value of an int64 cents array, as an Arrow string column."""
    return pc.binary_join_element_wise(*fmt_parts(cents_values), "")


_CENTS = pa.array([f"{k:02d}" for k in range(100)], pa.string())


def fmt_parts(cents_values) -> list:
    """:func:`fmt_column` as parts of a join (Arrow string arrays and str constants), for a text
    built in one ``binary_join_element_wise`` (the sign only where a value is negative)."""
    c = np.asarray(cents_values, np.int64)
    a = np.abs(c)
    whole, frac = pa.array(a // 100).cast(pa.string()), _CENTS.take(pa.array(a % 100))
    negative = c < 0
    return ([pc.if_else(pa.array(negative), "-", "")] if negative.any() else []) + [whole, ".", frac]
