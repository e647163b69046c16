"""``meters sql --export FILE.duckdb``: a DuckDB database file holding only views over the lake's
Parquet files, for tools outside meters (the DuckDB CLI, DBeaver, R, Polars, notebooks).

The views are the ones :func:`meters.sql.connect` makes (:func:`meters.sql.view_selects`): same file
lists (``_current`` manifests honoured, hidden files skipped), same deduplicated ``readings``, same
types, so every tool sees the numbers ``meters sql`` shows. The file lists are a snapshot: export again
after new data lands. A ``lake_info`` view tells the lake's root, time zone and export time.

File paths are absolute by default; ``relative=True`` writes them relative to the export file's
directory, for a lake and database moved together (open it from that directory, or
``SET file_search_path`` to it: DuckDB resolves relative paths against the working directory).
The file is written in DuckDB 1.0's storage format, which every later DuckDB reads.
The file needs no sandbox: it holds no data and no credentials, and it is opened outside meters.
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb

from .errors import MetersError
from .lake import Lake
from .views import quote_ident, quote_literal

STORAGE_VERSION = "v1.0.0"   # the file format every DuckDB since 1.0 reads (DBeaver, R, the CLI)


def export_duckdb(lake: Lake | str | os.PathLike, path: str | os.PathLike, *, relative: bool = False) -> list[str]:
    """Write the views of ``lake`` into a new DuckDB file at ``path`` (replacing it atomically);
    the names of the views."""
    from .sql import view_selects

    lake = lake if isinstance(lake, Lake) else Lake(lake)
    if not lake.is_local:
        raise MetersError("--export needs a local lake: the views of an object-store lake need its credentials")
    path = Path(path).absolute()
    if path.suffix.lower() not in (".duckdb", ".db", ".ddb"):
        raise MetersError(f"--export {path.name}: give a DuckDB file name ending in .duckdb")
    if not path.parent.is_dir():
        raise MetersError(f"--export: directory {path.parent} does not exist")
    lake = Lake(Path(lake.root).absolute())    # absolute file names, whatever the working directory
    root = str(Path(lake.root)).rstrip("/")
    selects = view_selects(lake)
    shown_root = root
    if relative:
        rel_root = shown_root = os.path.relpath(root, path.parent)
        selects = {n: s.replace(quote_literal(root + "/")[:-1], quote_literal(rel_root + "/")[:-1])
                   for n, s in selects.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp), config={"storage_compatibility_version": STORAGE_VERSION})
        try:
            if relative:   # DuckDB checks the files when a view is made
                con.execute(f"SET file_search_path = {quote_literal(str(path.parent))}")
            for name, select in selects.items():
                con.execute(f"CREATE VIEW {quote_ident(name)} AS {select}")
            exported = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
            con.execute(f"CREATE VIEW lake_info AS SELECT {quote_literal(shown_root)} AS lake, "
                        f"{quote_literal(lake.timezone_name)} AS timezone, "
                        f"{quote_literal('relative' if relative else 'absolute')} AS paths, "
                        f"TIMESTAMPTZ {quote_literal(exported)} AS exported_at")
        finally:
            con.close()
        os.replace(tmp, path)
    except duckdb.Error as e:
        raise MetersError(f"--export {path}: {str(e).splitlines()[0]}") from None
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return [*selects, "lake_info"]
