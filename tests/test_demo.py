"""meters demo at small scale: the printed totals are the lake's, whatever the date the suite runs on.

The demo simulates days relative to today unless ``--start`` is given. The detailed test pins the start
(its expectations depend on the simulated data, e.g. that 1 % malformed uploads produce dead letters);
the calendar test runs the demo on its default start under faked clocks spread over a year (a leap day,
29 November, month and year ends) and checks the properties that must hold on any date.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
import time_machine
from click.testing import CliRunner

from meters import sql
from meters.cli import cli
from meters.demo import default_first_day

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def _num(text):
    return int(text.replace(",", ""))


def _check_totals(lake, out, n_meters_expected, intervals_expected):
    """Every figure the demo prints equals what the lake holds."""
    one = lambda q: sql.query(lake, q).fetchall()[0]  # noqa: E731
    m = re.search(r"readings in the lake\s+([\d,]+) from ([\d,]+) meters", out)
    assert m, out
    n_readings, n_meters = one("SELECT count(*), count(DISTINCT meter_id) FROM readings")
    assert (_num(m.group(1)), _num(m.group(2))) == (n_readings, n_meters)
    n_meters_expected += one("SELECT count(*) FROM meters WHERE utility = 'heat'")[0]   # in the heating season
    assert n_meters == n_meters_expected and n_readings > n_meters_expected * intervals_expected * 0.95

    m = re.search(r"ingested ([\d,]+) readings, ([\d,]+) dead letters", out)
    assert _num(m.group(1)) >= n_readings                          # duplicates are written, then deduplicated
    n_dead = _num(m.group(2))
    assert n_dead == one("SELECT count(*) FROM deadletter")[0]
    m = re.search(r"dead letters\s+([\d,]+)", out)
    assert _num(m.group(1)) == n_dead

    m = re.search(r"money billed\s+([\d,.]+) CNY", out)
    assert Decimal(m.group(1).replace(",", "")) == one("SELECT sum(amount) FROM charges")[0] > 0

    m = re.search(r"alerts\s+([\d,]+)", out)
    assert _num(m.group(1)) == one("SELECT count(*) FROM alerts")[0]
    m = re.search(r"estimated intervals ([\d,]+)", out)
    assert _num(m.group(1)) == one("SELECT count(*) FROM intervals WHERE quality <> 'actual'")[0]
    assert re.search(r"VEE\s+\S", out)
    # up to two real alert messages, as stored
    shown = re.findall(r"^    \[(\w+)\] to (\S+) \((\w+)\): (.+)$", out, re.M)
    stored = set(sql.query(lake, "SELECT kind, recipient, account_id, message FROM alerts").fetchall())
    assert len(shown) == min(2, len(stored))
    assert all(s in stored for s in shown)
    # the two example queries ran, with results
    assert out.count("SQL — ") == 2 and "daily charges by utility" in out
    assert f"The lake stays at {lake}" in out
    # billing ran on the account store: every billed day recorded with its payment watermark
    import sqlite3
    from pathlib import Path

    assert "account store:" in out
    with sqlite3.connect(Path(str(lake)) / "accounts.db") as db:
        settled = [d for d, in db.execute("SELECT day FROM settled_days")]
    assert sorted(settled) == sorted(one("SELECT list(DISTINCT day::VARCHAR) FROM charges")[0])
    return n_dead


def test_demo_prints_the_lake_totals(tmp_path):
    lake = tmp_path / "lake"
    r = CliRunner().invoke(cli, ["demo", "--no-serve", "--lake", str(lake), "--meters", "200", "--days", "2", "--seed", "3",
                                 "--start", "2026-11-20"])
    assert r.exit_code == 0, r.output
    assert "2 day(s) from 2026-11-20" in r.output
    n_dead = _check_totals(lake, r.output, 200, 96 * 2)
    assert n_dead > 0                                                  # malformed payloads on these days
    assert "(8 rows)" in r.output                                      # 2 days x 4 utilities (heat: in season)
    assert sql.query(lake, "SELECT count(*) FROM heat_readings").fetchall()[0][0] > 0
    days = [d for (d,) in sql.query(lake, "SELECT DISTINCT day FROM charges ORDER BY day").fetchall()]
    assert days == [dt.date(2026, 11, 20), dt.date(2026, 11, 21)]


# spread over a year: a leap day, 29 November (the day this test was first red), month, quarter and year ends
CALENDAR = ["2027-01-01T00:30", "2027-02-14T12:00", "2028-02-29T23:50", "2028-03-01T00:05", "2027-04-30T08:00",
            "2027-06-15T16:00", "2027-07-31T23:59", "2027-09-01T03:00", "2027-10-31T18:00", "2026-11-29T09:00",
            "2026-12-31T23:00", "2027-03-28T02:30"]


@pytest.mark.parametrize("now", CALENDAR)
def test_demo_on_any_date(tmp_path, now):
    """The demo's default start works whatever the date: it bills days that have ended, and prints the lake."""
    clock = dt.datetime.fromisoformat(now).replace(tzinfo=SHANGHAI)
    lake = tmp_path / "lake"
    with time_machine.travel(clock, tick=True):
        r = CliRunner().invoke(cli, ["demo", "--no-serve", "--lake", str(lake), "--meters", "30", "--days", "1",
                                     "--interval", "1h", "--seed", "5"])
    assert r.exit_code == 0, r.output
    first = default_first_day(clock.date(), 1)
    assert first < clock.date() and f"1 day(s) from {first}" in r.output
    _check_totals(lake, r.output, 30, 24)
    days = [d for (d,) in sql.query(lake, "SELECT DISTINCT day FROM charges").fetchall()]
    assert days == [first]


def test_demo_refuses_a_start_that_has_not_ended(tmp_path):
    today = dt.datetime.now(SHANGHAI).date()
    r = CliRunner().invoke(cli, ["demo", "--no-serve", "--lake", str(tmp_path / "lake"), "--days", "2",
                                 "--start", (today - dt.timedelta(days=1)).isoformat()])
    assert r.exit_code != 0
    assert "reaches today or later" in r.output


@pytest.mark.parametrize("machine_tz", ["Pacific/Kiritimati", "America/Los_Angeles"])
def test_demo_whatever_the_machine_time_zone(tmp_path, monkeypatch, machine_tz):
    """The lake's time zone (Asia/Shanghai) decides the days, never the machine's: 30 minutes after
    midnight in Shanghai is still the previous day in Los Angeles and already the next one in Kiritimati."""
    import time
    clock = dt.datetime(2027, 5, 2, 0, 30, tzinfo=SHANGHAI)
    monkeypatch.setenv("TZ", machine_tz)
    time.tzset()
    try:
        lake = tmp_path / "lake"
        with time_machine.travel(clock, tick=True):
            r = CliRunner().invoke(cli, ["demo", "--no-serve", "--lake", str(lake), "--meters", "30", "--days", "1",
                                         "--interval", "1h", "--seed", "5"])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert r.exit_code == 0, r.output
    assert "1 day(s) from 2027-04-30" in r.output
    _check_totals(lake, r.output, 30, 24)
