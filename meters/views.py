"""SQL text over lake files: DuckDB types of the Arrow schemas, a typed SELECT of a table's current
files (honouring ``_current`` manifests) and the deduplicated readings SELECT. Shared by the analysts'
views (:mod:`meters.sql`, the ``--export`` file) and :mod:`meters.readings`. Light on purpose: no
pyarrow.compute or numpy, so ``meters sql`` starts fast."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import duckdb
import pyarrow as pa

from .lake import Lake
from .schemas import TABLES, Table

COMPACT_PREFIX = "compact-"
PARTITION_SQL_TYPES = {"day": "DATE", "month": "VARCHAR"}


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


def quote_literal(s: str) -> str:
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def quote_ident(s: str) -> str:
    """A SQL identifier."""
    return '"' + s.replace('"', '""') + '"'


def table_files(lake: Lake, t: Table) -> list[Path]:
    """The visible files of table ``t``, honouring each partition's ``_current`` manifest."""
    if t.partition is None:
        return lake.current_files(t.name, None)
    out: list[Path] = []
    for key in lake.partitions(t.name):
        out.extend(lake.current_files(t.name, key))
    return out


def _footer_types(lake: Lake, path: Path) -> dict[str, str]:
    """Column name -> DuckDB type of one Parquet file, from its footer (cached while the file is unchanged)."""
    if lake.is_local:
        st = os.stat(path)
        return _local_footer_types(str(path), st.st_mtime_ns, st.st_size)
    import pyarrow.parquet as pq

    with lake.fs.open_input_file(path.path) as f:
        return {f.name: _file_type(f.type) for f in pq.read_schema(f)}


def _file_type(t: pa.DataType) -> str:
    """The DuckDB type a file's column reads as (nanosecond timestamps read as their own type)."""
    ns = pa.types.is_timestamp(t) and t.unit == "ns"
    return sql_type(t) + ("_NS" if ns else "")


@functools.lru_cache(maxsize=4096)
def _local_footer_types(path: str, _mtime_ns: int, _size: int) -> dict[str, str]:
    import pyarrow.parquet as pq

    return {f.name: _file_type(f.type) for f in pq.read_schema(path)}


def file_types(lake: Lake, files: list[Path]) -> tuple[dict[str, str], bool] | None:
    """The columns of ``files`` (name -> DuckDB type, the union over files) and whether every file has
    the same ones; None when a footer cannot be read (a damaged file: DuckDB names it when queried)."""
    seen: dict[str, str] = {}
    same = True
    try:
        for i, p in enumerate(files):
            types = _footer_types(lake, p)
            if i and types != seen:
                same = False
            seen = {**types, **seen} if i else dict(types)
    except (OSError, pa.ArrowException):
        return None
    return seen, same


def stored_select(lake: Lake, t: Table, files: list[Path]) -> str:
    """A SELECT of the stored columns (typed as the schema says) of ``files`` of table ``t``, plus the
    partition column; a typed empty SELECT when there is no file.

    One ``read_parquet`` of the files, with ``union_by_name`` only when their columns differ, columns
    that no file has as typed NULLs and casts only where a file's type differs: so DuckDB answers
    ``count(*)`` from the footers and pushes projections and filters into the scan."""
    typed = [f"CAST(NULL AS {sql_type(f.type)}) AS {quote_ident(f.name)}" for f in t.schema]
    if t.partition:
        typed.append(f"CAST(NULL AS {PARTITION_SQL_TYPES[t.partition]}) AS {quote_ident(t.partition)}")
    empty = f"SELECT {', '.join(typed)} WHERE false"
    if not files:
        return empty
    file_list = "[" + ", ".join(quote_literal(lake.sql_path(p)) for p in files) + "]"
    hive = (f"hive_partitioning = true, hive_types = {{'{t.partition}': {PARTITION_SQL_TYPES[t.partition]}}}"
            if t.partition else "hive_partitioning = false")
    found = file_types(lake, files)
    if found is None:   # a footer unreadable: the view fails when made, and the damage is reported then
        cols = [f"CAST({quote_ident(f.name)} AS {sql_type(f.type)}) AS {quote_ident(f.name)}" for f in t.schema]
        return (f"SELECT {', '.join(cols + [quote_ident(t.partition)] * bool(t.partition))} FROM ({empty} "
                f"UNION ALL BY NAME SELECT * FROM read_parquet({file_list}, {hive}))")
    types, same = found
    cols = []
    for f in t.schema:
        want, name = sql_type(f.type), quote_ident(f.name)
        if f.name not in types:       # a column newer than every file: NULL
            cols.append(f"CAST(NULL AS {want}) AS {name}")
        elif types[f.name] == want:
            cols.append(name)
        else:
            cols.append(f"CAST({name} AS {want}) AS {name}")
    if t.partition:
        cols.append(quote_ident(t.partition))
    union = "" if same else ", union_by_name = true"
    return f"SELECT {', '.join(cols)} FROM read_parquet({file_list}, {hive}{union})"


def is_compacted(files: list[Path]) -> bool:
    """A partition is clean (duplicate-free) when its only file is a compacted one."""
    return len(files) == 1 and files[0].name.startswith(COMPACT_PREFIX)


READINGS_VIEW_COLUMNS = ("meter_id, ts, register_milli / 1000.0 AS register, register_milli, "
                         "quantity_milli / 1000.0 AS quantity, quantity_milli, interval_s, quality, sender, "
                         "received_at, day")


def readings_view_sql(lake: Lake) -> str:
    """A DuckDB SELECT producing the deduplicated ``readings`` view (CONTRACTS §2): meter_id, ts
    TIMESTAMPTZ, register DOUBLE, register_milli, quantity DOUBLE, quantity_milli, interval_s,
    quality, sender, received_at, day DATE. The file list is taken now (a snapshot): compacted
    partitions are read as they are, the others pay for ``row_number()`` deduplication."""
    t = TABLES["readings"]
    clean: list[Path] = []
    raw: list[Path] = []
    for day in lake.partitions("readings"):
        files = lake.files("readings", day)
        (clean if is_compacted(files) else raw).extend(files)
    parts = []
    if clean or not raw:
        parts.append(f"SELECT {READINGS_VIEW_COLUMNS} FROM ({stored_select(lake, t, clean)})")
    if raw:
        parts.append(f"SELECT {READINGS_VIEW_COLUMNS} FROM ({stored_select(lake, t, raw)}) QUALIFY row_number() OVER "
                     "(PARTITION BY meter_id, ts ORDER BY received_at NULLS LAST) = 1")
    return " UNION ALL ".join(f"({p})" for p in parts)
