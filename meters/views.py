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


# view columns made from a stored column: stored name -> [(SQL of the view column, ``{}`` = the stored
# column, view name), ...]; a stored column not listed is its own view column
DERIVED = {
    "readings": {"register_milli": [("{} / 1000.0", "register"), ("{}", "register_milli")],
                 "quantity_milli": [("{} / 1000.0", "quantity"), ("{}", "quantity_milli")]},
    # money is DECIMAL(18,2) in every view; the engine's unrounded amount stays beside it
    "charge_lines": {"amount": [("CAST({} AS DECIMAL(18,2))", "amount"), ("{}", "amount_unrounded")]},
}


def _select_list(t: Table, stored, partition: str, derived: dict | None) -> str:
    """The SELECT list of table ``t``: each stored column as ``stored(field)`` (or the view columns
    ``derived`` makes from it), then the ``partition`` column."""
    cols = []
    for f in t.schema:
        for template, alias in (derived or {}).get(f.name, [("{}", f.name)]):
            expr = template.format(stored(f))
            cols.append(expr if expr == quote_ident(alias) else f"{expr} AS {quote_ident(alias)}")
    return ", ".join(cols + ([partition] if t.partition else []))


def _typed_null(f: pa.Field) -> str:
    return f"CAST(NULL AS {sql_type(f.type)})"


def _cast(f: pa.Field) -> str:
    return f"CAST({quote_ident(f.name)} AS {sql_type(f.type)})"


def stored_select(lake: Lake, t: Table, files: list[Path], derived: dict | None = None) -> str:
    """A SELECT of the stored columns (typed as the schema says) of ``files`` of table ``t``, plus the
    partition column; a typed empty SELECT when there is no file. ``derived`` (a :data:`DERIVED`
    entry): the view columns made from stored columns instead of the stored columns.

    One level of SELECT over one ``read_parquet`` of the files, with ``union_by_name`` only when their
    columns differ, columns that no file has as typed NULLs and casts only where a file's type
    differs: so DuckDB answers ``count(*)`` from the footers, with no projection between the count and
    the scan, and pushes projections and filters into the scan."""
    part_type = PARTITION_SQL_TYPES.get(t.partition)
    if not files:
        empty_part = f"CAST(NULL AS {part_type}) AS {quote_ident(t.partition)}" if t.partition else ""
        return f"SELECT {_select_list(t, _typed_null, empty_part, derived)} WHERE false"
    file_list = "[" + ", ".join(quote_literal(lake.sql_path(p)) for p in files) + "]"
    hive = (f"hive_partitioning = true, hive_types = {{'{t.partition}': {part_type}}}"
            if t.partition else "hive_partitioning = false")
    part = quote_ident(t.partition) if t.partition else ""
    found = file_types(lake, files)
    if found is None:   # a footer unreadable: the view fails when made, and the damage is reported then
        return (f"SELECT {_select_list(t, _cast, part, derived)} FROM ({stored_select(lake, t, [])} "
                f"UNION ALL BY NAME SELECT * FROM read_parquet({file_list}, {hive}))")
    types, same = found

    def stored(f: pa.Field) -> str:
        want, name = sql_type(f.type), quote_ident(f.name)
        if f.name not in types:       # a column newer than every file: NULL
            return f"CAST(NULL AS {want})"
        return name if types[f.name] == want else f"CAST({name} AS {want})"

    union = "" if same else ", union_by_name = true"
    return f"SELECT {_select_list(t, stored, part, derived)} FROM read_parquet({file_list}, {hive}{union})"


def is_compacted(files: list[Path]) -> bool:
    """A partition is clean (duplicate-free) when its only file is a compacted one."""
    return len(files) == 1 and files[0].name.startswith(COMPACT_PREFIX)


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
        parts.append(stored_select(lake, t, clean, DERIVED["readings"]))
    if raw:
        parts.append(f"{stored_select(lake, t, raw, DERIVED['readings'])} QUALIFY row_number() OVER "
                     "(PARTITION BY meter_id, ts ORDER BY received_at NULLS LAST) = 1")
    return " UNION ALL ".join(f"({p})" for p in parts)
