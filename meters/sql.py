"""Analysts' SQL: DuckDB views over the lake, read-only.

``connect(lake)`` opens an in-memory DuckDB database holding one view per lake table (CONTRACTS.md §2).
The file list of every view is built here in Python: a partition that has a ``_current`` manifest is read
from the files the manifest lists only (docs/lake.md), hidden and temporary files are never read, and a
table with no file yet is still a view with the right columns (from :mod:`meters.schemas`). Partition
columns come back typed (``day`` DATE, ``month`` VARCHAR), registers and quantities as DOUBLE, money as
DECIMAL(18,2), timestamps as TIMESTAMPTZ shown in the lake's time zone.

Read-only: user SQL goes through :func:`check_read_only` (DuckDB's own parser classifies each statement;
only SELECT-like statements and EXPLAIN pass), and the connection's configuration is locked after the
views are made, so an analyst can neither change the lake (COPY TO, ATTACH, EXPORT …) nor reconfigure
the session.

Sandboxed: once the views exist, DuckDB may read files under the lake's root only
(``allowed_directories`` + ``enable_external_access = false``, then locked), so ``read_text``,
``read_blob``, ``glob`` or ``read_csv`` of anything else (credentials, ``/proc``, ``/etc``) is refused;
memory is capped (``memory_limit``) and spills go to a private directory under the system temp dir
(removed when the connection closes), never ``./.tmp``. :func:`time_limit` interrupts a query that
runs too long.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa

from .errors import LakeDamaged, MetersError
from .lake import Lake
from .schemas import TABLES, Table
from .views import DERIVED, quote_ident, quote_literal, readings_view_sql, stored_select, table_files

ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}
DEFAULT_MEMORY_LIMIT = "50%"   # of physical memory (DuckDB's own default is 80 %)
DEFAULT_TIMEOUT_S = 300.0


def view_select(lake: Lake, t: Table, files: list[Path]) -> str:
    """The view's SELECT: stored columns, or the columns derived from them (``register`` DOUBLE …),
    in one level of SELECT over the files (:func:`meters.views.stored_select`)."""
    return stored_select(lake, t, files, DERIVED.get(t.name))


# views whose quantities are in a unit that differs by utility: how each finds its unit (CONTRACTS §2)
BY_METER = ("readings", "readings_raw", "intervals")                    # the meter's unit
BY_ACCOUNT = ("charges", "charge_lines", "bills", "bill_lines")          # the tariff's (else the meter's)
AREA_BANDS = ("area", "basic")   # heating lines priced per m² of the premise: quantity in m2


def _unit_sql(lake: Lake, name: str, select: str) -> str:
    """``select`` with a ``unit`` column after its own: the unit its quantities are in."""
    meters = (f"SELECT meter_id, any_value(unit) AS unit FROM ({view_select(lake, TABLES['meters'], table_files(lake, TABLES['meters']))}) "
              "GROUP BY meter_id")
    if name in BY_METER:
        return f"SELECT v.*, u.unit FROM ({select}) v LEFT JOIN ({meters}) u ON u.meter_id = v.meter_id"
    tariffs = (f"SELECT tariff_id, any_value(unit) AS unit FROM "
               f"({view_select(lake, TABLES['tariffs'], table_files(lake, TABLES['tariffs']))}) GROUP BY tariff_id")
    accounts = (f"SELECT a.account_id, any_value(coalesce(t.unit, m.unit)) AS unit FROM "
                f"({view_select(lake, TABLES['accounts'], table_files(lake, TABLES['accounts']))}) a "
                f"LEFT JOIN ({tariffs}) t ON t.tariff_id = a.tariff_id LEFT JOIN ({meters}) m ON m.meter_id = a.meter_id "
                "GROUP BY a.account_id")
    unit = "coalesce(t.unit, u.unit)" if name == "charges" else "u.unit"
    if name in ("charge_lines", "bill_lines"):
        unit = f"CASE WHEN v.tier = 0 AND v.band IN {tuple(AREA_BANDS)} THEN 'm2' ELSE {unit} END"
    by_tariff = f"LEFT JOIN ({tariffs}) t ON t.tariff_id = v.tariff_id " if name == "charges" else ""
    return (f"SELECT v.*, {unit} AS unit FROM ({select}) v {by_tariff}"
            f"LEFT JOIN ({accounts}) u ON u.account_id = v.account_id")


def view_definitions(lake: Lake) -> dict[str, tuple[Table, list[Path], str]]:
    """Every view (file lists taken now): name -> (its table, the table's files, the view's SELECT); one
    per lake table, plus ``readings_raw``; views of quantities end with their ``unit``."""
    out = {}
    for name, t in TABLES.items():
        files = table_files(lake, t)
        out[name] = (t, files, readings_view_sql(lake) if name == "readings" else view_select(lake, t, files))
    if "readings" in TABLES:
        t, files, _ = out["readings"]
        out["readings_raw"] = (t, files, view_select(lake, t, files))
    for name in (*BY_METER, *BY_ACCOUNT):
        t, files, select = out[name]
        out[name] = (t, files, _unit_sql(lake, name, select))
    return out


def view_selects(lake: Lake) -> dict[str, str]:
    """Every view's SELECT (file lists taken now): one per lake table, plus ``readings_raw``."""
    return {name: select for name, (_t, _files, select) in view_definitions(lake).items()}


