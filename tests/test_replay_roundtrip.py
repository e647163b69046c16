"""meters replay: readings republished to a real Mosquitto and ingested again equal the original."""
from __future__ import annotations

import datetime as dt
import threading
import time

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from meters.cli import cli
from meters.errors import MetersError
from meters.lake import init_lake
from meters.mqtt import parse_broker_url
from meters.readings import read_readings
from simulator.replay import batches, replay
from simulator.run import parse_speed

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 22, 16, tzinfo=UTC)        # local midnight, Asia/Shanghai


def _original(lake, n_meters=30, n_reads=12):
    """Readings of 3 concentrators, with a duplicate and an imported interval row."""
    rows = []
    for k in range(n_reads):
        ts = START + dt.timedelta(minutes=15 * (k + 1))
        for m in range(n_meters):
            rows.append((110100000000 + m, ts, 1_000_000 * m + 250 * k + (m * k) % 7,
                         f"dcu-{m % 3}", ts + dt.timedelta(seconds=30 + m % 3)))
    t = pa.table({"meter_id": pa.array([r[0] for r in rows], pa.int64()),
                  "ts": pa.array([r[1] for r in rows], pa.timestamp("s", tz="UTC")),
                  "register_milli": pa.array([r[2] for r in rows], pa.int64()),
                  "sender": [r[3] for r in rows],
                  "received_at": pa.array([r[4] for r in rows], pa.timestamp("ms", tz="UTC"))})
    lake.write("readings", t, "2026-11-23")
    lake.write("readings", t.slice(0, 5), "2026-11-23")          # redelivered duplicates
    lake.write("readings", pa.table({"meter_id": pa.array([9], pa.int64()),
                                     "ts": pa.array([START + dt.timedelta(minutes=30)], pa.timestamp("s", tz="UTC")),
                                     "quantity_milli": pa.array([5], pa.int64()), "interval_s": pa.array([1800], pa.int32()),
                                     "sender": ["import:csv"]}), "2026-11-23")
    return len(rows)


def _key(t):
    return sorted(zip(t.column("meter_id").to_pylist(), t.column("ts").cast(pa.int64()).to_pylist(),
                      t.column("register_milli").to_pylist(), t.column("sender").to_pylist()))


def _ingest_while(broker, lake, action):
    """Run one ingest worker on ``broker`` into ``lake`` while ``action()`` runs; stop when idle."""
    from ingest.service import run_ingest

    url = parse_broker_url(broker.url("ingest"))
    out = {}
    th = threading.Thread(target=lambda: out.update(run_ingest(url, lake, until_idle=2.0, flush_seconds=0.2,
                                                               handle_signals=False, log_every=60)))
    th.start()
    time.sleep(0.8)                                 # subscribed before the first publish
    result = action()
    th.join(timeout=60)
    assert not th.is_alive()
    return result, out


@pytest.mark.parametrize("fmt", ["binary", "json"])
def test_replay_round_trip_through_ingest(session_broker, tmp_path, fmt):
    src = init_lake(tmp_path / "src")
    n = _original(src)
    dst = init_lake(tmp_path / "dst")
    start, end = "2026-11-23T00:00:00+08:00", "2026-11-24T00:00:00+08:00"
    r, counters = _ingest_while(session_broker, dst, lambda: replay(
        src, session_broker.url("admin"), start, end, fmt=fmt, batch_size=50))
    assert r["readings"] == n and r["senders"] == 3 and r["skipped_interval_rows"] == 1
    orig = read_readings(src, START, START + dt.timedelta(days=1))
    orig = orig.filter(orig.column("register_milli").is_valid())
    again = read_readings(dst, START, START + dt.timedelta(days=1))
    assert _key(again) == _key(orig)


def test_replay_cli_with_speed(session_broker, tmp_path):
    src = init_lake(tmp_path / "src")
    n = _original(src, n_meters=3, n_reads=4)       # reads 15 min apart: 45 min of data
    dst = init_lake(tmp_path / "dst")
    args = ["replay", "--lake", str(src.root), "--broker", session_broker.url("admin"),
            "--from", "2026-11-23T00:00:00", "--to", "2026-11-23T06:00:00", "--speed", "2700x"]
    t0 = time.monotonic()
    res, _ = _ingest_while(session_broker, dst, lambda: CliRunner().invoke(cli, args))
    took = time.monotonic() - t0
    assert res.exit_code == 0, res.output
    assert f"replayed {n} readings" in res.output
    assert took >= 1.0                               # 45 min of received_at spacing / 2700 = 1 s
    assert _key(read_readings(dst, START, START + dt.timedelta(days=1))) == \
        _key(read_readings(src, START, START + dt.timedelta(days=1)).filter(
            read_readings(src, START, START + dt.timedelta(days=1)).column("register_milli").is_valid()))


def test_speed_and_batches():
    assert parse_speed("max") is None and parse_speed("3600x") == 3600.0 and parse_speed("realtime") == 1.0
    assert parse_speed("3600") == 3600.0
    with pytest.raises(MetersError):
        parse_speed("fast")
    s = np.array(["a", "a", "a", "b", "a"], dtype=object)
    assert batches(s, np.zeros(5), 2) == [(0, 2), (2, 3), (3, 4), (4, 5)]


def test_bad_range_is_refused(lake):
    with pytest.raises(MetersError, match="after"):
        replay(lake, "mqtt://x:y@127.0.0.1:1", "2026-11-24", "2026-11-23")
