"""``meters check``: a damaged file breaks only its table's views (named), is found, quarantined, and the
table works again; manifests and balances re-adding from the ledger are verified too."""
from __future__ import annotations

import datetime as dt
import json
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from billing.batch import bill_day
from ingest.compact import compact
from meters.cli import cli
from meters.errors import LakeDamaged
from meters.integrity import check_lake
from meters.lake import Lake
from test_billing_batch import D0, feed, make_lake

ACCOUNTS = "U-9,11,cn-bj-res-elec,prepaid,40,,,,,self:138\nU-8,12,cn-bj-res-elec,postpaid,0,,,,,self:139\n"


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    """Three days of readings for two meters, compacted and billed."""
    lake = make_lake(tmp_path_factory.mktemp("billed"), ACCOUNTS)
    feed(lake, 11, D0, 3)
    feed(lake, 12, D0, 3)
    compact(lake)
    for i in range(3):
        bill_day(lake, D0 + dt.timedelta(days=i))
    return lake.root


@pytest.fixture
def lake(billed, tmp_path):
    shutil.copytree(billed, tmp_path / "lake")
    return Lake(tmp_path / "lake")


def _readings_file(lake, day="2026-11-02"):
    [f] = lake.files("readings", day)
    assert f.name.startswith("compact-")
    return f


def _flip(path, column=0, byte_from_end=6):
    """Flip bits inside one column chunk's data page (the footer stays valid)."""
    cc = pq.ParquetFile(path).metadata.row_group(0).column(column)
    b = bytearray(path.read_bytes())
    b[cc.data_page_offset + cc.total_compressed_size - byte_from_end] ^= 0xFF
    path.write_bytes(bytes(b))


def _sql(lake, query):
    return CliRunner().invoke(cli, ["sql", "--lake", str(lake.root), "--format", "csv", query])


def _check(lake, *extra):
    return CliRunner().invoke(cli, ["check", "--lake", str(lake.root), *extra])


def test_a_clean_lake_is_whole(lake):
    r = _check(lake)
    assert r.exit_code == 0, r.output
    assert "lake is whole" in r.output and "6 balances re-added" in r.output


@pytest.mark.parametrize("damage", ["footer", "pages"])
def test_a_corrupt_readings_file_breaks_only_readings_and_is_quarantined(lake, damage):
    f = _readings_file(lake)
    n_all = int(_sql(lake, "SELECT count(*) AS n FROM readings").output.splitlines()[1])
    n_file = pq.ParquetFile(f).metadata.num_rows
    if damage == "footer":
        f.write_bytes(f.read_bytes()[:-20])
    else:
        _flip(f, column=2)             # register_milli: a decompression error
    rel = str(f.relative_to(lake.root))
    before = _sql(lake, "SELECT count(*) AS n FROM ledger")
    assert before.exit_code == 0 and before.output.splitlines()[1] == "5"
    assert _sql(lake, "SELECT sum(amount) AS s FROM charges").exit_code == 0
    broken = _sql(lake, "SELECT count(*), sum(register) FROM readings")
    assert broken.exit_code == 6 and rel in broken.output
    assert len(broken.output.strip().splitlines()) == 1 and "Traceback" not in broken.output
    with pytest.raises(LakeDamaged, match=rel):   # the billing stage's reader names it too
        lake.read("readings", "2026-11-02")

    found = _check(lake)
    assert found.exit_code == 6 and f"corrupt_file: {rel}" in found.output
    assert found.output.strip().splitlines()[-1].startswith("error: 1 problem(s) left")

    fixed = _check(lake, "--repair")
    assert fixed.exit_code == 0, fixed.output
    assert (lake.root / "_quarantine" / rel).exists() and not f.exists()
    [report] = (lake.root / "_quarantine").glob("check-*.json")
    data = json.loads(report.read_text())
    assert data["findings"][0]["path"] == rel and data["findings"][0]["repaired"].startswith("moved to _quarantine/")
    assert report.with_suffix(".txt").read_text().startswith("check ")
    again = _sql(lake, "SELECT count(*) AS n FROM readings")
    assert again.exit_code == 0 and int(again.output.splitlines()[1]) == n_all - n_file
    assert _check(lake).exit_code == 0


def test_a_flipped_bit_that_decodes_silently_is_found_by_page_checksums(lake):
    f = _readings_file(lake)
    _flip(f, column=0)             # meter_id: still decodes, to wrong values
    report = check_lake(lake)
    assert [(x.kind, x.path) for x in report.findings] == [("corrupt_file", str(f.relative_to(lake.root)))]
    assert "CRC" in report.findings[0].detail


def test_a_corrupt_first_file_does_not_break_the_other_views(lake):
    """DuckDB reads the first file of a view when defining it: that file damaged used to fail every query."""
    f = lake.files("readings", "2026-11-01")[0]
    f.write_bytes(b"not parquet at all")
    assert _sql(lake, "SELECT count(*) FROM ledger").exit_code == 0
    r = _sql(lake, "SELECT * FROM readings_raw")
    assert r.exit_code == 6 and str(f) in r.output


def test_manifest_naming_a_missing_file_is_reported(lake):
    [d] = [lake.partition_dir("billing_state", k) for k in lake.partitions("billing_state")[:1]]
    names = json.loads((d / "_current").read_text())
    (d / "_current").write_text(json.dumps(names + ["part-gone.parquet"]))
    r = _check(lake, "--repair")
    assert r.exit_code == 6 and f"missing_file: {(d / '_current').relative_to(lake.root)}" in r.output


def test_balances_that_do_not_re_add_from_the_ledger_are_reported(lake):
    f = lake.partition_dir("ledger", "2026-11") / "billing-2026-11-02.parquet"
    t = pq.read_table(f)
    i = t.schema.get_field_index("amount")
    t = t.set_column(i, t.schema.field(i), pc.multiply(t.column("amount"), 2).cast(t.schema.field(i).type))
    pq.write_table(t, f)
    report = check_lake(lake)
    kinds = {(x.kind, x.path) for x in report.findings}
    assert kinds == {("balance_mismatch", "billing_state/day=2026-11-02"),
                     ("balance_mismatch", "billing_state/day=2026-11-03")}, report.summary()
    assert "U-9" in report.findings[0].detail
    assert _check(lake, "--repair").exit_code == 6     # money is not repaired by moving files


@pytest.mark.parametrize("command", [["compact", "--force"], ["report", "daily"], ["bill", "--date", "2026-11-03"]])
def test_commands_meeting_a_damaged_file_refuse_in_one_line_naming_it(lake, command):
    f = _readings_file(lake, "2026-11-03")
    f.write_bytes(f.read_bytes()[:-20])
    r = CliRunner().invoke(cli, [*command, "--lake", str(lake.root)])
    assert r.exit_code == 6, r.output
    [line] = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert str(f) in line and "Traceback" not in r.output
    assert f.exists()                              # refused, nothing removed
