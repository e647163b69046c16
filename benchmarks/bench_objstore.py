"""The lake on object storage vs on local disk, same data, same run.

Writes ingest-sized raw files (``RAW_PARQUET`` batches of ``--rows`` readings, the way an ingest worker
flushes), then reads them back with ``read_readings``, counts them with ``meters sql`` and compacts the
partition — once on a local lake (temp file + fsync + rename) and once on an ``s3://`` lake served by
moto's S3 server on 127.0.0.1. moto is a single-threaded Python server: its figures bound the lake's
per-request overhead (listing, one PUT per file, fsspec reads for DuckDB), not a real S3's bandwidth.

``python -m benchmarks objstore [--quick] [--files N] [--rows R]``
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

DAY = "2026-11-23"
T0 = int(dt.datetime(2026, 11, 22, 16, 0, tzinfo=dt.timezone.utc).timestamp())  # local midnight, Shanghai


def batch(i: int, rows: int, meters: int = 5000) -> pa.Table:
    k = np.arange(i * rows, (i + 1) * rows, dtype=np.int64)
    return pa.table({
        "meter_id": pa.array(k % meters + 1),
        "ts": pa.array(T0 + 900 * (k // meters % 95 + 1)).cast(pa.timestamp("s", tz="UTC")),
        "register_milli": pa.array(k * 7),
        "sender": pa.array(["c1"] * rows),
        "received_at": pa.array((T0 + k) * 1000).cast(pa.timestamp("ms", tz="UTC")),
    })


def run(lake_url: str, files: int, rows: int) -> dict:
    from ingest.compact import compact_day
    from ingest.service import RAW_PARQUET
    from meters.lake import init_lake
    from meters.readings import read_readings
    from meters.sql import query

    lake = init_lake(lake_url)
    tables = [batch(i, rows) for i in range(files)]
    t0 = time.perf_counter()
    for i, t in enumerate(tables):
        lake.write("readings", t, DAY, file_name=f"part-bench-{i:06d}.parquet", **RAW_PARQUET)
    write_s = time.perf_counter() - t0
    start = dt.datetime.fromtimestamp(T0, dt.timezone.utc)
    t0 = time.perf_counter()
    n = read_readings(lake, start, start + dt.timedelta(days=1)).num_rows
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_sql = query(lake, "SELECT count(*) FROM readings").fetchall()[0][0]
    sql_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = compact_day(lake, DAY)
    compact_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_sql2 = query(lake, "SELECT count(*) FROM readings").fetchall()[0][0]
    sql2_s = time.perf_counter() - t0
    assert n == n_sql == n_sql2 == res.rows_out, (n, n_sql, n_sql2, res.rows_out)
    return dict(write_s=write_s, read_s=read_s, sql_s=sql_s, compact_s=compact_s, sql2_s=sql2_s,
                readings=files * rows, unique=n, bytes_in=res.bytes_in)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bench_objstore", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 files of 5,000 readings")
    ap.add_argument("--files", type=int, default=100, help="raw files written (default 100)")
    ap.add_argument("--rows", type=int, default=20_000, help="readings per file (default 20,000)")
    a = ap.parse_args(argv)
    files, rows = (20, 5_000) if a.quick else (a.files, a.rows)

    from moto.server import ThreadedMotoServer
    import logging
    import pyarrow.fs as pafs

    from meters.broker import free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-objstore-"))
    try:
        bucket = f"bench{uuid.uuid4().hex[:8]}"
        pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="x", secret_key="x",
                          region="us-east-1", allow_bucket_creation=True).create_dir(bucket)
        s3_url = f"s3://{bucket}/lake?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        print(f"{files} raw files × {rows:,} readings = {files * rows:,} readings, one day partition")
        results = {"local": run(str(tmp / "lake"), files, rows), "s3 (moto, loopback)": run(s3_url, files, rows)}
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    loc = results["local"]
    print(f"{'':22} {'write files/s':>14} {'write MB/s':>10} {'read_readings':>14} {'sql raw':>9} "
          f"{'compact':>9} {'sql compacted':>14}")
    for name, r in results.items():
        print(f"{name:22} {files / r['write_s']:14,.0f} {r['bytes_in'] / r['write_s'] / 1e6:10.1f} "
              f"{r['read_s']:13.2f}s {r['sql_s']:8.2f}s {r['compact_s']:8.2f}s {r['sql2_s']:13.2f}s")
    s3 = results["s3 (moto, loopback)"]
    print("s3/local time ratios: " + ", ".join(
        f"{k[:-2]} {s3[k] / loc[k]:.1f}x" for k in ("write_s", "read_s", "sql_s", "compact_s", "sql2_s")))
    print(f"readings/s written per worker-equivalent: local {loc['readings'] / loc['write_s']:,.0f}, "
          f"s3 {s3['readings'] / s3['write_s']:,.0f}")


if __name__ == "__main__":
    main()
