"""Compaction never loses or duplicates a row, also with a writer appending at the same time."""
from __future__ import annotations

import datetime as dt
import threading

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.compact import compact, compact_day
from meters.cli import cli
from meters.lake import init_lake
from meters.readings import read_readings, readings_view_sql

UTC = dt.timezone.utc
DAY = "2026-11-23"
T0 = int(dt.datetime(2026, 11, 22, 16, 0, tzinfo=UTC).timestamp())  # local midnight, Asia/Shanghai
START = dt.datetime.fromtimestamp(T0, UTC)
END = START + dt.timedelta(days=1)


def _table(meter, slot, reg, recv):
    return pa.table({
        "meter_id": pa.array(meter, pa.int64()),
        "ts": pa.array(T0 + 900 * (np.asarray(slot, np.int64) + 1)).cast(pa.timestamp("s", tz="UTC")),
        "register_milli": pa.array(reg, pa.int64()),
        "sender": pa.array(["c"] * len(meter)),
        "received_at": pa.array(np.asarray(recv, np.int64)).cast(pa.timestamp("ms", tz="UTC")),
    })


def _expected(tables):
    best = {}
    for t in tables:
        for m, ts, r, rec in zip(*(t.column(c).to_pylist() for c in ("meter_id", "ts", "register_milli", "received_at"))):
            if (m, ts) not in best or rec < best[(m, ts)][1]:
                best[(m, ts)] = (r, rec)
    return {k: v[0] for k, v in best.items()}


def _as_dict(table):
    return dict(zip(zip(table.column("meter_id").to_pylist(), table.column("ts").to_pylist()),
                    table.column("register_milli").to_pylist()))


files_strategy = st.lists(
    st.lists(st.tuples(st.integers(1, 6), st.integers(0, 94), st.integers(0, 10**9), st.integers(0, 10**6)),
             min_size=1, max_size=30),
    min_size=1, max_size=5)


@settings(max_examples=25, deadline=None)
@given(files_strategy, st.integers(0, 3))
def test_compaction_keeps_every_reading_once(tmp_path_factory, files, compact_after):
    lake = init_lake(tmp_path_factory.mktemp("lake"))
    written = []
    for i, rows in enumerate(files):
        # unique received_at per row so that "first received" has one answer
        t = _table(*zip(*[(m, s, r, rec * 64 + i) for m, s, r, rec in rows]))
        lake.write("readings", t, DAY)
        written.append(t)
        if i == compact_after:
            compact_day(lake, DAY)
    want = _expected(written)
    before = _as_dict(read_readings(lake, START, END))
    res = compact_day(lake, DAY)
    assert res.skipped == (compact_after == len(files) - 1)  # nothing new since the last compaction
    out = lake.files("readings", DAY)
    assert len(out) == 1 and out[0].name.startswith("compact-")
    raw = pq.read_table(out[0])
    assert raw.num_rows == len(want)  # no duplicate left in the file
    assert before == want == _as_dict(read_readings(lake, START, END))
    assert compact_day(lake, DAY).skipped


def test_compaction_with_a_concurrent_writer(lake):
    rng = np.random.default_rng(7)
    written, done = [], threading.Event()

    def writer():
        for i in range(60):
            n = int(rng.integers(1, 200))
            t = _table(rng.integers(1, 40, n), rng.integers(0, 95, n), rng.integers(0, 10**6, n),
                       rng.integers(0, 10**6, n) * 1000 + i)
            lake.write("readings", t, DAY)
            written.append(t)
        done.set()

    th = threading.Thread(target=writer)
    th.start()
    rounds = 0
    while not done.is_set():
        if lake.files("readings", DAY):
            compact_day(lake, DAY)
            rounds += 1
    th.join()
    compact_day(lake, DAY)
    assert rounds >= 1
    assert _as_dict(read_readings(lake, START, END)) == _expected(written)
    assert pq.read_table(lake.files("readings", DAY)[0]).num_rows == len(_expected(written))


def test_view_after_compaction_and_new_duplicates(lake):
    a = _table([1, 1, 2], [0, 1, 0], [10, 20, 30], [1, 1, 1])
    lake.write("readings", a, DAY)
    compact_day(lake, DAY)
    # a redelivery arrives after compaction: same keys, received later
    lake.write("readings", _table([1, 3], [1, 0], [99, 40], [5, 5]), DAY)
    con = duckdb.connect()
    rows = con.execute(f"SELECT meter_id, register_milli FROM ({readings_view_sql(lake)}) ORDER BY 1, ts").fetchall()
    assert rows == [(1, 10), (1, 20), (2, 30), (3, 40)]
    compact_day(lake, DAY)
    sql = readings_view_sql(lake)
    assert "row_number" not in sql  # a compacted partition is read without dedup work
    assert con.execute(f"SELECT count(*) FROM ({sql})").fetchone() == (4,)


def test_compacted_file_is_small_and_sorted(lake):
    rng = np.random.default_rng(3)
    meters, slots = 2000, 96
    m = np.repeat(np.arange(1, meters + 1), slots)
    s = np.tile(np.arange(slots), meters)
    reg = (rng.integers(0, 10**8, meters)[:, None] + np.cumsum(rng.gamma(1.5, 80, (meters, slots)).astype(np.int64), 1)).ravel()
    order = rng.permutation(len(m))  # arrival order: shuffled
    t = _table(m[order], s[order], reg[order], (T0 + 900 * (s[order] + 1)) * 1000 + 5000)
    for chunk in np.array_split(np.arange(len(m)), 8):
        lake.write("readings", t.take(pa.array(chunk)), DAY)
    res = compact_day(lake, DAY)
    assert res.rows_out == meters * slots and res.files_in == 8
    assert res.bytes_out / res.rows_out <= 4.0
    back = pq.read_table(lake.files("readings", DAY)[0])
    assert back.column("meter_id").to_pylist() == sorted(back.column("meter_id").to_pylist())


def test_compact_cli(lake):
    lake.write("readings", _table([1, 1], [0, 0], [1, 1], [1, 2]), DAY)
    lake.write("readings", _table([2], [0], [5], [3]), DAY)
    runner = CliRunner()
    r = runner.invoke(cli, ["compact", "--lake", str(lake.root)])
    assert r.exit_code == 0, r.output
    assert "1 partition(s) compacted" in r.output and "1 duplicates removed" in r.output
    r = runner.invoke(cli, ["compact", "--lake", str(lake.root), "--day", "2020-01-01"])
    assert r.exit_code == 1 and "no readings partition" in r.output
    r = runner.invoke(cli, ["compact", "--lake", str(lake.root), "--json"])
    assert r.exit_code == 0 and '"skipped": true' in r.output
    assert compact(lake) and read_readings(lake, START, END).num_rows == 2
