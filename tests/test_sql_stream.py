"""meters sql output: results stream in batches, money prints with two decimals in every format,
every statement's result is printed, and the shell (piped scripts, dot commands, prompt_toolkit)."""
from __future__ import annotations

import datetime as dt
import io
import json
import resource
import time
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from meters import sql
from meters.cli import cli
from meters.sql_output import batches, print_result
from meters.sql_shell import BANNER, Shell

MONEY = pa.decimal128(18, 2)
T0 = dt.datetime(2026, 11, 23, 0, 15, tzinfo=dt.timezone.utc)


def _sql(lake, *args, **kw):
    return CliRunner().invoke(cli, ["sql", "--lake", str(lake.root), *args], **kw)


@pytest.fixture
def money_lake(lake):
    lake.write("ledger", pa.table({
        "account_id": ["A1", "A1", "A2"], "ts": pa.array([T0] * 3, pa.timestamp("ms", tz="UTC")),
        "kind": ["topup", "charge", "charge"],
        "amount": pa.array([Decimal("420.00"), Decimal("-5.70"), Decimal("0.05")], MONEY),
        "balance_after": pa.array([Decimal("420.00"), Decimal("414.30"), Decimal("-0.05")], MONEY)}), "2026-11")
    lake.write("charge_lines", pa.table({"account_id": ["A1"], "tier": pa.array([1], pa.int32()), "band": ["all"],
                                         "quantity": [2.0], "amount": [1.23456]}), "2026-11-23")
    return lake


Q_MONEY = "SELECT account_id, amount, balance_after FROM ledger ORDER BY amount DESC"


def test_money_has_two_decimals_in_every_format(money_lake, tmp_path):
    r = _sql(money_lake, Q_MONEY)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["account_id", "|", "amount", "|", "balance_after"]
    assert [l.split(" | ")[1].strip() for l in lines[2:5]] == ["420.00", "0.05", "-5.70"]
    assert lines[-1] == "(3 rows)"
    r = _sql(money_lake, Q_MONEY, "--format", "csv")
    assert r.stdout.splitlines() == ["account_id,amount,balance_after", "A1,420.00,420.00", "A2,0.05,-0.05",
                                     "A1,-5.70,414.30"]
    r = _sql(money_lake, Q_MONEY, "--format", "json")
    assert [d["amount"] for d in json.loads(r.stdout)] == ["420.00", "0.05", "-5.70"]
    assert '"amount": "420.00"' in r.stdout
    r = _sql(money_lake, Q_MONEY, "--format", "ndjson")
    assert [json.loads(l)["balance_after"] for l in r.stdout.splitlines()] == ["420.00", "-0.05", "414.30"]
    out = tmp_path / "m.parquet"
    r = _sql(money_lake, Q_MONEY, "--format", "parquet", "--out", str(out))
    assert r.exit_code == 0 and "wrote 3 rows" in r.stderr
    t = pq.read_table(out)
    assert t.schema.field("amount").type == MONEY
    assert [str(v) for v in t.column("amount").to_pylist()] == ["420.00", "0.05", "-5.70"]


def test_every_money_column_of_every_view_is_decimal(money_lake):
    con = sql.connect(money_lake)
    cols = con.sql("SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE NOT internal").fetchall()
    money = {(t, c): ty for t, c, ty in cols
             if c in {"amount", "balance", "balance_after", "warn_1", "warn_2", "topup_below", "topup_amount", "money"}}
    assert {"charges", "bills", "bill_lines", "ledger", "charge_lines", "accounts", "runs", "billing_state"} <= {
        t for t, _ in money}
    assert set(money.values()) == {"DECIMAL(18,2)"}
    assert sql.query(money_lake, "SELECT amount, amount_unrounded FROM charge_lines").fetchall() == [
        (Decimal("1.23"), 1.23456)]


def test_json_formats_have_one_object_per_row(money_lake):
    r = _sql(money_lake, "SELECT 1 AS a UNION ALL SELECT 2 ORDER BY a", "--format", "ndjson")
    assert r.stdout == '{"a": 1}\n{"a": 2}\n'
    r = _sql(money_lake, "SELECT 1 AS a WHERE false", "--format", "json")
    assert json.loads(r.stdout) == []


def test_every_statement_prints_its_result(money_lake):
    r = _sql(money_lake, "SELECT 1 AS one; SELECT 2 AS two", "--format", "csv")
    assert r.exit_code == 0, r.output
    assert r.stdout == "one\n1\ntwo\n2\n"


def test_table_shows_max_rows_and_counts_the_rest(money_lake, tmp_path):
    r = _sql(money_lake, "SELECT range AS n FROM range(100000)", "--max-rows", "5")
    lines = r.stdout.splitlines()
    assert [l.strip() for l in lines[2:7]] == ["0", "1", "2", "3", "4"]
    assert lines[-1] == "(100,000 rows, 99,995 not shown: raise --max-rows or use --format csv/--out)"
    # piped (CliRunner is not a terminal): every row, in aligned blocks
    r = _sql(money_lake, "SELECT range AS n FROM range(2500)")
    lines = r.stdout.splitlines()
    assert lines[-1] == "(2,500 rows)" and len(lines) == 2 + 2500 + 1 and lines[-2].strip() == "2499"
    out = tmp_path / "t.txt"
    r = _sql(money_lake, "SELECT range AS n FROM range(50)", "--out", str(out))
    assert out.read_text().splitlines()[-1] == "(50 rows)" and "wrote 50 rows" in r.stderr


