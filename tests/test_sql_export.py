"""meters sql --export: a DuckDB file of views that any DuckDB opens, with the numbers meters sql
shows (duplicates, a replaced partition and a crashed replacement resolved), and the docs' recipes."""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner

from meters import sql
from meters.cli import cli
from meters.errors import MetersError
from meters.readings import COMPACT_PREFIX
from meters.registry import save_meters
from meters.schemas import METERS
from meters.sql_export import export_duckdb

UTC = dt.timezone.utc
MONEY = pa.decimal128(18, 2)
ROOT = Path(__file__).resolve().parents[1]
DUCKDB_CLI = Path(sys.executable).parent / "duckdb"
CHECKS = {   # view -> aggregates compared between meters sql and the exported file
    "readings": "count(*), sum(register_milli), count(DISTINCT (meter_id, ts))",
    "readings_raw": "count(*), sum(register_milli)",
    "charges": "count(*), sum(amount), sum(quantity)",
    "charge_lines": "count(*), sum(amount), sum(amount_unrounded)",
    "meters": "count(*)",
    "tariffs": "count(*)",
    "deadletter": "count(*)",
}


def _readings(rows, received):
    return pa.table({"meter_id": pa.array([r[0] for r in rows], pa.int64()),
                     "ts": pa.array([r[1] for r in rows], pa.timestamp("s", tz="UTC")),
                     "register_milli": pa.array([r[2] for r in rows], pa.int64()),
                     "sender": ["dcu-1"] * len(rows),
                     "received_at": pa.array([received] * len(rows), pa.timestamp("ms", tz="UTC"))})


def _charges(account, quantity, amount):
    return pa.table({"account_id": [account], "quantity": [quantity],
                     "amount": pa.array([Decimal(amount)], MONEY), "tariff_id": ["cn-bj-res-elec"]})


@pytest.fixture
def messy_lake(lake):
    """Readings with redelivered duplicates (day 1), a compacted readings partition (day 2), a charges
    partition replaced by a re-run, and one whose replacement crashed (staged files never switched in)."""
    save_meters(lake, pa.Table.from_pylist([
        {"meter_id": m, "utility": "electricity", "unit": "kWh", "concentrator": "dcu-1", "region": "north"}
        for m in (1, 2)], METERS))
    t0 = dt.datetime(2026, 11, 22, 16, 15, tzinfo=UTC)          # 00:15 on 2026-11-23 in Asia/Shanghai
    day1 = [(m, t0 + dt.timedelta(minutes=15 * k), 1000 * m + 7 * k) for m in (1, 2) for k in range(8)]
    lake.write("readings", _readings(day1, t0 + dt.timedelta(hours=3)), "2026-11-23")
    lake.write("readings", _readings(day1[:5], t0 + dt.timedelta(hours=4)), "2026-11-23")   # redelivered
    t1 = t0 + dt.timedelta(days=1)
    day2 = [(m, t1 + dt.timedelta(minutes=15 * k), 2000 * m + 9 * k) for m in (1, 2) for k in range(6)]
    lake.write("readings", _readings(day2, t1 + dt.timedelta(hours=3)), "2026-11-24",
               file_name=f"{COMPACT_PREFIX}test.parquet")
    lake.replace_partition("charges", "2026-11-23", _charges("A1", 3.5, "1.75"))
    lake.replace_partition("charges", "2026-11-23", _charges("A1", 4.5, "2.25"))          # the re-run
    lake.replace_partition("charges", "2026-11-24", _charges("A1", 5.0, "420.00"))
    lake.stage("charges", "2026-11-24")                                                    # crashed re-run
    from meters.lake import conform
    from meters.schemas import TABLES
    lake.write_staged("charges", "2026-11-24", conform(_charges("A1", 99.0, "99.99"), TABLES["charges"]))
    lake.write("charge_lines", pa.table({"account_id": ["A1", "A1"], "tier": pa.array([1, 2], pa.int32()),
                                         "band": ["all", "all"], "quantity": [2.0, 1.005],
                                         "amount": [1.0049, 0.505]}), "2026-11-23")
    return lake


