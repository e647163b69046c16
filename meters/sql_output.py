"""Printing SQL results as they stream: DuckDB hands the result over in Arrow record batches
(:func:`batches`), each format writes a batch and forgets it, so memory stays bounded whatever the
result size.

- ``table``: the first ``max_rows`` rows as an aligned text table, then the rest is counted, not kept
  (``(7,661,377 rows, 7,661,337 not shown: …)``); unlimited ``max_rows`` prints every row in
  blocks of :data:`BLOCK_ROWS` (column widths of the first block; a longer value widens its row only).
- ``csv``, ``json`` (one array per result), ``ndjson`` (one object per line): every row.
- ``parquet``: a Parquet file, written batch by batch.

Values print exactly: money (DECIMAL) keeps its scale (``420.00``; a string in JSON, like
``meters bill --json``), timestamps are ISO 8601 in the lake's time zone, BLOBs hex.
"""
from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
from collections.abc import Iterator
from typing import TextIO

import pyarrow as pa

from .errors import MetersError

FORMATS = ("table", "csv", "json", "ndjson", "parquet")
BATCH_ROWS = 8192          # rows DuckDB hands over at a time
BLOCK_ROWS = 1000          # rows per aligned block of an unlimited table
DEFAULT_TERMINAL_ROWS = 40  # table rows shown on a terminal unless --max-rows


def plain(v):
    """A value as text-friendly Python: ISO dates and times, exact decimals, hex bytes."""
    if isinstance(v, dt.datetime) and v.tzinfo is None and v.time() == dt.time():
        return v.date().isoformat()          # a DATE that pandas turned into a midnight timestamp
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)                        # 420.00 stays 420.00
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, dt.timedelta):
        return str(v)
    return v


def _text(v) -> str:
    return "NULL" if v is None else str(plain(v))


def batches(rel, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The relation's result as Arrow record batches, fetched one at a time; DuckDB errors raised
    while fetching become :class:`MetersError`."""
    from .sql import sql_error

    try:
        reader = rel.to_arrow_reader(batch_rows)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            if batch.num_rows:
                yield batch
    except MetersError:
        raise
    except Exception as e:  # duckdb errors come lazily, while fetching (also through pyarrow)
        raise sql_error(e) from None


def rows_of(batch: pa.RecordBatch) -> list[tuple]:
    cols = [c.to_pylist() for c in batch.columns]
    return list(zip(*cols)) if cols else []


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def format_table(columns: list[str], rows: list[tuple], right: list[bool] | None = None,
                 widths: list[int] | None = None) -> tuple[str, list[int]]:
    """An aligned text table (header, rule, rows) and its column widths."""
    cells = [[_text(v) for v in r] for r in rows]
    if widths is None:
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    right = right or [False] * len(columns)

    def line(values):
        return " | ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    out = [line(columns), "-+-".join("-" * w for w in widths)] + [line(r) for r in cells]
    return "\n".join(out) + "\n", widths


def render(columns: list[str], rows: list[tuple], fmt: str, *, max_rows: int | None = None) -> str:
    """Text of an in-memory result in ``fmt`` (table, csv, json or ndjson)."""
    out = io.StringIO()
    try:   # through Arrow: numbers right-aligned, numpy scalars made plain
        chunks = pa.Table.from_pylist([dict(zip(columns, r)) for r in rows]).to_batches() \
            if len(set(columns)) == len(columns) else [rows]
    except (pa.ArrowException, TypeError, ValueError):
        chunks = [rows]
    write_result(columns, iter(chunks), fmt, out, max_rows=max_rows)
    return out.getvalue()


def write_result(columns: list[str], chunks, fmt: str, out: TextIO, *, max_rows: int | None = None) -> int:
    """Write a result, given as Arrow batches (or lists of row tuples), in ``fmt`` to ``out`` as it
    comes; the number of rows. Nothing is written before the first batch arrives (an error while
    the query runs leaves ``out`` untouched)."""
    import itertools

    chunks = iter(chunks)
    first = next(chunks, None)
    chunks = itertools.chain([first] if first is not None else [], chunks)
    n = 0
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        for chunk in chunks:
            rows = rows_of(chunk) if isinstance(chunk, pa.RecordBatch) else chunk
            w.writerows([[plain(v) for v in r] for r in rows])
            out.flush()
            n += len(rows)
        return n
    if fmt in ("json", "ndjson"):
        first = True
        if fmt == "json":
            out.write("[")
        for chunk in chunks:
            rows = rows_of(chunk) if isinstance(chunk, pa.RecordBatch) else chunk
            for r in rows:
                obj = json.dumps(dict(zip(columns, map(plain, r))), default=str, ensure_ascii=False)
                if fmt == "ndjson":
                    out.write(obj + "\n")
                else:
                    out.write(("\n " if first else ",\n ") + obj)
                first = False
            out.flush()
            n += len(rows)
        if fmt == "json":
            out.write("\n]\n" if not first else "]\n")
        return n
    if fmt != "table":
        raise MetersError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    shown: list[tuple] = []
    widths = right = None
    started = False       # the header (and the rows shown) are out
    for chunk in chunks:
        if isinstance(chunk, pa.RecordBatch):
            if right is None:
                right = [_is_number(f.type) for f in chunk.schema]
            if started and max_rows is not None:
                n += chunk.num_rows          # counted, never converted
                continue
            size = chunk.num_rows            # only the rows shown are converted to Python
            rows = rows_of(chunk if max_rows is None else chunk.slice(0, max_rows - len(shown)))
        else:
            rows = chunk
            size = len(rows)
        n += size
        if max_rows is not None:
            shown.extend(rows[:max_rows - len(shown)])
            if len(shown) >= max_rows:       # shown at once; the rest is only counted
                out.write(format_table(columns, shown, right)[0])
                out.flush()
                started = True
        else:
            shown.extend(rows)
            if len(shown) >= BLOCK_ROWS:     # unlimited: aligned block by block
                text, widths = format_table(columns, shown, right, widths)
                out.write(_body(text) if started else text)
                out.flush()
                started, shown = True, []
    if not started or (max_rows is None and shown):
        text, _ = format_table(columns, shown, right, widths)
        out.write(_body(text) if started else text)
    more = n - len(shown) if max_rows is not None else 0
    hint = f", {more:,} not shown: raise --max-rows or use --format csv/--out" if more > 0 else ""
    out.write(f"({n:,} row{'' if n == 1 else 's'}{hint})\n")
    return n


def _body(table_text: str) -> str:
    """A table's rows without its header and rule (a later block of the same table)."""
    return "".join(table_text.splitlines(keepends=True)[2:])


def print_result(rel, fmt: str, out: TextIO, *, max_rows: int | None = None) -> int:
    """Stream a DuckDB relation's result in ``fmt`` (not parquet) to ``out``; the number of rows."""
    if rel is None:
        return 0
    return write_result(list(rel.columns), batches(rel), fmt, out, max_rows=max_rows)


def save_parquet(rel, path: str) -> int:
    """Stream a DuckDB relation's result into a Parquet file; the number of rows."""
    import pyarrow.parquet as pq

    from .sql import sql_error

    n = 0
    it = batches(rel)
    first = next(it, None)
    try:
        schema = first.schema if first is not None else rel.limit(0).to_arrow_table().schema
    except Exception as e:  # noqa: BLE001 - duckdb errors raised lazily
        raise sql_error(e) from None
    with pq.ParquetWriter(path, schema) as w:
        for b in ([first] if first is not None else []):
            w.write_batch(b)
            n += b.num_rows
        for b in it:
            w.write_batch(b)
            n += b.num_rows
    return n
