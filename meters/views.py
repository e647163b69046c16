"""SQL text over lake files: DuckDB types of the Arrow schemas and a typed SELECT of a table's
current files (honouring ``_current`` manifests). Shared by the analysts' views (:mod:`meters.sql`)
and the deduplicated readings view (:mod:`meters.readings`)."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from .lake import Lake
from .schemas import Table

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


def stored_select(lake: Lake, t: Table, files: list[Path]) -> str:
    """A SELECT of the stored columns (typed as the schema says) of ``files`` of table ``t``, plus the
    partition column; a typed empty SELECT when there is no file."""
    typed = [f"CAST(NULL AS {sql_type(f.type)}) AS {quote_ident(f.name)}" for f in t.schema]
    if t.partition:
        typed.append(f"CAST(NULL AS {PARTITION_SQL_TYPES[t.partition]}) AS {quote_ident(t.partition)}")
    empty = f"SELECT {', '.join(typed)} WHERE false"
    if not files:
        return empty
    file_list = "[" + ", ".join(quote_literal(lake.sql_path(p)) for p in files) + "]"
    hive = (f"hive_partitioning = true, hive_types = {{'{t.partition}': {PARTITION_SQL_TYPES[t.partition]}}}"
            if t.partition else "hive_partitioning = false")
    cols = [f"CAST({quote_ident(f.name)} AS {sql_type(f.type)}) AS {quote_ident(f.name)}" for f in t.schema]
    if t.partition:
        cols.append(quote_ident(t.partition))
    # UNION ALL BY NAME with the typed empty SELECT fills columns that older files lack with NULL
    return (f"SELECT {', '.join(cols)} FROM ({empty} UNION ALL BY NAME "
            f"SELECT * FROM read_parquet({file_list}, {hive}))")
