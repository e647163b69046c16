"""meters sql: every CONTRACTS view, manifests, dedup, read-only refusal, output formats, shell."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from meters import sql
from meters.cli import cli
from meters.errors import MetersError

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 23, 0, 15, tzinfo=UTC)

CONTRACT_COLUMNS = {
    "readings": {"meter_id": "BIGINT", "ts": "TIMESTAMP WITH TIME ZONE", "register": "DOUBLE",
                 "sender": "VARCHAR", "received_at": "TIMESTAMP WITH TIME ZONE", "day": "DATE"},
    "deadletter": {"received_at": "TIMESTAMP WITH TIME ZONE", "topic": "VARCHAR", "payload": "BLOB",
                   "reason": "VARCHAR"},
    "meters": {"meter_id": "BIGINT", "external_id": "VARCHAR", "utility": "VARCHAR", "unit": "VARCHAR"},
    "accounts": {"account_id": "VARCHAR", "meter_id": "BIGINT", "tariff_id": "VARCHAR", "mode": "VARCHAR",
                 "billing_day": "TINYINT"},
    "contacts": {"account_id": "VARCHAR", "recipient": "VARCHAR", "relation": "VARCHAR"},
    "tariffs": {"tariff_id": "VARCHAR", "utility": "VARCHAR", "unit": "VARCHAR", "currency": "VARCHAR",
                "description": "VARCHAR"},
    "intervals": {"meter_id": "BIGINT", "ts": "TIMESTAMP WITH TIME ZONE", "quantity": "DOUBLE",
                  "quality": "VARCHAR"},
    "charges": {"account_id": "VARCHAR", "day": "DATE", "quantity": "DOUBLE", "amount": "DECIMAL(18,2)"},
    "bills": {"account_id": "VARCHAR", "period_start": "DATE", "period_end": "DATE", "quantity": "DOUBLE",
              "amount": "DECIMAL(18,2)", "month": "VARCHAR"},
    "bill_lines": {"account_id": "VARCHAR", "period_start": "DATE", "tier": "INTEGER", "band": "VARCHAR",
                   "quantity": "DOUBLE", "unit_price": "DOUBLE", "amount": "DECIMAL(18,2)"},
    "ledger": {"account_id": "VARCHAR", "ts": "TIMESTAMP WITH TIME ZONE", "kind": "VARCHAR",
               "amount": "DECIMAL(18,2)", "balance_after": "DECIMAL(18,2)", "ref": "VARCHAR"},
    "alerts": {"account_id": "VARCHAR", "ts": "TIMESTAMP WITH TIME ZONE", "kind": "VARCHAR",
               "recipient": "VARCHAR", "message": "VARCHAR"},
}


def _types(con, view):
    return {r[0]: r[1] for r in con.sql(f"DESCRIBE {view}").fetchall()}


def test_every_contract_view_is_queryable_on_an_empty_lake(lake):
    con = sql.connect(lake)
    for view, cols in CONTRACT_COLUMNS.items():
        types = _types(con, view)
        for c, t in cols.items():
            assert types.get(c) == t, (view, c, types.get(c))
        assert con.sql(f"SELECT count(*) FROM {view}").fetchall()[0][0] == (
            len(lake.read("tariffs")) if view == "tariffs" else 0)


def _readings(rows):
    return pa.table({"meter_id": pa.array([r[0] for r in rows], pa.int64()),
                     "ts": pa.array([r[1] for r in rows], pa.timestamp("s", tz="UTC")),
                     "register_milli": pa.array([r[2] for r in rows], pa.int64()),
                     "sender": pa.array([r[3] for r in rows]),
                     "received_at": pa.array([r[4] for r in rows], pa.timestamp("ms", tz="UTC"))})


def test_readings_view_dedups_and_exposes_register_as_double(lake):
    rec1, rec2 = T0 + dt.timedelta(seconds=5), T0 + dt.timedelta(seconds=9)
    lake.write("readings", _readings([(7, T0, 1532417, "dcu-1", rec1), (8, T0, 10, "dcu-1", rec1)]), "2026-11-23")
    # a redelivery of meter 7's reading (later received) in a second file
    lake.write("readings", _readings([(7, T0, 1532417, "dcu-1", rec2)]), "2026-11-23")
    rows = sql.query(lake, "SELECT meter_id, register, day, received_at FROM readings ORDER BY meter_id").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(7, 1532.417, dt.date(2026, 11, 23)), (8, 0.01, dt.date(2026, 11, 23))]
    assert rows[0][3] == rec1
    assert sql.query(lake, "SELECT count(*) FROM readings_raw").fetchall()[0][0] == 3


def test_replaced_partition_reads_only_the_manifest_files(lake):
    day = "2026-11-23"
    first = pa.table({"account_id": ["A1"], "quantity": [3.5], "amount": pa.array([Decimal("1.75")], pa.decimal128(18, 2))})
    lake.replace_partition("charges", day, first)
    # a file that a crashed re-run left behind: visible in the directory, not in _current
    stray = pa.table({"account_id": ["A1"], "quantity": [99.0], "amount": pa.array([Decimal("99.00")], pa.decimal128(18, 2))})
    lake.write("charges", stray, day)
    assert len(lake.files("charges", day)) == 2
    rows = sql.query(lake, "SELECT account_id, day, quantity, amount FROM charges").fetchall()
    assert rows == [("A1", dt.date(2026, 11, 23), 3.5, Decimal("1.75"))]


def test_month_partition_and_money_are_typed(lake):
    lake.write("ledger", pa.table({"account_id": ["A1"], "ts": pa.array([T0], pa.timestamp("ms", tz="UTC")),
                                   "kind": ["topup"], "amount": pa.array([Decimal("50.00")], pa.decimal128(18, 2)),
                                   "balance_after": pa.array([Decimal("80.10")], pa.decimal128(18, 2))}), "2026-11")
    rows = sql.query(lake, "SELECT month, amount + balance_after FROM ledger").fetchall()
    assert rows == [("2026-11", Decimal("130.10"))]


@pytest.mark.parametrize("statement", [
    "CREATE TABLE x (a INT)",
    "INSERT INTO readings VALUES (1)",
    "COPY (SELECT 1) TO '{out}'",
    "ATTACH '{db}' AS other",
    "EXPORT DATABASE '{dir}'",
    "SET threads = 1",
    "PRAGMA import_database('{dir}')",
    "INSTALL httpfs",
    "DROP VIEW readings",
    "SELECT 1; CREATE TABLE y (a INT)",
    "UPDATE meters SET unit = 'x'",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'",
    "explain analyse create table z as select 1",
    "/* c */ EXPLAIN (ANALYZE, FORMAT json) INSERT INTO readings VALUES (1)",
    "EXPLAIN (ANALYZE) COPY (SELECT 1) TO '{out}'",
])
def test_writes_are_refused(lake, tmp_path, statement):
    s = statement.format(out=tmp_path / "out.csv", db=tmp_path / "x.db", dir=tmp_path / "exp")
    with pytest.raises(MetersError, match="read-only"):
        sql.query(lake, s)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.db").exists()
    assert not (tmp_path / "exp").exists()


def test_reading_statements_pass(lake):
    for q in ["EXPLAIN ANALYZE SELECT count(*) FROM readings", "DESCRIBE readings", "SUMMARIZE meters",
              "SHOW TABLES", "FROM tariffs LIMIT 1", "VALUES (1)", "WITH x AS (SELECT 1) SELECT * FROM x",
              "EXPLAIN SELECT 1"]:
        assert sql.query(lake, q).fetchall()


def test_configuration_is_locked(lake):
    con = sql.connect(lake)
    with pytest.raises(Exception, match="locked"):
        con.execute("SET enable_external_access = true")


def test_cli_refuses_a_write_with_one_line(lake, tmp_path):
    out = tmp_path / "x.parquet"
    r = CliRunner().invoke(cli, ["sql", "--lake", str(lake.root), f"COPY (SELECT 1) TO '{out}'"])
    assert r.exit_code == 1
    assert "read-only" in r.output and "COPY" in r.output
    assert not out.exists()


def test_cli_formats(lake, tmp_path):
    q = "SELECT tariff_id, effective_from FROM tariffs ORDER BY tariff_id LIMIT 2"
    runner = CliRunner()
    expected = [r[0] for r in sql.query(lake, q).fetchall()]
    r = runner.invoke(cli, ["sql", "--lake", str(lake.root), q, "--format", "csv"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0] == "tariff_id,effective_from" and [l.split(",")[0] for l in lines[1:]] == expected
    r = runner.invoke(cli, ["sql", "--lake", str(lake.root), q, "--format", "json"])
    assert [d["tariff_id"] for d in json.loads(r.output)] == expected
    r = runner.invoke(cli, ["sql", "--lake", str(lake.root), q])
    assert all(e in r.output for e in expected) and "(2 rows)" in r.output
    out = tmp_path / "t.parquet"
    r = runner.invoke(cli, ["sql", "--lake", str(lake.root), q, "--format", "parquet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert pq.read_table(out).column("tariff_id").to_pylist() == expected
    r = runner.invoke(cli, ["sql", "--lake", str(lake.root), q, "--format", "parquet"])
    assert r.exit_code == 1 and "--out" in r.output


def test_cli_bad_sql_is_one_line_error(lake):
    r = CliRunner().invoke(cli, ["sql", "--lake", str(lake.root), "SELECT nope FROM readings"])
    assert r.exit_code == 1 and r.output.startswith("error: SQL error")


def test_interactive_shell_reads_statements_until_semicolon(lake):
    script = "SELECT 40 +\n 2 AS answer;\n.tables\nSELECT 'still here' AS s;\n.quit\nSELECT 99;\n"
    r = CliRunner().invoke(cli, ["sql", "--lake", str(lake.root), "--format", "csv"], input=script)
    assert r.exit_code == 0, r.output
    assert "answer\n42" in r.output
    assert "readings" in r.output and "bill_lines" in r.output       # .tables
    assert "s\nstill here" in r.output
    assert "99" not in r.output                                        # after .quit


def test_python_api_helpers(lake):
    rel = sql.query(lake, "SELECT count(*) AS n FROM tariffs")
    n = rel.fetchall()[0][0]
    assert sql.df(lake, "SELECT count(*) AS n FROM tariffs")["n"][0] == n
    assert sql.arrow(lake, "SELECT count(*) AS n FROM tariffs").column("n").to_pylist() == [n]


def test_every_view_of_quantities_says_their_unit(lake):
    """kWh and m³ in one view: each row says its unit (the meter's; the tariff's for billed quantities,
    else the meter's; m2 for the heating lines priced by area), as the last column."""
    D = "2026-11-23"
    lake.replace_partition("meters", None, pa.table({"meter_id": [1, 2, 3], "utility": ["electricity", "water", "heat"],
                                                    "unit": ["kWh", "m3", "GJ"]}))
    lake.replace_partition("accounts", None, pa.table({
        "account_id": ["a1", "a2", "a3"], "meter_id": [1, 2, 3],
        "tariff_id": ["cn-bj-res-elec", "cn-bj-res-water", "heat-not-in-catalog"],
        "mode": ["prepaid"] * 3, "billing_day": pa.array([1, 1, 1], pa.int8())}))
    lake.write("readings", _readings([(1, T0, 1000, "s", T0), (2, T0, 2000, "s", T0), (9, T0, 5, "s", T0)]), D)
    lake.write("intervals", pa.table({"meter_id": [1, 2], "ts": pa.array([T0, T0], pa.timestamp("s", tz="UTC")),
                                      "quantity": [1.5, 0.2], "quality": ["actual", "actual"]}), D)
    lake.write("charges", pa.table({"account_id": ["a1", "a2"], "quantity": [1.5, 0.2],
                                    "amount": pa.array([Decimal("0.73"), Decimal("1.00")], pa.decimal128(18, 2)),
                                    "tariff_id": ["cn-bj-res-elec", None]}), D)
    lake.write("charge_lines", pa.table({"account_id": ["a2"], "tier": pa.array([1], pa.int32()), "band": ["all"],
                                         "quantity": [0.2], "amount": [1.0]}), D)
    lake.write("bills", pa.table({"account_id": ["a1", "a2"], "period_start": pa.array([dt.date(2026, 11, 1)] * 2),
                                  "period_end": pa.array([dt.date(2026, 11, 30)] * 2), "quantity": [40.0, 3.0],
                                  "amount": pa.array([Decimal("20.00"), Decimal("15.00")], pa.decimal128(18, 2))}),
               "2026-11")
    lake.write("bill_lines", pa.table({"account_id": ["a3", "a3"], "period_start": pa.array([dt.date(2026, 11, 1)] * 2),
                                       "tier": pa.array([0, 1], pa.int32()), "band": ["area", "all"],
                                       "quantity": [80.0, 12.5],
                                       "amount": pa.array([Decimal("200.00"), Decimal("50.00")], pa.decimal128(18, 2))}),
               "2026-11")
    con = sql.connect(lake)
    for view in ("readings", "readings_raw", "intervals", "charges", "charge_lines", "bills", "bill_lines"):
        cols = con.sql(f"DESCRIBE {view}").fetchall()
        assert cols[-1][:2] == ("unit", "VARCHAR"), view
    q = lambda s: con.sql(s).fetchall()  # noqa: E731
    assert q("SELECT meter_id, unit FROM readings ORDER BY meter_id") == [(1, "kWh"), (2, "m3"), (9, None)]
    assert q("SELECT meter_id, unit FROM intervals ORDER BY meter_id") == [(1, "kWh"), (2, "m3")]
    assert q("SELECT account_id, unit FROM charges ORDER BY account_id") == [("a1", "kWh"), ("a2", "m3")]
    assert q("SELECT account_id, unit FROM charge_lines") == [("a2", "m3")]
    assert q("SELECT account_id, unit FROM bills ORDER BY account_id") == [("a1", "kWh"), ("a2", "m3")]
    assert q("SELECT band, unit FROM bill_lines ORDER BY tier") == [("area", "m2"), ("all", "GJ")]
    # never one sum across units: grouped by unit, kWh and m³ stay apart
    assert q("SELECT unit, sum(quantity) FROM charges GROUP BY unit ORDER BY unit") == [("kWh", 1.5), ("m3", 0.2)]


def test_files_with_different_columns_read_as_one_view(lake):
    """A file written before a column existed next to one that has it (the newer one listed first): one
    view, NULL where a file lacks the column; files sharing their columns are one plain read_parquet."""
    day = "2026-11-23"
    folder = lake.partition_dir("readings", day)
    folder.mkdir(parents=True, exist_ok=True)
    newer = _readings([(8, T0, 2000, "dcu-1", T0)]).append_column("quantity_milli", pa.array([500], pa.int64()))
    pq.write_table(newer, folder / "part-a.parquet")
    pq.write_table(_readings([(7, T0, 1000, "dcu-1", T0)]), folder / "part-b.parquet")
    con = sql.connect(lake)
    assert con.sql("SELECT meter_id, quantity, register FROM readings ORDER BY meter_id").fetchall() == \
        [(7, None, 1.0), (8, 0.5, 2.0)]
    assert con.sql("SELECT count(*) FROM readings_raw WHERE quantity_milli IS NULL").fetchall() == [(1,)]
    (folder / "part-a.parquet").unlink()
    select = sql.view_selects(lake)["readings_raw"]
    assert select.count("read_parquet") == 1 and "UNION" not in select and "union_by_name" not in select
    assert sql.query(lake, "SELECT meter_id, quantity FROM readings").fetchall() == [(7, None)]
