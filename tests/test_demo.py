"""meters demo at small scale: the printed totals are the lake's."""
from __future__ import annotations

import re
from decimal import Decimal

from click.testing import CliRunner

from meters import sql
from meters.cli import cli


def _num(text):
    return int(text.replace(",", ""))


def test_demo_prints_the_lake_totals(tmp_path):
    lake = tmp_path / "lake"
    r = CliRunner().invoke(cli, ["demo", "--lake", str(lake), "--meters", "200", "--days", "2", "--seed", "3"])
    assert r.exit_code == 0, r.output
    out = r.output
    one = lambda q: sql.query(lake, q).fetchall()[0]  # noqa: E731

    m = re.search(r"readings in the lake\s+([\d,]+) from ([\d,]+) meters", out)
    assert m, out
    n_readings, n_meters = one("SELECT count(*), count(DISTINCT meter_id) FROM readings")
    assert (_num(m.group(1)), _num(m.group(2))) == (n_readings, n_meters)
    assert n_meters == 200 and n_readings > 200 * 96 * 2 * 0.95

    m = re.search(r"ingested ([\d,]+) readings, ([\d,]+) dead letters", out)
    assert _num(m.group(1)) >= n_readings                          # duplicates are written, then deduplicated
    assert _num(m.group(2)) == one("SELECT count(*) FROM deadletter")[0] > 0   # malformed payloads

    m = re.search(r"dead letters\s+([\d,]+)", out)
    assert _num(m.group(1)) == one("SELECT count(*) FROM deadletter")[0]

    m = re.search(r"money billed\s+([\d,.]+) CNY", out)
    assert Decimal(m.group(1).replace(",", "")) == one("SELECT sum(amount) FROM charges")[0] > 0

    m = re.search(r"alerts\s+([\d,]+)", out)
    assert _num(m.group(1)) == one("SELECT count(*) FROM alerts")[0]
    m = re.search(r"estimated intervals ([\d,]+)", out)
    assert _num(m.group(1)) == one("SELECT count(*) FROM intervals WHERE quality <> 'actual'")[0]
    assert re.search(r"VEE\s+\S", out)
    # two real alert messages, as stored
    shown = re.findall(r"^    \[(\w+)\] to (\S+) \((\w+)\): (.+)$", out, re.M)
    assert 1 <= len(shown) <= 2
    stored = set(sql.query(lake, "SELECT kind, recipient, account_id, message FROM alerts").fetchall())
    assert all(s in stored for s in shown)
    # the two example queries ran, with results
    assert out.count("SQL — ") == 2 and "daily charges by utility" in out and "(6 rows)" in out
    assert f"The lake stays at {lake}" in out
