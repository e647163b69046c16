"""Day numbers ↔ Arrow ``date32`` (:mod:`billing.days`): the zero-cast build equals Arrow's own cast."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from billing.days import NONE_DAY, date_array, day_numbers


@given(st.lists(st.sampled_from([NONE_DAY, 0, -1, 20_422]) | st.integers(-10**5, 10**6), max_size=40),
       st.integers(1, 3))
def test_date_array_equals_cast(days, step):
    d = np.array(days, np.int32)[::step]                    # (a strided view: copied, not read as its buffer)
    got = date_array(d)
    want = pa.array(d, pa.int32(), mask=d == NONE_DAY).cast(pa.date32())
    assert got.type == pa.date32() and got.equals(want) and got.null_count == int((d == NONE_DAY).sum())
    assert (day_numbers(got) == d).all()
    before = got.to_pylist()
    d[:] = 7                                                 # (the array is Arrow's own, not the caller's)
    assert got.to_pylist() == before
