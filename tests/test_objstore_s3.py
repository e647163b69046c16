"""A lake in object storage: a real S3 API (moto's server on 127.0.0.1) behind ``s3://`` URLs, and an
fsspec ``memory://`` lake. Init through the CLI, two ingest workers against a real Mosquitto, compaction
with a concurrent writer, read_readings and ``meters sql`` — every row once."""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ingest.compact import compact_day
from ingest.service import run_workers
from meters import wire
from meters.broker import free_port
from meters.cli import cli
from meters.errors import MetersError
from meters.lake import Lake, RemotePath, init_lake
from meters.mqtt import make_client, parse_broker_url
from meters.readings import read_readings
from meters.registry import load_tariffs

moto_server = pytest.importorskip("moto.server")

# the same day, rows and expectations as the local compaction tests
from test_ingest_compact import DAY, END, START, UTC, _as_dict, _expected, _table  # noqa: E402
AWS_ENV = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free loopback port; yields a function making a fresh bucket's lake URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in AWS_ENV.items():
            mp.setenv(k, v)  # inherited by spawned ingest workers; never a real AWS endpoint
        port = free_port()
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        admin = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="x",
                                  secret_key="x", region="us-east-1", allow_bucket_creation=True)

        def new_lake_url() -> str:
            bucket = f"b{uuid.uuid4().hex[:12]}"
            admin.create_dir(bucket)
            return f"s3://{bucket}/lake?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"

        new_lake_url.admin = admin
        try:
            yield new_lake_url
        finally:
            server.stop()


@pytest.fixture
def s3_lake(s3):
    return init_lake(s3())


def _keys(lake: Lake) -> list[str]:
    sel = pafs.FileSelector(lake.root.path, recursive=True)
    return [i.path for i in lake.fs.get_file_info(sel) if i.type == pafs.FileType.File]


def test_cli_init_on_s3(s3):
    url = s3()
    r = CliRunner().invoke(cli, ["init", "--lake", url])
    assert r.exit_code == 0, r.output
    assert "ready (time zone Asia/Shanghai)" in r.output
    lake = Lake(url)
    assert not lake.is_local and isinstance(lake.root, RemotePath)
    assert lake.timezone_name == "Asia/Shanghai" and len(load_tariffs(lake)) > 0
    keys = _keys(lake)
    assert any(k.endswith("/lake.json") for k in keys)
    assert not any(k.rsplit("/", 1)[-1].startswith(".") for k in keys)  # no temp objects, no renames
    again = CliRunner().invoke(cli, ["init", "--lake", url])  # idempotent
    assert again.exit_code == 0, again.output
    other = CliRunner().invoke(cli, ["init", "--lake", url, "--timezone", "Europe/Paris"])
    assert other.exit_code == 1 and "refusing to change it" in other.output


def test_missing_lake_and_bad_url_are_clear_errors(s3):
    url = s3()  # bucket exists, no lake.json
    r = CliRunner().invoke(cli, ["sql", "--lake", url, "SELECT 1"])
    assert r.exit_code == 1 and "is not a meters lake" in r.output and "meters init" in r.output
    with pytest.raises(MetersError, match="cannot open lake URL"):
        Lake("nosuchscheme-xyz://bucket/lake")


def test_write_read_and_replace_partition_on_s3(s3_lake):
    lake = s3_lake
    t1 = _table([1, 2], [0, 1], [10, 20], [5, 6])
    t2 = _table([3], [2], [30], [7])
    p1 = lake.write("readings", t1, DAY)
    lake.write("readings", t2, DAY)
    assert isinstance(p1, RemotePath) and p1.name.startswith("part-") and p1.exists()
    assert lake.partitions("readings") == [DAY]
    assert [p.name for p in lake.files("readings", DAY)] == sorted(p.name for p in lake.files("readings", DAY))
    assert len(lake.files("readings")) == 2
    assert lake.read("readings", DAY).num_rows == 3
    assert lake.read("readings").column("day").to_pylist() == [DAY] * 3
    # replace_partition: the `_current` manifest (one object, one PUT) switches old → new
    new = lake.replace_partition("readings", DAY, t2)
    assert [p.name for p in lake.files("readings", DAY)] == [new.name]
    assert json.loads((lake.partition_dir("readings", DAY) / "_current").read_text()) == [new.name]
    assert _as_dict(lake.read("readings", DAY)) == _as_dict(t2)
    with pytest.raises(MetersError, match="object storage"):
        open(new)  # a caller that needs a local file gets a clear error, not a stray local path
    with pytest.raises(MetersError, match="local or mounted path"):
        with lake.lock("billing"):
            pass