def test_results_stream_in_bounded_memory(money_lake):
    """A result far larger than memory: the first batch comes at once, and reading 20M rows batch by
    batch keeps the process's peak memory nearly where it was."""
    con = sql.connect(money_lake, memory_limit="500MB")
    t0 = time.perf_counter()
    it = batches(sql.run(con, "SELECT range AS n, range * 2.5 AS x FROM range(1000000000000)"))
    first = next(it)
    assert first.num_rows > 0 and time.perf_counter() - t0 < 5
    it.close()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = io.StringIO()
    n = print_result(sql.run(con, "SELECT range AS n, 'meter-' || range AS s FROM range(20000000)"), "table", out,
                     max_rows=3)
    assert n == 20_000_000 and "19,999,997 not shown" in out.getvalue()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 300, grown_mib     # 20M rows × ~20 bytes would be ~400 MB held at once


def test_rows_print_before_a_slow_query_ends(money_lake):
    r = _sql(money_lake, "SELECT range AS n FROM range(1000000000000)", "--format", "csv", "--timeout", "1")
    assert r.exit_code == 1
    assert r.stdout.startswith("n\n0\n1\n2\n")                  # streamed before the timeout
    assert "query timed out after 1 s" in r.stderr


def test_piped_script_stops_at_the_first_error_and_writes_only_results(money_lake):
    script = "SELECT 1 AS a;\nSELECT nope FROM ledger;\nSELECT 3 AS c;\n"
    r = _sql(money_lake, "--format", "csv", input=script)
    assert r.exit_code == 1
    assert r.stdout == "a\n1\n"
    assert BANNER not in r.stdout and "error: SQL error" in r.stderr
    r = _sql(money_lake, "--format", "csv", input="SELECT 1 AS a;\n-- a comment\nSELECT 2 AS b\n")
    assert r.exit_code == 0 and r.stdout == "a\n1\nb\n2\n"


def test_dot_commands(money_lake, tmp_path):
    inc = tmp_path / "inc.sql"
    inc.write_text("SELECT count(*) AS n FROM ledger;\n")
    script = (".mode csv\n.schema ledger\n.timer on\nSELECT 5 AS five;\n.timer off\n.maxrows 2\n.mode table\n"
              "SELECT range FROM range(10);\n.mode ndjson\n.read " + str(inc) + "\n.help\n.tables\n")
    r = _sql(money_lake, input=script)
    assert r.exit_code == 0, r.output
    assert "ledger(account_id VARCHAR, ts TIMESTAMP WITH TIME ZONE" in r.stdout
    assert "amount DECIMAL(18,2)" in r.stdout
    assert "five\n5\n" in r.stdout and "Run Time:" in r.stderr
    assert "(10 rows, 8 not shown" in r.stdout
    assert '{"n": 3}' in r.stdout
    assert ".schema [VIEW]" in r.stderr and "readings_raw" in r.stdout
    for bad, msg in [(".mode xml", "choose table"), (".maxrows -1", "positive"), (".schema nope", "no view"),
                     (".read /nonexistent.sql", ".read /nonexistent.sql"), (".frobnicate", "unknown command")]:
        r = _sql(money_lake, input=bad + "\n")
        assert r.exit_code == 1 and msg in r.stderr, (bad, r.stderr)


def test_interactive_shell_keeps_history_and_completes_names(money_lake, tmp_path, monkeypatch):
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.document import Document
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    history = tmp_path / "hist"
    monkeypatch.setenv("METERS_SQL_HISTORY", str(history))
    out, err = io.StringIO(), io.StringIO()
    sh = Shell(sql.connect(money_lake), "csv", out=out, err=err)
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text("SELECT 40 + 2\r AS answer;\rSELECT nope;\rSELECT 'goes on' AS s;\r.quit\r")
        assert sh.interactive(input=inp, output=DummyOutput()) == 0
    assert out.getvalue() == "answer\n42\ns\ngoes on\n"               # an error does not stop the shell
    assert BANNER in err.getvalue() and "error: SQL error" in err.getvalue()
    assert "SELECT 'goes on' AS s;" in history.read_text()
    names = {c.text for c in sh.completer().get_completions(Document("SELECT * FROM read"), None)}
    assert {"readings", "readings_raw"} <= names
    names = {c.text for c in sh.completer().get_completions(Document("SELECT balance_a"), None)}
    assert names == {"balance_after"}


def test_a_piped_query_exits_cleanly(money_lake):
    """The --timeout timer thread is joined: before, the process aborted at exit (status 134,
    "terminate called …") about half the time its stdout was a pipe."""
    import subprocess
    import sys

    for _ in range(4):
        p = subprocess.run([sys.executable, "-m", "meters", "sql", "--lake", str(money_lake.root), "SELECT 1 AS one",
                            "--format", "csv"], capture_output=True, text=True, timeout=120)
        assert (p.returncode, p.stdout, p.stderr) == (0, "one\n1\n", "")
