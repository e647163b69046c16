"""meters import csv: the London LCL half-hourly file and the CONTRACTS column variants."""
from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from meters import sql
from meters.cli import cli
from meters.cli_import import import_file
from meters.errors import MetersError
from meters.lake import init_lake
from meters.iotools.csv import parse_mapping, read_csv

UTC = dt.timezone.utc
LCL = ["--ts-label", "start", "--map", "ts=tstp", "--map", "external_id=LCLid",
       "--map", "quantity=energy(kWh/hh)", "--timezone", "UTC"]


def test_london_half_hourly_import_twice(tmp_path, test_data):
    """The real LCL file: 100 households, 1,674,718 half-hours, 371,668.934 kWh (SOURCES.md)."""
    lake = init_lake(tmp_path / "lake", "Europe/London")
    f = test_data / "real-load" / "lcl_2013_100households_halfhourly.csv.gz"
    r = CliRunner().invoke(cli, ["import", "csv", str(f), "--lake", str(lake.root), *LCL])
    assert r.exit_code == 0, r.output
    assert "written 1674718" in r.output and "new meters 100" in r.output
    q = ("SELECT count(*), sum(quantity_milli), count(DISTINCT meter_id), min(ts), max(ts), "
         "min(interval_s), max(interval_s) FROM readings")
    first = sql.query(lake, q).fetchall()[0]
    assert first[:3] == (1674718, 371668934, 100)
    # --ts-label start: the first half-hour starting 00:00 GMT ends at 00:30
    assert first[3] == dt.datetime(2013, 1, 1, 0, 30, tzinfo=UTC)
    assert first[5] == first[6] == 1800
    ids = sql.query(lake, "SELECT count(*) FROM meters WHERE external_id LIKE 'MAC%'").fetchall()[0][0]
    assert ids == 100
    files = sorted(lake.files("readings"))
    again = import_file(lake, "csv", f, mapping={"ts": "tstp", "external_id": "LCLid", "quantity": "energy(kWh/hh)"},
                        ts_label="start", timezone="UTC")
    assert again["written"] == 0 and again["already_present"] == 1674718
    assert sorted(lake.files("readings")) == files
    assert sql.query(lake, q).fetchall()[0] == first


def _write(tmp_path, text, name="in.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_meter_id_register_with_offsets(lake, tmp_path):
    p = _write(tmp_path, "meter_id,ts,register\n"
                         "110100000001,2026-11-23T00:15:00+08:00,1532.417\n"
                         "110100000001,2026-11-23T00:30:00+08:00,1532.5\n")
    r = import_file(lake, "csv", p)
    assert r["written"] == 2 and r["new_meters"] == 1
    rows = sql.query(lake, "SELECT meter_id, ts, register, quantity, day FROM readings ORDER BY ts").fetchall()
    assert rows[0][0] == 110100000001 and rows[0][2] == 1532.417 and rows[0][3] is None
    assert rows[0][1] == dt.datetime(2026, 11, 22, 16, 15, tzinfo=UTC)
    assert rows[0][4] == dt.date(2026, 11, 23)


def test_naive_ts_is_lake_time_and_end_label_is_default(lake, tmp_path):
    p = _write(tmp_path, "external_id,ts,quantity\nX1,2026-11-23 00:15:00,0.25\nX1,2026-11-23 00:30:00,0.5\n")
    s = read_csv(p, timezone=lake.timezone_name).series.to_pylist()
    assert s[0]["ts"] == dt.datetime(2026, 11, 22, 16, 15, tzinfo=UTC)     # Asia/Shanghai, end label
    assert s[0]["interval_s"] == 900 and s[0]["quantity_milli"] == 250


def test_interval_option_and_gzip(lake, tmp_path):
    import gzip
    p = tmp_path / "one.csv.gz"
    p.write_bytes(gzip.compress(b"external_id,ts,quantity\nX1,2026-11-23T00:00:00Z,1\n"))
    with pytest.raises(MetersError, match="--interval"):
        read_csv(p, timezone="UTC")
    s = read_csv(p, timezone="UTC", interval_s=3600, ts_label="start").series.to_pylist()
    assert s[0]["ts"] == dt.datetime(2026, 11, 23, 1, tzinfo=UTC) and s[0]["interval_s"] == 3600


@pytest.mark.parametrize("text,message", [
    ("meter,ts,quantity\n1,2026-11-23T00:00:00Z,1\n", "missing column"),
    ("meter_id,ts,quantity\nabc,2026-11-23T00:00:00Z,1\n", "line 2: meter_id 'abc'"),
    ("meter_id,ts,quantity\n1,2026-11-23T00:00:00Z,1\n1,yesterday,2\n", "line 3: ts 'yesterday'"),
    ("meter_id,ts,register\n1,2026-11-23T00:00:00Z,1\n1,2026-11-23T00:15:00Z,x1\n", "line 3: register 'x1'"),
    ("meter_id,ts,register\n1,2026-11-23T00:00:00Z,-1\n", "negative"),
    ("external_id,ts,quantity\nA,2026-11-23T00:00:00Z,1\nA,2026-11-23 00:15:00,1\n", "line 3: .*no UTC offset"),
])
def test_bad_rows_name_the_line(tmp_path, text, message):
    with pytest.raises(MetersError, match=message):
        read_csv(_write(tmp_path, text), timezone="UTC", interval_s=900)


def test_map_errors_and_parsing():
    assert parse_mapping(["ts=tstp", "quantity=energy(kWh/hh)"]) == {"ts": "tstp", "quantity": "energy(kWh/hh)"}
    with pytest.raises(MetersError, match="--map"):
        parse_mapping(["tstp"])


def test_null_values_are_skipped_and_counted(lake, tmp_path):
    p = _write(tmp_path, "LCLid,tstp,energy\nM1,2013-01-01 00:00:00, 0.2 \nM1,2013-01-01 00:30:00,Null\n"
                         "M1,2013-01-01 01:00:00, 0.3 \n")
    parsed = read_csv(p, timezone="UTC", mapping={"external_id": "LCLid", "ts": "tstp", "quantity": "energy"},
                      ts_label="start")
    assert parsed.series.column("quantity_milli").to_pylist() == [200, 300]
    assert parsed.notes == ["skipped 1 empty/Null values"]


def test_known_meter_with_other_utility_is_refused(lake, tmp_path):
    import_file(lake, "csv", _write(tmp_path, "meter_id,ts,register\n5,2026-11-23T00:00:00Z,1\n"))
    with pytest.raises(MetersError, match="meter 5"):
        import_file(lake, "csv", _write(tmp_path, "meter_id,ts,register\n5,2026-11-23T00:15:00Z,2\n", "b.csv"),
                    utility="water")