def test_billing_refuses_an_object_store_lake(s3_lake):
    pytest.importorskip("billing.batch")
    r = CliRunner().invoke(cli, ["bill", "--lake", s3_lake.url, "--date", DAY])
    assert r.exit_code == 1, r.output
    assert "local or mounted path" in r.output and len(r.output.strip().splitlines()) == 1


# -- compaction with a concurrent writer -------------------------------------------------------------
def test_compaction_with_a_concurrent_writer_on_s3(s3_lake):
    url = s3_lake.url
    rng = np.random.default_rng(11)
    written, done, errors = [], threading.Event(), []

    def writer():  # another "worker": its own Lake object, its own unique file names
        try:
            other = Lake(url)
            for i in range(25):
                n = int(rng.integers(1, 150))
                t = _table(rng.integers(1, 30, n), rng.integers(0, 95, n), rng.integers(0, 10**6, n),
                           rng.integers(0, 10**6, n) * 1000 + i)
                other.write("readings", t, DAY, file_name=f"part-w1-{i:04d}-{uuid.uuid4().hex[:6]}.parquet")
                written.append(t)
        except Exception as e:  # surfaced below
            errors.append(e)
        finally:
            done.set()

    th = threading.Thread(target=writer)
    th.start()
    rounds = 0
    while not done.is_set():
        if s3_lake.files("readings", DAY):
            compact_day(s3_lake, DAY)
            rounds += 1
    th.join()
    assert not errors, errors
    compact_day(s3_lake, DAY)
    assert rounds >= 1
    want = _expected(written)
    assert _as_dict(read_readings(s3_lake, START, END)) == want
    files = s3_lake.files("readings", DAY)
    assert len(files) == 1 and files[0].name.startswith("compact-")
    assert pq.ParquetFile(files[0].open("rb")).metadata.num_rows == len(want)
    assert compact_day(s3_lake, DAY).skipped


# -- SQL -----------------------------------------------------------------------------------------------
def test_meters_sql_over_s3_raw_and_compacted(s3_lake):
    lake = s3_lake
    a = _table([1, 2, 3], [0, 0, 0], [10, 20, 30], [100, 100, 100])
    b = _table([1, 4], [0, 0], [99, 40], [200, 50])  # meter 1 again (received later: loses)
    lake.write("readings", a, DAY)
    lake.write("readings", b, DAY)
    q = "SELECT meter_id, register_milli FROM readings ORDER BY meter_id"
    want = [[1, 10], [2, 20], [3, 30], [4, 40]]
    for stage in ("raw", "compacted"):
        r = CliRunner().invoke(cli, ["sql", "--lake", lake.url, "--format", "json", q])
        assert r.exit_code == 0, (stage, r.output)
        got = [[row["meter_id"], row["register_milli"]] for row in json.loads(r.output)]
        assert got == want, stage
        r = CliRunner().invoke(cli, ["sql", "--lake", lake.url, "--format", "csv",
                                     "SELECT count(*) AS n, min(day) AS d FROM readings_raw"])
        assert r.exit_code == 0 and r.output.split() == ["n,d", f"{5 if stage == 'raw' else 4},{DAY}"], r.output
        assert _as_dict(read_readings(lake, START, END)) == _expected([a, b])
        r = CliRunner().invoke(cli, ["compact", "--lake", lake.url])
        assert r.exit_code == 0 and ("1 partition(s) compacted" in r.output) == (stage == "raw"), r.output
    r = CliRunner().invoke(cli, ["sql", "--lake", lake.url, "--format", "csv",
                                 "SELECT count(*) AS n FROM tariffs"])
    assert r.exit_code == 0 and int(r.output.split()[1]) == len(load_tariffs(lake, heating=True)), r.output
    # the sandbox: the lake's own prefix only (issue 18), not local files nor another bucket's keys
    other = f"meterslake://{lake.root.path.split('/')[0]}x/lake/config.json"
    for path in ["/etc/passwd", other, f"meterslake://{lake.root.path}/../../etc"]:
        r = CliRunner().invoke(cli, ["sql", "--lake", lake.url, f"SELECT * FROM read_text('{path}')"])
        assert r.exit_code == 1 and "outside the lake" in r.output, (path, r.output)


# -- ingest: two workers on one shared subscription ---------------------------------------------------
def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred():
        time.sleep(0.05)
    return pred()