def connect(lake: Lake | str | os.PathLike, *, threads: int | None = None,
            memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per lake table, sandboxed to the lake's files,
    configuration locked. ``memory_limit``: a DuckDB size (``4GB``) or a share of RAM (``50%``).

    Run user SQL through :func:`run` (or check it with :func:`check_read_only`) to refuse writes.
    """
    if not isinstance(lake, Lake):
        lake = Lake(lake)
    con = duckdb.connect(":memory:")
    con.execute("SET autoinstall_known_extensions = false")
    # Parquet footers read once per session (lake files are never rewritten in place: a replaced
    # partition gets new file names); count(*) and every query's planning read them from memory
    con.execute("SET parquet_metadata_cache = true")
    con.execute(f"SET TimeZone = {quote_literal(lake.timezone_name)}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        try:
            con.execute(f"SET memory_limit = {quote_literal(str(memory_limit))}")
        except duckdb.Error:
            raise MetersError(f"invalid memory limit {memory_limit!r} (e.g. 4GB, 512MB or 50%)") from None
    # spills: a directory of this connection only, created by DuckDB when needed and removed on close
    spill = Path(tempfile.gettempdir()) / f"meters-sql-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    con.execute(f"SET temp_directory = {quote_literal(str(spill))}")
    lake.register_duckdb(con)  # object-store lakes: files are read through the lake's filesystem
    for name, (t, files, select) in view_definitions(lake).items():
        _create_view(con, lake, name, t, files, select)
    root = os.path.abspath(lake.root) if lake.is_local else lake.sql_path(lake.root)
    root = root.rstrip("/") + "/"
    con.execute(f"SET allowed_directories = [{quote_literal(root)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _create_view(con, lake: Lake, name: str, t: Table, files: list[Path], select: str) -> None:
    """``CREATE VIEW name``; when a damaged file of the table stops DuckDB from defining it, the view
    keeps its columns and fails when queried, naming the file: the other views keep working."""
    try:
        con.execute(f"CREATE VIEW {quote_ident(name)} AS {select}")
    except duckdb.Error as e:
        damage = lake.damage(files, e)
        if damage is e:
            raise sql_error(e) from None
        empty = view_select(lake, t, [])
        con.execute(f"CREATE VIEW {quote_ident(name)} AS SELECT v.* FROM ({empty}) v RIGHT JOIN "
                    f"(SELECT error({quote_literal(str(damage))}) AS e) x ON true WHERE x.e IS NOT NULL")


@contextlib.contextmanager
def time_limit(con: duckdb.DuckDBPyConnection, seconds: float | None):
    """Interrupt the query running on ``con`` after ``seconds`` (None or 0: no limit); a query
    interrupted so raises :class:`MetersError` ``query timed out``."""
    if not seconds:
        yield
        return
    fired = threading.Event()

    def interrupt():
        fired.set()
        con.interrupt()

    timer = threading.Timer(seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    except (MetersError, duckdb.Error):
        if fired.is_set():
            raise MetersError(f"query timed out after {seconds:g} s (--timeout)") from None
        raise
    finally:
        timer.cancel()
        timer.join()   # a daemon thread alive at interpreter exit can abort the process (DuckDB, C++ unwind)


_DAMAGED = re.compile(r"""(?:Failed to read file|No magic bytes found at end of file|Could not read enough bytes """
                      r"""from file|[Cc]orrupt|ZSTD|Snappy|[Dd]ecompress)[^'"]*['"]?([^'"]*\.parquet)?""")


def sql_error(e: Exception) -> MetersError:
    """A DuckDB error as a one-line :class:`MetersError`; a file outside the lake says so; a damaged
    lake file (footer, decompression) is :class:`LakeDamaged` naming it."""
    text = " ".join(str(e).split())
    if isinstance(e, duckdb.PermissionException) and "Cannot access file" in text:
        m = re.search(r'Cannot access file "([^"]*)"', text)
        return MetersError(f"refused: {m.group(1) if m else 'that file'} is outside the lake; "
                           "meters sql reads only the lake's files")
    if "lake file " in text and " is damaged (" in text:   # a view of a damaged table (_create_view)
        return LakeDamaged(text[text.index("lake file "):])
    if isinstance(e, (duckdb.IOException, duckdb.InvalidInputException)) and _DAMAGED.search(text):
        files = re.findall(r"""['"]([^'"]+\.parquet)['"]""", text)
        where = f"lake file {files[0]}" if files else "a lake file"
        return LakeDamaged(f"{where} is damaged ({text[:300]}); `meters check --repair` quarantines it")
    return MetersError(f"SQL error: {text}")


_EXPLAIN = re.compile(r"\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*EXPLAIN\b\s*(?:\([^)]*\)\s*)?(?:ANALY[SZ]E\b\s*)?(.*)",
                      re.S | re.I)


def _refuse(kind: str, text: str):
    text = " ".join(text.split())[:60]
    raise MetersError(f"read-only: {kind} statements are refused ({text!r}); meters sql only reads the lake "
                      "(SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)")


def _check(statements, depth: int = 0) -> None:
    for st in statements:
        kind = st.type.name
        if kind not in ALLOWED_STATEMENTS:
            _refuse(kind, st.query)
        if kind == "EXPLAIN":   # EXPLAIN ANALYZE runs its statement: check what it explains
            m = _EXPLAIN.match(st.query)
            if m is None or depth > 3:
                _refuse("EXPLAIN (of a statement that cannot be checked)", st.query)
            try:
                inner = duckdb.extract_statements(m.group(1))
            except duckdb.Error:
                _refuse("EXPLAIN (of a statement that cannot be checked)", st.query)
            if len(inner) != 1:
                _refuse("EXPLAIN (of a statement that cannot be checked)", st.query)
            try:
                _check(inner, depth + 1)
            except MetersError:
                _refuse(f"EXPLAIN {inner[0].type.name}", st.query)


def check_read_only(sql: str) -> list:
    """Parse ``sql`` with DuckDB and return its statements; raise :class:`MetersError` if any would
    write (CREATE, INSERT, COPY, ATTACH, EXPORT, SET, PRAGMA …, also under EXPLAIN ANALYZE) or the SQL
    does not parse."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise MetersError(f"SQL error: {str(e).splitlines()[0]}") from None
    if not statements:
        raise MetersError("no SQL statement given")
    _check(statements)
    return statements


