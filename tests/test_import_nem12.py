"""meters import nem12 on the real AEMO / MDFF sample files."""
from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from meters import sql
from meters.cli import cli
from meters.cli_import import import_file
from meters.errors import MetersError
from meters.iotools.nem12 import read_nem12

VALID = ["Example_NEM12_different_interval_length.csv", "Example_NEM12_month_solar.csv",
         "Example_NEM12_multiple_meters.csv", "Example_NEM12_multiple_quality.csv",
         "Example_NEM12_substituted_interval.csv", "Example_WesternPower.csv",
         "aemo2005_ACTEWM_mdffl0000000001.csv", "aemo2005_CNRGYMDP_000000000000009.csv",
         "aemo2005_ENERGEXM_SCENARIO505033001.csv", "aemo2005_ETSAMDP_Scenario06.csv",
         "aemo2005_GLOBALM_Scenario8.csv", "aemo2005_INTEGM_S02.csv", "aemo2005_UNITEDDP_SCENARIO2.csv"]


@pytest.fixture
def nem(test_data):
    return test_data / "nem12"


@pytest.mark.parametrize("name", VALID)
def test_every_valid_file_parses_whole_days(nem, name):
    s = read_nem12(nem / name).series
    assert s.num_rows > 0
    # every channel-day holds 1440 minutes of intervals
    for ext in set(s.column("external_id").to_pylist()):
        rows = [r for r in s.to_pylist() if r["external_id"] == ext]
        assert sum(r["interval_s"] for r in rows) % 86400 == 0


def test_values_units_and_interval_end_timestamps(nem):
    s = read_nem12(nem / "aemo2005_ACTEWM_mdffl0000000001.csv").series.to_pylist()
    first = s[0]
    assert first["external_id"] == "NEM1201001/E1" and first["unit"] == "kWh"
    assert first["quantity_milli"] == 2569                 # 2.569 kWh
    assert first["interval_s"] == 900
    # NEM time is UTC+10: the first 15 minutes of 2004-11-02 end at 00:15+10:00
    assert first["ts"] == dt.datetime(2004, 11, 1, 14, 15, tzinfo=dt.timezone.utc)
    wh = read_nem12(nem / "aemo2005_GLOBALM_Scenario8.csv").series.to_pylist()
    assert wh[0]["quantity_milli"] == 8888                 # 8888 Wh = 8.888 kWh


def test_interval_length_change_inside_one_file(nem):
    s = read_nem12(nem / "aemo2005_ENERGEXM_SCENARIO505033001.csv").series
    assert sorted(set(s.column("interval_s").to_pylist())) == [900, 1800]


def test_400_records_give_per_interval_quality(nem):
    q = read_nem12(nem / "Example_NEM12_multiple_quality.csv").series.column("quality").to_pylist()
    assert q == ["F14"] * 20 + ["A"] * 4 + ["S14"] * 24


def test_non_energy_channels_are_skipped_with_a_note(nem):
    p = read_nem12(nem / "Example_NEM12_different_interval_length.csv")
    assert set(p.series.column("external_id").to_pylist()) == {"C123/E1", "C123/E2"}
    assert any("non-energy" in n for n in p.notes)


@pytest.mark.parametrize("name,line,words", [
    ("invalid/Example_NEM12_missing_header.csv", 1, "100 header"),
    ("invalid/Example_NEM12_powercor.csv", 1, "100 header"),
    ("invalid/Example_NEM12_incomplete_interval.csv", 3, "48 values"),
    ("invalid/aemo2005_ETSAMDP_Scenario10_wrapped_line.csv", 27, "48 values"),
    ("Example_NEM13_forward_estimate.csv", 1, "NEM13"),
    ("aemo2005_nem13_INTEGM_12.csv", 1, "NEM13"),
])
def test_invalid_files_fail_naming_the_line(nem, name, line, words):
    with pytest.raises(MetersError, match=rf"line {line}: .*{words}"):
        read_nem12(nem / name)


def test_invalid_file_via_cli_exits_1_and_writes_nothing(lake, nem):
    r = CliRunner().invoke(cli, ["import", "nem12", str(nem / "invalid/Example_NEM12_incomplete_interval.csv"),
                                 "--lake", str(lake.root)])
    assert r.exit_code == 1 and "line 3" in r.output
    assert lake.files("readings") == []


def test_import_maps_nmi_to_meters_and_is_idempotent(lake, nem):
    f = nem / "aemo2005_CNRGYMDP_000000000000009.csv"
    r = CliRunner().invoke(cli, ["import", "nem12", str(f), "--lake", str(lake.root)])
    assert r.exit_code == 0, r.output
    assert "written 336" in r.output
    meters = sql.query(lake, "SELECT meter_id, external_id, utility, unit, concentrator FROM meters "
                             "WHERE external_id IS NOT NULL").fetchall()
    assert [(m[1], m[2], m[3], m[4]) for m in meters] == [("NEM1209162/E1", "electricity", "kWh", "import:nem12")]
    before = sql.query(lake, "SELECT count(*), sum(quantity_milli), count(DISTINCT quality) FROM readings").fetchall()
    assert before[0][0] == 336 and before[0][2] == 2
    files = lake.files("readings")
    again = import_file(lake, "nem12", f)
    assert again["written"] == 0 and again["already_present"] == 336 and again["new_meters"] == 0
    assert lake.files("readings") == files
    assert sql.query(lake, "SELECT count(*), sum(quantity_milli), count(DISTINCT quality) FROM readings").fetchall() == before
    # readings carry the NMI's meter id, interval data and the raw flag
    row = sql.query(lake, "SELECT r.meter_id = m.meter_id, r.interval_s, r.register IS NULL, r.sender "
                          "FROM readings r JOIN meters m ON m.external_id = 'NEM1209162/E1' LIMIT 1").fetchall()
    assert row == [(True, 1800, True, "import:nem12")]