def test_two_ingest_workers_into_s3_lose_and_duplicate_nothing(broker, s3_lake):
    lake = s3_lake
    url = parse_broker_url(broker.url("ingest"))
    out = run_workers(2, url, lake, until_idle=0.2)  # create both persistent sessions
    assert not out["errors"], out["errors"]
    now = int(time.time()) // 900 * 900 - 86400
    expected, payloads = {}, []
    for k in range(120):
        meters = np.arange(1, 41, dtype=np.int64) + 1000 * (k % 6)
        ts = np.full(40, now + 900 * (k // 6), np.int64)
        reg = meters * 1000 + k
        payloads.append(wire.encode_batch(meters, ts, reg))
        expected.update({(m, t): r for m, t, r in zip(meters.tolist(), ts.tolist(), reg.tolist())})
    sender = parse_broker_url(broker.url("sender"))
    client, kw = make_client(sender, "objstore-pub")
    client.connect(**kw)
    client.loop_start()
    try:
        assert _wait(client.is_connected, 5)
        infos = [client.publish(f"meters/v1/{sender.username}/readings", p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(20)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
    r = CliRunner().invoke(cli, ["ingest", "--broker", broker.url("ingest"), "--lake", lake.url, "--workers", "2",
                                 "--until-idle", "1.5", "--json", "-q"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert not out["errors"], out["errors"]
    assert out["received"] == 120 and out["acked"] == 120
    assert all(w["received"] > 0 for w in out["workers"])
    start = dt.datetime.fromtimestamp(now - 86400, UTC)
    t = read_readings(lake, start, start + dt.timedelta(days=4))
    got = dict(zip(zip(t.column("meter_id").to_pylist(), t.column("ts").cast("int64").to_pylist()),
                   t.column("register_milli").to_pylist()))
    assert got == expected
    assert lake.read("readings", columns=["meter_id"]).num_rows == len(expected)  # not even raw duplicates
    names = [p.name for p in lake.files("readings")]
    assert len(names) == len(set(names)) and {n.split("-")[3] for n in names} == {"0", "1"}
    r = CliRunner().invoke(cli, ["sql", "--lake", lake.url, "--format", "csv", "SELECT count(*) FROM readings"])
    assert r.exit_code == 0 and int(r.output.split()[1]) == len(expected), r.output


# -- fsspec fallback -----------------------------------------------------------------------------------
def test_fsspec_memory_lake():
    pytest.importorskip("fsspec")
    url = f"memory://lake-{uuid.uuid4().hex[:8]}"
    lake = init_lake(url)
    assert not lake.is_local and lake.root.scheme == "memory"
    a = _table([1, 2], [0, 1], [10, 20], [1, 2])
    lake.write("readings", a, DAY)
    lake.write("readings", _table([1], [0], [11], [3]), DAY)
    assert _as_dict(read_readings(Lake(url), START, END)) == _expected([a])
    compact_day(lake, DAY)
    assert [p.name[:8] for p in lake.files("readings", DAY)] == ["compact-"]
    r = CliRunner().invoke(cli, ["sql", "--lake", url, "--format", "csv", "SELECT sum(register_milli) FROM readings"])
    assert r.exit_code == 0 and r.output.split()[1] == "30", r.output


def test_file_url_is_the_local_lake(tmp_path):
    lake = init_lake(f"file://{tmp_path}/lake")
    assert lake.is_local and lake.root == tmp_path / "lake" and (tmp_path / "lake" / "lake.json").exists()
    p = lake.write("readings", _table([1], [0], [10], [1]), DAY)
    assert p.parent == tmp_path / "lake" / "readings" / f"day={DAY}" and p.exists()
    assert Lake(tmp_path / "lake").read("readings", DAY).num_rows == 1


def test_duckdb_file_handle_keeps_a_position_per_thread():
    """DuckDB's fsspec bridge does seek() then read() on one handle from several threads; each thread
    must read the bytes at its own position (a shared position made DuckDB read others' bytes)."""
    from meters.storage import _SharedReadFile

    data = np.random.default_rng(3).integers(0, 256, 1 << 16, dtype=np.uint8).tobytes()
    f = _SharedReadFile(pa.BufferReader(data), "x")
    bad, barrier = [], threading.Barrier(8)

    def reader(seed):
        rng = np.random.default_rng(seed)
        barrier.wait()
        for _ in range(2000):
            pos, n = int(rng.integers(0, len(data))), int(rng.integers(1, 64))
            f.seek(pos)
            time.sleep(0)  # let another thread seek in between
            if f.read(n) != data[pos:pos + n] or f.tell() != min(pos + n, len(data)):
                bad.append((pos, n))

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
    assert f.seek(-4, 2) == len(data) - 4 and f.read() == data[-4:] and f.read(10) == b""
