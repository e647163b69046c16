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
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from .errors import MetersError
from .lake import Lake
from .schemas import TABLES, Table

ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}
PARTITION_SQL_TYPES = {"day": "DATE", "month": "VARCHAR"}

# views derived from stored columns: stored name -> (view expression, view name)
DERIVED = {
    "readings": {"register_milli": ("register_milli / 1000.0", "register"),
                 "quantity_milli": ("quantity_milli / 1000.0", "quantity")},
}


def sql_type(t: pa.DataType) -> str:
    """The DuckDB type of an Arrow type used in the lake schemas."""
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_int16(t):
        return "SMALLINT"
    if pa.types.is_int8(t):
        return "TINYINT"
    if pa.types.is_floating(t):
        return "DOUBLE" if t.bit_width == 64 else "FLOAT"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "VARCHAR"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BLOB"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{sql_type(t.value_type)}[]"
    # anything else: ask DuckDB how it reads that Arrow type
    return str(duckdb.from_arrow(pa.table({"x": pa.array([], t)})).types[0])


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def table_files(lake: Lake, t: Table) -> list[Path]:
    """The visible files of table ``t``, honouring each partition's ``_current`` manifest."""
    if t.partition is None:
        return lake._current_files(t.name, None)
    out: list[Path] = []
    for key in lake.partitions(t.name):
        out.extend(lake._current_files(t.name, key))
    return out


def stored_select(lake: Lake, t: Table, files: list[Path]) -> str:
    """A SELECT of the stored columns (typed as the schema says) of ``files`` of table ``t``, plus the
    partition column; a typed empty SELECT when there is no file."""
    typed = [f"CAST(NULL AS {sql_type(f.type)}) AS {_ident(f.name)}" for f in t.schema]
    if t.partition:
        typed.append(f"CAST(NULL AS {PARTITION_SQL_TYPES[t.partition]}) AS {_ident(t.partition)}")
    empty = f"SELECT {', '.join(typed)} WHERE false"
    if not files:
        return empty
    file_list = "[" + ", ".join(_quote(lake.sql_path(p)) for p in files) + "]"
    hive = (f"hive_partitioning = true, hive_types = {{'{t.partition}': {PARTITION_SQL_TYPES[t.partition]}}}"
            if t.partition else "hive_partitioning = false")
    cols = [f"CAST({_ident(f.name)} AS {sql_type(f.type)}) AS {_ident(f.name)}" for f in t.schema]
    if t.partition:
        cols.append(_ident(t.partition))
    # UNION ALL BY NAME with the typed empty SELECT fills columns that older files lack with NULL
    return (f"SELECT {', '.join(cols)} FROM ({empty} UNION ALL BY NAME "
            f"SELECT * FROM read_parquet({file_list}, {hive}))")


def view_select(lake: Lake, t: Table, files: list[Path]) -> str:
    """The view's SELECT: stored columns with derived ones (``register`` DOUBLE …) in place."""
    derived = DERIVED.get(t.name, {})
    cols = []
    for f in t.schema:
        if f.name in derived:
            expr, alias = derived[f.name]
            cols.append(f"{expr} AS {_ident(alias)}")
        cols.append(_ident(f.name))
    if t.partition:
        cols.append(_ident(t.partition))
    return f"SELECT {', '.join(cols)} FROM ({stored_select(lake, t, files)})"


def _readings_sql(lake: Lake) -> str:
    """The readings view's SELECT: the ingest stage's deduplicating view (compacted partitions as they
    are, the others keep the first received row of each (meter_id, ts))."""
    from .readings import readings_view_sql

    return readings_view_sql(lake)


def connect(lake: Lake | str | os.PathLike, *, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per lake table, configuration locked.

    Run user SQL through :func:`run` (or check it with :func:`check_read_only`) to refuse writes.
    """
    if not isinstance(lake, Lake):
        lake = Lake(lake)
    con = duckdb.connect(":memory:")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute(f"SET TimeZone = {_quote(lake.timezone_name)}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    lake.register_duckdb(con)  # object-store lakes: files are read through the lake's filesystem
    for name, t in TABLES.items():
        select = _readings_sql(lake) if name == "readings" else view_select(lake, t, table_files(lake, t))
        con.execute(f"CREATE VIEW {_ident(name)} AS {select}")
    if "readings" in TABLES:
        con.execute(f"CREATE VIEW readings_raw AS "
                    f"{view_select(lake, TABLES['readings'], table_files(lake, TABLES['readings']))}")
    con.execute("SET lock_configuration = true")
    return con


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


def run(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    """Run read-only ``sql`` on ``con``; the relation of the last statement (None if it has no result)."""
    statements = check_read_only(sql)
    rel = None
    try:
        for st in statements:
            rel = con.sql(st.query)
    except duckdb.Error as e:
        raise MetersError(f"SQL error: {str(e).strip()}") from None
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
