"""The lake: a directory of hive-partitioned Parquet tables plus ``lake.json`` (time zone, version).

Writers are atomic: every file is written under a hidden temporary name, flushed, fsynced and then
renamed into place, so a reader never sees a half-written file. Readers skip hidden files.

A lake may also live in object storage: ``Lake("s3://bucket/lake?endpoint_override=...")`` (any URL
``pyarrow.fs.FileSystem.from_uri`` opens, else any fsspec URL). There a file is encoded in memory and
stored with one PUT (an object appears whole or not at all): no temporary name, no rename, no fsync —
the completed upload is the durability point. Paths of such a lake are :class:`RemotePath` objects
(the subset of ``pathlib.Path`` the lake's callers use; object-store plumbing in :mod:`meters.storage`).
See docs/object-storage.md.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.parquet as pq

from .damage import damaged_file
from .errors import LakeDamaged, MetersError
from .schemas import TABLES, Table, table
from .storage import RemotePath, duckdb_filesystem, resolve

CONFIG_NAME = "lake.json"
MANIFEST = "_current"
QUARANTINE = "_quarantine"  # corrupt files moved aside by `meters check --repair`
LAKE_VERSION = 1
DEFAULT_TIMEZONE = "Asia/Shanghai"
# page checksums (CRC32) let `meters check` find a flipped bit that would otherwise decode silently
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, write_page_checksum=True)
# Per-account outputs (written sorted by account) are read one account at a time by the account
# service and its pages: row groups this small let DuckDB skip all but one by account_id statistics
# (``billing_state``, sorted by meter: the account service reads one account's row group).
ACCOUNT_ROW_GROUP = 65_536
ROW_GROUPS = {n: ACCOUNT_ROW_GROUP for n in ("charges", "charge_lines", "bills", "bill_lines", "ledger", "alerts",
                                             "billing_state")}
# … and only their repeating string columns dictionary-encoded: ids, amounts, counters and dates are
# mostly distinct or small, and trying a dictionary on every column cost 40 % of the carried state's
# write for a larger file (measured: 250k accounts 0.39 → 0.24 s CPU, 11.2 → 8.8 MB)
DICTIONARY = {"charges": ["tariff_id", "run_id"], "charge_lines": ["band"], "bills": ["run_id"],
              "bill_lines": ["band"], "ledger": ["kind", "ref"], "alerts": ["kind", "language"], "billing_state": [],
              "intervals": ["quantity", "quality", "flag"]}
# (the intervals' meter id and time, each a repeating pattern zstd compresses to < 3 % of a day's file,
# are stored plain: hashing them into dictionaries (or deltas) cost as much again as the rest of their
# write. A 250k-meter day's intervals, required columns: 1.05 s CPU as every column a dictionary and
# nullable, 0.6 s now, 0.8 MB more on 27 MB (measured, medians of interleaved runs))


def writer_options(name: str, **overrides) -> dict:
    """Parquet writer options of table ``name``: the lake's defaults, its row group size and dictionary
    columns, ``overrides``."""
    base = {**PARQUET_OPTIONS, "row_group_size": ROW_GROUPS[name]} if name in ROW_GROUPS else PARQUET_OPTIONS
    if name in DICTIONARY:
        base = {**base, "use_dictionary": DICTIONARY[name]}
    return {**base, **overrides}


def _check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MetersError(f"unknown time zone {name!r} (use an IANA name such as Asia/Shanghai)") from None


def init_lake(path: str | os.PathLike, timezone: str = DEFAULT_TIMEZONE) -> "Lake":
    """Create (or open, if it already exists with the same time zone) a lake at ``path`` (a local
    path, ``file://`` URL or object-store URL)."""
    root, _fs, url = resolve(path)
    _check_timezone(timezone)
    cfg_path = root / CONFIG_NAME
    if cfg_path.exists():
        lake = Lake(url)
        if lake.timezone_name != timezone:
            raise MetersError(
                f"lake {root} already exists with time zone {lake.timezone_name}; "
                f"refusing to change it to {timezone}")
        return lake
    root.mkdir(parents=True, exist_ok=True)
    config = {"version": LAKE_VERSION, "timezone": timezone,
              "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    _put(cfg_path, (json.dumps(config, indent=2) + "\n").encode())
    for name in TABLES:
        (root / name).mkdir(exist_ok=True)
    lake = Lake(url)
    from .catalog import seed_catalog  # the built-in catalog is the lake's first tariffs
    seed_catalog(lake)
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
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename in it is durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put(path: Path | RemotePath, data: bytes) -> None:
    """Store a small file atomically: temp+fsync+rename locally, one PUT in object storage."""
    if isinstance(path, RemotePath):
        path.write_bytes(data)
    else:
        atomic_write_bytes(path, data)


_REMOTE_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_REMOTE_LOCKS_GUARD = threading.Lock()
REMOTE_LOCK_NAMES = ("registry", "import", "compact-")  # serialized in-process only on object stores


class Lake:
    """An opened lake directory (or object-store prefix). ``Lake(path)`` fails clearly if ``meters
    init`` was not run. ``root`` is a :class:`Path` for a local lake, a :class:`RemotePath` for an
    object-store URL; ``url`` is what reopens the lake (in other processes too)."""

    def __init__(self, path: str | os.PathLike):
        self.root, self.fs, self.url = resolve(path)
        cfg = self.root / CONFIG_NAME
        try:
            found = cfg.exists()
        except OSError as e:
            raise MetersError(f"cannot reach the lake {self.url}: {e}") from None
        if not found:
            where = self.root if self.is_local else self.url
            raise MetersError(f"{where} is not a meters lake (no {CONFIG_NAME}); "
                              f"run `meters init --lake {where}` first")
        try:
            self.config = json.loads(cfg.read_text())
        except json.JSONDecodeError as e:
            raise MetersError(f"{cfg} is not valid JSON: {e}") from None
        self.timezone_name: str = self.config.get("timezone", DEFAULT_TIMEZONE)
        self.tz = _check_timezone(self.timezone_name)

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r}, tz={self.timezone_name})"

    @property
    def is_local(self) -> bool:
        """True for a lake on a local (or mounted) path, False for object storage."""
        return self.fs is None

    def require_local(self, what: str) -> Path:
        """The local root, or a clear error naming ``what`` needs a local lake."""
        if not self.is_local:
            raise MetersError(f"{what} needs a lake on a local or mounted path; {self.url} is in "
                              "object storage (see docs/object-storage.md)")
        return self.root

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
        final = d / (file_name or f"part-{uuid.uuid4().hex}.parquet")
        opts = writer_options(name, **parquet_options)
        if not self.is_local:
            # object storage: encode in memory, then one PUT; the object appears whole at close
            buf = pa.BufferOutputStream()
            pq.write_table(data, buf, **opts)
            final.write_bytes(buf.getvalue())
            return final
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{final.name}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            pq.write_table(data, f, **opts)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, final)
        if fsync:
            fsync_dir(d)
        return final

    def replace_partition(self, name: str, key: str | None, data: pa.Table, *, pieces: int | None = None,
                          stats: list[str] | bool = True, **kw) -> Path | list[Path]:
        """Replace every file of one partition by one new file holding ``data``, atomically for
        readers: the partition's ``_current`` manifest (a JSON list of file names) switches from the
        old files to the new one in a single rename, then the old files are removed. A crash at any
        point leaves either the old or the new content visible, never both. Use for tables with a
        single writer per partition (billing outputs, registry); appenders use :meth:`write`.

        With ``pieces`` (local lakes), ``data`` may have dictionary-encoded string columns (Parquet
        stores them as strings either way; not casting saves materialising the strings) and is written
        as up to ``pieces`` files in parallel threads (:meth:`write_staged`), with column statistics for
        ``stats`` only; ``kw`` then are Parquet options (e.g. ``compression_level``). Returns the new
        files' paths."""
        if pieces is not None:
            self.stage(name, key)
            names = self.write_staged(name, key, data, pieces=pieces, stats=stats, **kw)
            self.switch(name, key, names)
            d = self.partition_dir(name, key)
            return [d / n for n in sorted(names)]
        d = self.partition_dir(name, key)
        d.mkdir(parents=True, exist_ok=True)
        manifest = d / MANIFEST
        old = self.current_files(name, key)
        if not manifest.exists():  # pin the current content before a new file becomes visible
            _put(manifest, json.dumps([p.name for p in old]).encode())
        path = self.write(name, data, key, **kw)
        _put(manifest, json.dumps([path.name]).encode())
        for p in self.files(name, key):
            if p != path:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        return path

    # -- staged files: written by several writers, switched in at once ----------------------------
    def stage(self, name: str, key: str | None) -> None:
        """Pin the partition's current content in its ``_current`` manifest, so files written next by
        :meth:`write_staged` (here or in other processes) stay invisible until :meth:`switch`."""
        d = self.partition_dir(name, key)
        d.mkdir(parents=True, exist_ok=True)
        if not (d / MANIFEST).exists():
            atomic_write_bytes(d / MANIFEST, json.dumps([p.name for p in self.files(name, key)]).encode())

    def write_staged(self, name: str, key: str | None, data: pa.Table, *, pieces: int = 2,
                     stats: list[str] | bool = True, prefix: str = "", **options) -> list[str]:
        """Write ``data`` as up to ``pieces`` new files of a :meth:`stage`-d partition of a local lake
        (one per million rows at most, encoded in parallel threads), invisible until :meth:`switch`;
        returns their names (``part-<prefix><uuid>.parquet``: a prefix orders several writers' files).
        String columns may be dictionary-encoded; ``options`` override the lake's Parquet options."""
        data = _encoded_as(name, data)
        d = self.partition_dir(name, key)
        k = max(1, min(pieces, data.num_rows // 1_000_000))
        cuts = [data.num_rows * i // k for i in range(k + 1)]
        names = [f"part-{prefix}{uuid.uuid4().hex}.parquet" for _ in range(k)]

        def write(i):  # pyarrow releases the GIL: the pieces are encoded in parallel
            final = d / names[i]
            tmp = d / f".{final.name}.tmp"
            with open(tmp, "wb") as fh:
                pq.write_table(data.slice(cuts[i], cuts[i + 1] - cuts[i]), fh, **writer_options(name, **options),
                               write_statistics=stats)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)

        with ThreadPoolExecutor(k) as pool:
            list(pool.map(write, range(k)))
        return names

    def staged_writer(self, name: str, key: str | None, *, file_name: str | None = None, encoded: bool = False,
                      stats: list[str] | bool = True, **options) -> "StagedWriter":
        """A file of table ``name`` (partition ``key``, local lakes) appended to in pieces
        (:meth:`StagedWriter.write`, e.g. one per block of accounts) and invisible until
        :meth:`StagedWriter.finish` renames it into place as ``file_name`` (default ``part-<uuid>.parquet``:
        then :meth:`stage` the partition first and :meth:`switch` it in). ``encoded``: the pieces may
        have dictionary-encoded string columns (as :meth:`write_staged` takes them)."""
        return StagedWriter(self, name, key, file_name, encoded, stats, options)

    def switch(self, name: str, key: str | None, names: list[str]) -> None:
        """The switch of a staged partition: its manifest names exactly ``names``; every other file
        (the old ones, and any left by an interrupted or retried writer) is removed."""
        names = sorted(names)
        atomic_write_bytes(self.partition_dir(name, key) / MANIFEST, json.dumps(names).encode())
        for p in self.files(name, key):
            if p.name not in names:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

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
        files = self.current_files(name, key)
        if not files:
            empty = empty_table(t)
            return empty if columns is None else empty.select(columns)
        try:
            return self.dataset(files, t.schema).to_table(columns=columns, filter=filter)
        except (OSError, pa.ArrowException) as e:
            raise self.damage(files, e) from None

    def damage(self, files: list, error: BaseException) -> BaseException:
        """What to raise when reading ``files`` raised ``error``: :class:`LakeDamaged` naming the
        damaged file (and ``meters check --repair``), or ``error`` itself when no file is damaged."""
        found = damaged_file(files, error) if self.is_local else None
        if found is None:
            return error
        path, why = found
        return LakeDamaged(f"lake file {path} is damaged ({why}); "
                           f"`meters check --lake {self.root} --repair` quarantines it")

    def quarantine(self, path: Path) -> Path:
        """Move a (corrupt) file of this local lake to ``_quarantine/<its path in the lake>`` and drop
        it from its partition's manifest; returns the new path."""
        rel = Path(path).relative_to(self.root)
        dest = self.root / QUARANTINE / rel
        while dest.exists():
            dest = dest.with_name(f"{dest.stem}.{uuid.uuid4().hex[:8]}{dest.suffix}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        fsync_dir(Path(path).parent)
        manifest = Path(path).parent / MANIFEST
        if manifest.exists():
            with contextlib.suppress(ValueError):
                names = json.loads(manifest.read_text())
                if isinstance(names, list) and rel.name in names:
                    atomic_write_bytes(manifest, json.dumps([n for n in names if n != rel.name]).encode())
        return dest

    def dataset(self, files: list, schema: pa.Schema) -> "pyarrow.dataset.Dataset":
        """A pyarrow dataset over ``files`` (paths returned by :meth:`files`) of this lake."""
        import pyarrow.dataset as ds   # imported when first read: it brings pandas (~0.8 s)

        if self.is_local:
            return ds.dataset([str(p) for p in files], schema=schema, format="parquet")
        return ds.dataset([p.path for p in files], schema=schema, format="parquet", filesystem=self.fs)

    # -- DuckDB ----------------------------------------------------------------------------------
    @functools.cached_property
    def _duckdb_filesystem(self):
        return duckdb_filesystem(self.fs)

    def sql_path(self, p) -> str:
        """The name DuckDB reads file ``p`` by (after :meth:`register_duckdb`)."""
        if self.is_local:
            return str(p)
        return f"meterslake://{p.path}"

    def register_duckdb(self, con) -> None:
        """Let DuckDB connection ``con`` read this lake's files (object storage: the lake's pyarrow
        filesystem seen by fsspec as ``meterslake://``; nothing to do for a local lake)."""
        if not self.is_local:
            con.register_filesystem(self._duckdb_filesystem)

    def current_files(self, name: str, key: str | None) -> list[Path]:
        """Files of one partition (or an unpartitioned table) as its `_current` manifest lists them."""
        files = self.files(name, key)
        manifest = self.partition_dir(name, key) / MANIFEST
        if manifest.exists():
            current = set(json.loads(manifest.read_text()))
            return [p for p in files if p.name in current]
        return files

    # -- locking ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str = "registry"):
        """An exclusive advisory lock (``.locks/<name>``) for read-modify-write of small tables.

        Object storage has no flock: the registry, import and compaction locks serialize this
        process only (run one registry writer and one compactor per lake at a time, see
        docs/object-storage.md); any other lock (billing, payments) raises :class:`MetersError`."""
        if not self.is_local:
            if not name.startswith(REMOTE_LOCK_NAMES):
                self.require_local(f"the {name!r} lock")
            with _REMOTE_LOCKS_GUARD:
                lk = _REMOTE_LOCKS.setdefault((self.url, name), threading.Lock())
            with lk:
                yield
            return
        d = self.root / ".locks"
        d.mkdir(exist_ok=True)
        with open(d / name, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _encoded_as(name: str, data: pa.Table) -> pa.Table:
    """``data`` with table ``name``'s columns in order, whose types are the schema's or a dictionary of
    them, required where the schema's are (as :func:`conform` writes them: Parquet then stores no
    definition levels for them)."""
    schema = table(name).schema
    fields = []
    for f in schema:
        got = data.schema.field(f.name).type
        if got != f.type and not (pa.types.is_dictionary(got) and got.value_type == f.type):
            raise MetersError(f"table {name}: column {f.name} is {got}, expected {f.type}")
        if not f.nullable and data.column(f.name).null_count:
            raise MetersError(f"table {name}: required column {f.name!r} has nulls")
        fields.append(f.with_type(got))
    data = data.select(schema.names)
    return pa.Table.from_arrays(data.columns, schema=pa.schema(fields, metadata=schema.metadata))


class StagedWriter:
    """One Parquet file of a lake table written piece by piece under a hidden name (see
    :meth:`Lake.staged_writer`): ``write`` appends row groups, ``finish`` flushes, fsyncs and renames
    it to its final name (returned), ``abort`` removes it. The pieces' row groups are at most the
    table's row group size."""

    def __init__(self, lake: Lake, name: str, key: str | None, file_name: str | None, encoded: bool,
                 stats, options: dict):
        self.lake, self.name, self.encoded = lake, name, encoded
        self.dir = lake.partition_dir(name, key)
        self.file_name = file_name or f"part-{uuid.uuid4().hex}.parquet"
        self.tmp = self.dir / f".{self.file_name}.{uuid.uuid4().hex}.tmp"
        opts = writer_options(name, **options)
        self.row_group_size = opts.pop("row_group_size", None)
        self.options = {**opts, "write_statistics": stats}
        self.rows = 0
        self._fh = None
        self._writer = None

    def write(self, data: pa.Table) -> None:
        """Append ``data`` (cast to the table's schema; dictionary columns kept when ``encoded``)."""
        data = _encoded_as(self.name, data) if self.encoded else conform(data, table(self.name))
        if self._writer is None:
            self._made_dir = not self.dir.exists()
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.tmp, "wb")
            self._writer = pq.ParquetWriter(self._fh, data.schema, **self.options)
        self._writer.write_table(data, row_group_size=self.row_group_size)
        self.rows += data.num_rows

    def finish(self) -> str:
        """Close, fsync and rename into place (an empty file when nothing was written); the file name."""
        if self._writer is None:
            self.write(empty_table(table(self.name)))
        self._writer.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.dir / self.file_name)
        fsync_dir(self.dir)
        return self.file_name

    def abort(self) -> None:
        """Drop the file (a night that failed before its switch)."""
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
                self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
        if self._writer is not None and self._made_dir:
            with contextlib.suppress(OSError):
                self.dir.rmdir()      # (only when empty)


def empty_table(t: Table) -> pa.Table:
    return t.schema.empty_table()


def conform(data: pa.Table, t: Table) -> pa.Table:
    """Cast ``data`` to table ``t``'s schema: reorder, fill missing nullable columns with nulls,
    and raise a clear error for unknown or missing required columns. A dictionary-encoded column of
    the schema's value type stays encoded (Parquet writes its dictionary as is; readers get values)."""
    names = set(data.column_names)
    unknown = names - set(t.schema.names)
    if unknown:
        raise MetersError(f"table {t.name}: unknown column(s) {', '.join(sorted(unknown))}")
    cols, fields = [], []
    for field in t.schema:
        if field.name in names:
            col = data.column(field.name)
            if pa.types.is_dictionary(col.type) and col.type.value_type == field.type:
                cols.append(col)
                fields.append(field.with_type(col.type))
                continue
            cols.append(col.cast(field.type))
        elif field.nullable:
            cols.append(pa.nulls(data.num_rows, field.type))
        else:
            raise MetersError(f"table {t.name}: required column {field.name!r} is missing")
        fields.append(field)
    return pa.Table.from_arrays(cols, schema=pa.schema(fields, metadata=t.schema.metadata))


def open_lake(path: str | os.PathLike) -> Lake:
    """Open an existing lake (clear error when it does not exist)."""
    return Lake(path)
