"""The lake: a directory of hive-partitioned Parquet tables plus ``lake.json`` (time zone, version).

Writers are atomic: every file is written under a hidden temporary name, flushed, fsynced and then
renamed into place, so a reader never sees a half-written file. Readers skip hidden files.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .errors import MetersError
from .schemas import TABLES, Table, table

CONFIG_NAME = "lake.json"
MANIFEST = "_current"
LAKE_VERSION = 1
DEFAULT_TIMEZONE = "Asia/Shanghai"
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3)


def _check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MetersError(f"unknown time zone {name!r} (use an IANA name such as Asia/Shanghai)") from None


def init_lake(path: str | os.PathLike, timezone: str = DEFAULT_TIMEZONE) -> "Lake":
    """Create (or open, if it already exists with the same time zone) a lake at ``path``."""
    root = Path(path)
    _check_timezone(timezone)
    cfg_path = root / CONFIG_NAME
    if cfg_path.exists():
        lake = Lake(root)
        if lake.timezone_name != timezone:
            raise MetersError(
                f"lake {root} already exists with time zone {lake.timezone_name}; "
                f"refusing to change it to {timezone}")
        return lake
    root.mkdir(parents=True, exist_ok=True)
    config = {"version": LAKE_VERSION, "timezone": timezone,
              "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_bytes(cfg_path, (json.dumps(config, indent=2) + "\n").encode())
    for name in TABLES:
        (root / name).mkdir(exist_ok=True)
    lake = Lake(root)
    from .tariffs import builtin_catalog  # the built-in catalog is the lake's first tariffs
    from .registry import save_tariffs
    save_tariffs(lake, builtin_catalog())
    return lake


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Lake:
    """An opened lake directory. ``Lake(path)`` fails clearly if ``meters init`` was not run."""

    def __init__(self, path: str | os.PathLike):
        self.root = Path(path)
        cfg = self.root / CONFIG_NAME
        if not cfg.exists():
            raise MetersError(f"{self.root} is not a meters lake (no {CONFIG_NAME}); "
                              f"run `meters init --lake {self.root}` first")
        try:
            self.config = json.loads(cfg.read_text())
        except json.JSONDecodeError as e:
            raise MetersError(f"{cfg} is not valid JSON: {e}") from None
        self.timezone_name: str = self.config.get("timezone", DEFAULT_TIMEZONE)
        self.tz = _check_timezone(self.timezone_name)

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r}, tz={self.timezone_name})"

    # -- paths -----------------------------------------------------------------------------------
    def table_dir(self, name: str) -> Path:
        table(name)
        return self.root / name

    def partition_dir(self, name: str, key: str | None) -> Path:
        """Directory of one partition (``key`` like ``2026-11-23`` for day tables)."""
        t = table(name)
        if t.partition is None:
            return self.table_dir(name)
        if key is None:
            raise ValueError(f"table {name} is partitioned by {t.partition}; give a partition key")
        return self.table_dir(name) / f"{t.partition}={key}"

    def partitions(self, name: str) -> list[str]:
        """Sorted partition keys that exist for a partitioned table."""
        t = table(name)
        d = self.table_dir(name)
        if t.partition is None or not d.exists():
            return []
        prefix = t.partition + "="
        return sorted(p.name[len(prefix):] for p in d.iterdir()
                      if p.is_dir() and p.name.startswith(prefix))

    def files(self, name: str, key: str | None = None) -> list[Path]:
        """Visible Parquet files of a table (one partition if ``key`` is given)."""
        t = table(name)
        if t.partition is None or key is not None:
            dirs = [self.partition_dir(name, key)]
        else:
            dirs = [self.partition_dir(name, k) for k in self.partitions(name)]
        out: list[Path] = []
        for d in dirs:
            if d.exists():
                out.extend(sorted(p for p in d.iterdir()
                                  if p.suffix == ".parquet" and not p.name.startswith(".")))
        return out

    # -- time ------------------------------------------------------------------------------------
    def local_day(self, ts: dt.datetime) -> dt.date:
        """The lake-local calendar day of an aware datetime."""
        return ts.astimezone(self.tz).date()

    def day_bounds_utc(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """UTC instants of local midnight at the start and end of ``day``."""
        start = dt.datetime.combine(day, dt.time(), self.tz)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.tz)
        return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)

    # -- writing ---------------------------------------------------------------------------------
    def write(self, name: str, data: pa.Table, key: str | None = None, *, file_name: str | None = None,
              sort_by: list[tuple[str, str]] | None = None, fsync: bool = True,
              **parquet_options) -> Path:
        """Atomically write ``data`` as one new Parquet file of table ``name`` (partition ``key``).

        The table is cast to the table's schema (missing nullable columns are filled with nulls),
        so a column that does not belong to the schema is an error, not silently dropped.
        Returns the final path.
        """
        t = table(name)
        data = conform(data, t)
        if sort_by:
            data = data.sort_by(sort_by)
        d = self.partition_dir(name, key)
        d.mkdir(parents=True, exist_ok=True)
        final = d / (file_name or f"part-{uuid.uuid4().hex}.parquet")
        tmp = d / f".{final.name}.{uuid.uuid4().hex}.tmp"
        opts = {**PARQUET_OPTIONS, **parquet_options}
        with open(tmp, "wb") as f:
            pq.write_table(data, f, **opts)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, final)
        if fsync:
            _fsync_dir(d)
        return final

    def replace_partition(self, name: str, key: str | None, data: pa.Table, **kw) -> Path:
        """Replace every file of one partition by one new file holding ``data``, atomically for
        readers: the partition's ``_current`` manifest (a JSON list of file names) switches from the
        old files to the new one in a single rename, then the old files are removed. A crash at any
        point leaves either the old or the new content visible, never both. Use for tables with a
        single writer per partition (billing outputs, registry); appenders use :meth:`write`."""
        d = self.partition_dir(name, key)
        d.mkdir(parents=True, exist_ok=True)
        manifest = d / MANIFEST
        old = self._current_files(name, key)
        if not manifest.exists():  # pin the current content before a new file becomes visible
            atomic_write_bytes(manifest, json.dumps([p.name for p in old]).encode())
        path = self.write(name, data, key, **kw)
        atomic_write_bytes(manifest, json.dumps([path.name]).encode())
        for p in self.files(name, key):
            if p != path:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        return path

    # -- reading ---------------------------------------------------------------------------------
    def read(self, name: str, key: str | None = None, *, columns: list[str] | None = None,
             filter=None) -> pa.Table:
        """Read a table (or one partition) into Arrow with the table's schema (plus the partition
        column as a string when reading the whole partitioned table)."""
        t = table(name)
        if t.partition is not None and key is None:
            parts = []
            for k in self.partitions(name):
                part = self.read(name, k, columns=columns, filter=filter)
                parts.append(part.append_column(t.partition, pa.array([k] * part.num_rows, pa.string())))
            if parts:
                return pa.concat_tables(parts)
            empty = empty_table(t) if columns is None else empty_table(t).select(columns)
            return empty.append_column(t.partition, pa.array([], pa.string()))
        files = self._current_files(name, key)
        if not files:
            empty = empty_table(t)
            return empty if columns is None else empty.select(columns)
        dataset = ds.dataset([str(p) for p in files], schema=t.schema, format="parquet")
        return dataset.to_table(columns=columns, filter=filter)

    def _current_files(self, name: str, key: str | None) -> list[Path]:
        files = self.files(name, key)
        manifest = self.partition_dir(name, key) / MANIFEST
        if manifest.exists():
            current = set(json.loads(manifest.read_text()))
            return [p for p in files if p.name in current]
        return files

    # -- locking ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str = "registry"):
        """An exclusive advisory lock (``.locks/<name>``) for read-modify-write of small tables."""
        d = self.root / ".locks"
        d.mkdir(exist_ok=True)
        with open(d / name, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def empty_table(t: Table) -> pa.Table:
    return t.schema.empty_table()


def conform(data: pa.Table, t: Table) -> pa.Table:
    """Cast ``data`` to table ``t``'s schema: reorder, fill missing nullable columns with nulls,
    and raise a clear error for unknown or missing required columns."""
    names = set(data.column_names)
    unknown = names - set(t.schema.names)
    if unknown:
        raise MetersError(f"table {t.name}: unknown column(s) {', '.join(sorted(unknown))}")
    cols = []
    for field in t.schema:
        if field.name in names:
            cols.append(data.column(field.name).cast(field.type))
        elif field.nullable:
            cols.append(pa.nulls(data.num_rows, field.type))
        else:
            raise MetersError(f"table {t.name}: required column {field.name!r} is missing")
    return pa.Table.from_arrays(cols, schema=t.schema)


def open_lake(path: str | os.PathLike) -> Lake:
    """Open an existing lake (clear error when it does not exist)."""
    return Lake(path)
