"""meters sql is sandboxed to the lake: no file outside it (the broker's credentials, /proc, /etc), a
query timeout, a memory limit, spills outside the working directory (issue 18, finding 5)."""
from __future__ import annotations

import os
import tempfile
import time

import pytest
from click.testing import CliRunner

from meters import sql
from meters.cli import cli
from meters.errors import MetersError


def _sql(lake, query, *extra):
    return CliRunner().invoke(cli, ["sql", "--lake", str(lake.root), query, "--format", "csv", *extra])


def _outside_files(broker):
    """Files an analyst must never read: every MQTT password, the process environment, /etc."""
    files = [str(broker.cred_file), "/proc/self/environ", "/etc/passwd"]
    if os.path.exists("/etc/shadow") and os.access("/etc/shadow", os.R_OK):
        files.append("/etc/shadow")
    return files


@pytest.mark.parametrize("reader", ["read_text", "read_blob", "read_csv", "glob"])
def test_files_outside_the_lake_are_refused(lake, broker, reader):
    password = broker.credentials["users"]["ingest"]
    for path in _outside_files(broker):
        r = _sql(lake, f"SELECT * FROM {reader}('{path}')")
        assert r.exit_code == 1, (reader, path, r.output[:200])
        assert password not in r.output
        lines = r.output.strip().splitlines()
        assert lines == [f"error: refused: {path} is outside the lake; meters sql reads only the lake's files"]
    # a glob over the broker's directory and a path escaping the lake by '..' are refused too
    for path in [f"{broker.dir}/*", f"{lake.root}/../broker/credentials.json"]:
        r = _sql(lake, f"SELECT * FROM {reader}('{path}')")
        assert r.exit_code == 1 and "outside the lake" in r.output and password not in r.output


def test_the_lake_itself_stays_readable(lake):
    n = sql.query(lake, "SELECT count(*) FROM tariffs").fetchall()[0][0]
    assert n > 0
    files = sql.query(lake, f"SELECT file FROM glob('{lake.root}/**/*.parquet')").fetchall()
    assert files and all(f[0].startswith(str(lake.root)) for f in files)


def test_sandbox_cannot_be_lifted(lake):
    con = sql.connect(lake)
    for setting in ["enable_external_access = true", "allowed_directories = ['/']",
                    "temp_directory = '.tmp'", "memory_limit = '100GB'"]:
        with pytest.raises(Exception, match="locked|disabled"):
            con.execute(f"SET {setting}")


def test_query_timeout_interrupts_with_one_line(lake):
    t0 = time.monotonic()
    r = _sql(lake, "SELECT count(*) FROM range(100000000000) a", "--timeout", "0.5")
    assert time.monotonic() - t0 < 15
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == ["error: query timed out after 0.5 s (--timeout)"]
    # a piped script stops at the statement that timed out, and exits 1
    r = CliRunner().invoke(cli, ["sql", "--lake", str(lake.root), "--format", "csv", "--timeout", "0.5"],
                           input="SELECT 6 AS six;\nSELECT count(*) FROM range(100000000000) a;\nSELECT 7 AS seven;\n")
    assert r.exit_code == 1
    assert "query timed out after 0.5 s" in r.output and "six\n6" in r.output and "seven" not in r.output


def test_time_limit_leaves_fast_queries_alone(lake):
    con = sql.connect(lake)
    with sql.time_limit(con, 30):
        assert sql.run(con, "SELECT 1").fetchall() == [(1,)]
    with pytest.raises(MetersError, match="timed out"):
        with sql.time_limit(con, 0.3):
            sql.run(con, "SELECT count(*) FROM range(100000000000)").fetchall()


def test_memory_limit_and_spills_outside_the_working_directory(lake, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    r = _sql(lake, "SELECT current_setting('memory_limit') AS m, current_setting('temp_directory') AS t",
             "--memory-limit", "1GB")
    assert r.exit_code == 0, r.output
    mem, temp = r.output.strip().splitlines()[1].split(",")
    assert mem == "953.6 MiB"
    assert temp.startswith(os.path.join(tempfile.gettempdir(), "meters-sql-"))
    # a query larger than the memory limit spills, and not into ./.tmp
    r = _sql(lake, "SELECT count(*) AS n FROM (SELECT range % 1000003 AS k, any_value(range) FROM "
                   "range(5000000) GROUP BY ALL ORDER BY 1)", "--memory-limit", "48MB")
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[1] == "1000003"
    assert not (work / ".tmp").exists() and os.listdir(work) == []
    r = _sql(lake, "SELECT 1", "--memory-limit", "lots")
    assert r.exit_code == 1 and r.output.strip().splitlines() == [
        "error: invalid memory limit 'lots' (e.g. 4GB, 512MB or 50%)"]
