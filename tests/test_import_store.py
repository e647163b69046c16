"""iotools.store: any series lands once per (meter, ts), whatever the repeats, the order or the imports."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from meters.iotools import IMPORT_ID_BASE, IMPORT_ID_SPAN, Parsed, import_meter_id, series_table, store
from meters.lake import init_lake
from meters.readings import read_readings

T0 = 1_763_900_000 // 900 * 900

rows = st.lists(st.tuples(st.sampled_from(["NMI1/E1", "NMI1/B1", "MAC000002", "x"]),
                          st.integers(0, 200), st.integers(0, 10**6)), min_size=1, max_size=60)


def _parsed(rs):
    return Parsed(series_table({
        "external_id": [r[0] for r in rs], "utility": ["electricity"] * len(rs), "unit": ["kWh"] * len(rs),
        "ts": np.array([T0 + 900 * r[1] for r in rs], np.int64), "quantity_milli": [r[2] for r in rs],
        "interval_s": [900] * len(rs), "quality": ["A"] * len(rs)}))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=rows, second=rows)
def test_store_keeps_the_first_row_of_each_meter_and_ts(tmp_path_factory, first, second):
    lake = init_lake(tmp_path_factory.mktemp("lake"))
    a = store(lake, _parsed(first), "csv")
    b = store(lake, _parsed(second), "csv")
    expected: dict = {}
    for ext, k, q in first + second:
        expected.setdefault((import_meter_id(ext, {}), T0 + 900 * k), q)
    got = read_readings(lake, "2000-01-01T00:00:00+00:00", "2100-01-01T00:00:00+00:00")
    pairs = list(zip(got.column("meter_id").to_pylist(), got.column("ts").cast("int64").to_pylist(),
                     got.column("quantity_milli").to_pylist()))
    assert {(m, t): q for m, t, q in pairs} == expected and len(pairs) == len(expected)
    assert a["written"] + b["written"] == len(expected)
    again = store(lake, _parsed(first), "csv")
    assert again["written"] == 0 and again["new_meters"] == 0


def test_import_ids_are_stable_and_in_range():
    ids = {import_meter_id(f"MAC{i:06d}", {}) for i in range(1000)}
    assert len(ids) == 1000 and all(IMPORT_ID_BASE <= i < IMPORT_ID_BASE + IMPORT_ID_SPAN for i in ids)
    a = import_meter_id("NMI1/E1", {})
    assert import_meter_id("NMI1/E1", {}) == a
    assert import_meter_id("NMI1/E1", {a: "someone else"}) == a + 1      # probe past a collision
