"""meters import greenbutton on real ESPI feeds, checked against the reference parses in expected/."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from click.testing import CliRunner

from meters import sql
from meters.cli import cli
from meters.cli_import import import_file
from meters.errors import MetersError
from meters.iotools.greenbutton import read_greenbutton

LINE = re.compile(r"^\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00), (.*): (-?[\d.]+) (\w+)(\(\$[\d.]+\))?( \[(\w+)\])?$")
UNITS = {"Wh": ("kWh", 1), "therm": ("therm", 1000)}     # expected unit -> (ours, milli factor)
# files whose ReadingType does not give the unit need it from the command line
OPTIONS = {"gas_provider_2024-07-16.xml": dict(uom=169, power=-3)}


def expected_rows(path):
    out = []
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        if m:
            start = dt.datetime.fromisoformat(m.group(1))
            d = m.group(2)
            days = int(d.split(" day")[0]) if "day" in d else 0
            h, mi, s = map(int, d.split(", ")[-1].split(":"))
            dur = days * 86400 + h * 3600 + mi * 60 + s
            out.append((start, dur, float(m.group(3)), m.group(4), m.group(7)))
    return out


@pytest.mark.parametrize("name", ["gba_TestGBDataHourlyNineDaysBinnedDaily.xml",
                                  "gba_TestGBDataOneYearDailyBinnedMonthly.xml",
                                  "gba_abridged_electric_containerized.xml",
                                  "opower_gas_billing_2021-05-26_to_2024-04-25.xml",
                                  "gas_provider_2024-07-16.xml"])
def test_parse_equals_reference(test_data, name):
    gb = test_data / "greenbutton"
    exp = expected_rows(gb / "expected" / name.replace(".xml", ".expected.txt"))
    assert exp, "reference parse is empty"
    got = read_greenbutton(gb / name, **OPTIONS.get(name, {})).series.to_pylist()
    assert len(got) == len(exp)
    for g, (start, dur, value, unit, quality) in zip(got, exp):
        ours, factor = UNITS[unit]
        assert g["unit"] == ours
        assert g["interval_s"] == dur
        assert g["ts"] - dt.timedelta(seconds=dur) == start.replace(microsecond=0)
        assert g["quantity_milli"] == round(value * factor)
        assert (g["quality"] is not None) == (quality is not None)


def test_utilities_and_quality_codes(test_data):
    gb = test_data / "greenbutton"
    s = read_greenbutton(gb / "opower_gas_billing_2021-05-26_to_2024-04-25.xml").series
    assert set(s.column("utility").to_pylist()) == {"gas"}
    s = read_greenbutton(gb / "sce_bulk_UsageSummaryAndIntervalBlock.xml").series
    assert set(s.column("quality").to_pylist()) == {"revenue_quality"}      # ReadingQuality 19
    s = read_greenbutton(gb / "sce_bulk_IntervalBlock.xml").series
    assert set(s.column("interval_s").to_pylist()) == {900}
    s = read_greenbutton(gb / "utilityapi_intervals_APUC000000_electric.xml").series
    assert s.num_rows == 300


def test_feed_without_a_unit_needs_one(test_data):
    gb = test_data / "greenbutton"
    with pytest.raises(MetersError, match="--uom"):
        read_greenbutton(gb / "pge_IntervalBlock.xml")
    s = read_greenbutton(gb / "pge_IntervalBlock.xml", uom=72).series       # IntervalBlock-only feed
    assert s.num_rows > 2000 and set(s.column("quality").to_pylist()) == {"validated"}


def test_not_xml_is_a_clear_error(tmp_path):
    p = tmp_path / "x.xml"
    p.write_text("<feed><entry>")
    with pytest.raises(MetersError, match="not well-formed XML"):
        read_greenbutton(p)


def test_import_twice_changes_nothing(lake, test_data):
    f = test_data / "greenbutton" / "gba_TestGBDataHourlyNineDaysBinnedDaily.xml"
    r = CliRunner().invoke(cli, ["import", "greenbutton", str(f), "--lake", str(lake.root)])
    assert r.exit_code == 0, r.output
    q = "SELECT count(*), sum(quantity_milli), min(interval_s), max(interval_s) FROM readings"
    first = sql.query(lake, q).fetchall()
    assert first[0][0] == 216 and first[0][2] == first[0][3] == 3600
    ext = sql.query(lake, "SELECT external_id, utility, unit FROM meters WHERE external_id IS NOT NULL").fetchall()
    assert ext == [("RetailCustomer/2/UsagePoint/2/MeterReading/01", "electricity", "kWh")]
    again = import_file(lake, "greenbutton", f)
    assert again["written"] == 0 and again["already_present"] == 216
    assert sql.query(lake, q).fetchall() == first