def run_each(con: duckdb.DuckDBPyConnection, sql: str):
    """Run read-only ``sql`` on ``con`` statement by statement (all are checked first), yielding each
    statement's relation (None for a statement without a result) before the next one runs."""
    for st in check_read_only(sql):
        try:
            rel = con.sql(st.query)
        except duckdb.Error as e:
            raise sql_error(e) from None
        yield rel


def run(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    """Run read-only ``sql`` on ``con``; the relation of the last statement (None if it has no result)."""
    rel = None
    for rel in run_each(con, sql):
        pass
    return rel


def query(lake: Lake | str | os.PathLike, sql: str) -> duckdb.DuckDBPyRelation:
    """Run read-only ``sql`` over a fresh set of views; returns a DuckDB relation (``.df()``,
    ``.arrow()``, ``.fetchall()``)."""
    rel = run(connect(lake), sql)
    if rel is None:
        raise MetersError("the statement returns no rows")
    return rel


def df(lake: Lake | str | os.PathLike, sql: str):
    """``query(...)`` as a pandas DataFrame (for notebooks)."""
    return query(lake, sql).df()


def arrow(lake: Lake | str | os.PathLike, sql: str) -> pa.Table:
    """``query(...)`` as an Arrow table (for notebooks)."""
    return _to_arrow(query(lake, sql))


def _to_arrow(rel: duckdb.DuckDBPyRelation) -> pa.Table:
    out = rel.arrow()
    return out.read_all() if isinstance(out, pa.RecordBatchReader) else out