def _glob_count(lake) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{lake.root}/readings/*/*.parquet')").fetchall()[0][0]


def _compare(lake, db: Path):
    con = sql.connect(lake)
    out = duckdb.connect(str(db), read_only=True)
    for view, aggs in CHECKS.items():
        q = f"SELECT {aggs} FROM {view}"
        assert sql.run(con, q).fetchall() == out.sql(q).fetchall(), view
    for view in sql.view_selects(lake):
        q = f"SELECT * FROM {view} ORDER BY ALL"
        assert sql.run(con, q).fetchall() == out.sql(q).fetchall(), view
    out.close()


def test_export_sees_what_meters_sql_sees(messy_lake, tmp_path):
    db = tmp_path / "lake.duckdb"
    views = export_duckdb(messy_lake, db)
    assert set(sql.view_selects(messy_lake)) < set(views) and "lake_info" in views
    _compare(messy_lake, db)
    con = duckdb.connect(str(db), read_only=True)
    assert con.sql("SELECT count(*) FROM readings").fetchall() == [(28,)]      # 16 + 12, duplicates gone
    assert _glob_count(messy_lake) == 33                                         # a plain glob miscounts
    assert con.sql("SELECT sum(amount), count(*) FROM charges").fetchall() == [(Decimal("422.25"), 2)]
    assert con.sql("SELECT amount FROM charge_lines ORDER BY tier").fetchall() == [(Decimal("1.00"),),
                                                                                  (Decimal("0.51"),)]
    assert con.sql("SELECT timezone, paths FROM lake_info").fetchall() == [("Asia/Shanghai", "absolute")]
    # views only: no table holds data
    assert con.sql("SELECT count(*) FROM duckdb_tables()").fetchall() == [(0,)]


def test_relative_paths_follow_the_database_file(messy_lake, tmp_path, monkeypatch):
    share = tmp_path / "share"
    share.mkdir()
    shutil.move(str(messy_lake.root), share / "lake")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["sql", "--lake", "share/lake", "--export", "share/lake.duckdb", "--relative-paths"])
    assert r.exit_code == 0, r.output
    assert "relative paths" in r.output
    text = (share / "lake.duckdb").read_bytes()
    assert str(tmp_path).encode() not in text                                    # no absolute path inside
    moved = tmp_path / "moved"
    shutil.move(str(share), moved)                                               # lake + file move together
    monkeypatch.chdir(moved)
    con = duckdb.connect("lake.duckdb", read_only=True)
    assert con.sql("SELECT count(*) FROM readings").fetchall() == [(28,)]
    assert con.sql("SELECT paths FROM lake_info").fetchall() == [("relative",)]


def test_absolute_export_from_a_relative_lake_path_works_anywhere(messy_lake, tmp_path, monkeypatch):
    monkeypatch.chdir(messy_lake.root.parent)
    r = CliRunner().invoke(cli, ["sql", "--lake", messy_lake.root.name, "--export", "out.duckdb"])
    assert r.exit_code == 0, r.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _compare(messy_lake, messy_lake.root.parent / "out.duckdb")


def test_export_refusals(messy_lake, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["sql", "--lake", str(messy_lake.root), "--export", str(tmp_path / "x.duckdb"), "SELECT 1"])
    assert r.exit_code == 2 and "--export" in r.output
    r = runner.invoke(cli, ["sql", "--lake", str(messy_lake.root), "SELECT 1", "--relative-paths"])
    assert r.exit_code == 2 and "--relative-paths goes with --export" in r.output
    with pytest.raises(MetersError, match="ending in .duckdb"):
        export_duckdb(messy_lake, tmp_path / "x.csv")
    with pytest.raises(MetersError, match="does not exist"):
        export_duckdb(messy_lake, tmp_path / "no" / "x.duckdb")


@pytest.mark.skipif(not DUCKDB_CLI.exists(), reason="the duckdb-cli dev dependency is not installed")
def test_the_duckdb_cli_opens_the_export(messy_lake, tmp_path):
    db = tmp_path / "lake.duckdb"
    export_duckdb(messy_lake, db)
    out = subprocess.run([str(DUCKDB_CLI), "-readonly", str(db), "-csv", "-c",
                          "SELECT count(*) AS n, sum(register_milli) AS s FROM readings"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    n, s = sql.query(messy_lake, "SELECT count(*), sum(register_milli) FROM readings").fetchall()[0]
    assert out.stdout.split() == ["n,s", f"{n},{s}"]


def _recipes() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "sql.md").read_text()
    section = text.split("### Recipes", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(sh|python)\n(.*?)^```", section, re.S | re.M)


def test_the_docs_recipes_run_on_an_export(messy_lake, tmp_path, monkeypatch):
    recipes = _recipes()
    assert {k for k, _ in recipes} == {"sh", "python"} and len(recipes) >= 4
    monkeypatch.chdir(tmp_path)
    export_duckdb(messy_lake, "lake.duckdb")
    n_readings = sql.query(messy_lake, "SELECT count(*) FROM readings").fetchall()[0][0]
    for kind, code in recipes:
        if kind == "python":
            scope: dict = {}
            exec(compile(code, "docs/sql.md", "exec"), scope)          # noqa: S102 - the docs' own code
            if "readings" in scope:
                assert scope["readings"] == n_readings and scope["money"] == Decimal("422.25")
            if "daily" in scope:
                assert scope["daily"]["amount"].cast(float).to_list() == [2.25, 420.0]
                assert scope["per_meter"]["n"].sum() == n_readings
            if "exact" in scope:
                assert sorted(scope["exact"]["amount"]) == [Decimal("2.25"), Decimal("420.00")]
                assert len(scope["bills"]) == 0
        elif DUCKDB_CLI.exists():
            for line in code.strip().splitlines():
                assert line.startswith("duckdb ")
                out = subprocess.run(line.replace("duckdb ", f"{DUCKDB_CLI} ", 1), shell=True,
                                     capture_output=True, text=True, timeout=60, env={**os.environ})
                assert out.returncode == 0, (line, out.stderr)
                if "count(*) AS readings" in line:
                    assert out.stdout.split() == ["readings", str(n_readings)]
                else:
                    assert "420.00" in out.stdout and "2026-11-24" in out.stdout
