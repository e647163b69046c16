"""meters.readings: deduplicated reads in Python and in DuckDB agree, first received wins."""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from meters.readings import Window, dedup_table, first_received, read_readings, readings_view_sql

UTC = dt.timezone.utc
T0 = int(dt.datetime(2026, 11, 23, tzinfo=UTC).timestamp())


def _rows(meter, ts, reg, received_ms, sender="s"):
    n = len(meter)
    return pa.table({
        "meter_id": pa.array(meter, pa.int64()),
        "ts": pa.array(np.asarray(ts, np.int64), pa.int64()).cast(pa.timestamp("s", tz="UTC")),
        "register_milli": pa.array(reg, pa.int64()),
        "sender": pa.array([sender] * n),
        "received_at": pa.array(np.asarray(received_ms, np.int64)).cast(pa.timestamp("ms", tz="UTC")),
    })


def _write_by_day(lake, table):
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    days = [lake.local_day(dt.datetime.fromtimestamp(int(t), UTC)).isoformat() for t in ts]
    for day in sorted(set(days)):
        mask = pa.array([d == day for d in days])
        lake.write("readings", table.filter(mask), day)


def _reference(meter, ts, received):
    best = {}
    for i, key in enumerate(zip(meter, ts)):
        if key not in best or received[i] < received[best[key]]:
            best[key] = i
    return [best[k] for k in sorted(best)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 5), st.integers(0, 3)), max_size=40))
def test_first_received_matches_reference(rows):
    meter = np.array([r[0] for r in rows], np.int64)
    ts = np.array([r[1] for r in rows], np.int64)
    rec = np.array([r[2] for r in rows], np.int64)
    got = first_received(meter, ts, rec)
    want = _reference(meter.tolist(), ts.tolist(), rec.tolist())
    assert [(meter[i], ts[i], rec[i]) for i in got] == [(meter[i], ts[i], rec[i]) for i in want]


def test_read_readings_dedups_across_files_and_filters(lake):
    # two files in the same day: the second repeats two readings (a redelivery, received later)
    a = _rows([1, 1, 2], [T0 + 900, T0 + 1800, T0 + 900], [10, 20, 30], [1000, 1000, 1000])
    b = _rows([1, 2, 3], [T0 + 1800, T0 + 900, T0 + 900], [99, 99, 40], [5000, 5000, 5000], "late")
    _write_by_day(lake, a)
    _write_by_day(lake, b)
    start = dt.datetime.fromtimestamp(T0, UTC)
    out = read_readings(lake, start, start + dt.timedelta(days=1))
    assert out.column_names == ["meter_id", "ts", "register_milli", "quantity_milli", "interval_s",
                                "quality", "sender", "received_at"]
    assert out.column("meter_id").to_pylist() == [1, 1, 2, 3]
    assert out.column("register_milli").to_pylist() == [10, 20, 30, 40]
    part = read_readings(lake, start + dt.timedelta(seconds=1800), start + dt.timedelta(days=1),
                         meter_min=1, meter_max=2)
    assert part.column("register_milli").to_pylist() == [20]
    assert read_readings(lake, start, start).num_rows == 0


def test_read_readings_spans_local_days(lake):
    # Asia/Shanghai: 2026-11-23T16:00Z is local midnight, so these rows land in two partitions
    ts = [T0 + 15 * 3600, T0 + 17 * 3600, T0 + 17 * 3600]
    _write_by_day(lake, _rows([7, 7, 7], ts, [1, 2, 3], [1, 2, 3]))
    assert lake.partitions("readings") == ["2026-11-23", "2026-11-24"]
    start = dt.datetime.fromtimestamp(T0, UTC)
    out = read_readings(lake, start.isoformat(), (start + dt.timedelta(days=2)).isoformat())
    assert out.column("register_milli").to_pylist() == [1, 2]


def test_window_reads_blocks_as_read_readings(lake):
    # compacted partitions of small row groups, two days: each meter range read block after block
    # (row groups skipped, sliced, kept for the next block) gives read_readings' rows
    rng = np.random.default_rng(7)
    start = dt.datetime.fromtimestamp(T0 + 16 * 3600, UTC)      # local midnight of 2026-11-24
    for d in range(2):
        meter = np.sort(rng.choice(np.arange(1, 41), 120))
        ts = T0 + 16 * 3600 + d * 86400 + rng.integers(0, 86400, 120)
        t = _rows(meter, ts, rng.integers(0, 10**6, 120), np.zeros(120)).sort_by([("meter_id", "ascending"),
                                                                                  ("ts", "ascending")])
        t = dedup_table(t)
        w = lake.staged_writer("readings", (lake.local_day(start) + dt.timedelta(days=d)).isoformat(),
                               file_name="compact-test.parquet", stats=["meter_id", "ts"], row_group_size=7)
        w.write(t)
        w.finish()
    cols = ["meter_id", "ts", "register_milli"]
    lo, hi = start + dt.timedelta(hours=20), start + dt.timedelta(days=1, hours=3)
    key = [("meter_id", "ascending"), ("ts", "ascending")]
    for size in (1, 3, 7, 50):
        window = Window(lake, lo, hi, cols)
        bounds = [(m, min(m + size - 1, 40)) for m in range(1, 41, size)]
        for r in bounds + bounds[::-1]:      # in meter order, then backwards
            got = window.read(r)
            assert all(p.column_names == cols for p in got)
            got = pa.concat_tables(got).sort_by(key) if got else None
            want = read_readings(lake, lo, hi, *r).select(cols)
            assert (got.num_rows if got else 0) == want.num_rows
            if want.num_rows:
                assert got.equals(want.sort_by(key).cast(got.schema))
    regs = [p.column("register_milli") for p in Window(lake, lo, hi, ["register_milli"]).read((5, 30))]
    assert sorted(x for r in regs for x in r.to_pylist()) == \
        sorted(read_readings(lake, lo, hi, 5, 30).column("register_milli").to_pylist())


def test_view_sql_equals_read_readings(lake):
    rng = np.random.default_rng(1)
    n = 3000
    meter = rng.integers(1, 50, n)
    ts = T0 + 900 * rng.integers(0, 200, n)
    rec = rng.integers(0, 10**6, n)
    tab = _rows(meter, ts, np.arange(n), rec)
    for chunk in range(3):
        _write_by_day(lake, tab.slice(chunk * 1000, 1000))
    start = dt.datetime.fromtimestamp(T0 - 86400, UTC)
    want = read_readings(lake, start, start + dt.timedelta(days=5))
    con = duckdb.connect()
    got = con.execute(f"SELECT meter_id, epoch(ts)::BIGINT, register_milli, register FROM "
                      f"({readings_view_sql(lake)}) ORDER BY 1, 2").fetchall()
    assert len(got) == want.num_rows
    assert [g[2] for g in got] == want.column("register_milli").to_pylist()
    assert all(g[3] == g[2] / 1000 for g in got)


def test_view_sql_on_empty_lake(lake):
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM ({readings_view_sql(lake)})").fetchone() == (0,)
