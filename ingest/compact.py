"""Compaction of ``readings`` partitions: many small arrival-order files → one sorted, deduplicated file.

Safe with concurrent ingest workers and readers:

1. take the list of the partition's visible files *now* (files written later are not touched);
2. read them, keep the first received row of each ``(meter_id, ts)``, sort by ``(meter_id, ts)``;
3. write ``compact-<token>.parquet`` atomically (hidden temp file, fsync, rename, fsync dir) and check
   its row count;
4. remove exactly the input files (older compacted files first).

On an object-store lake step 3 is one PUT of the finished file (no temp name, no rename, no fsync).
A crash between 3 and 4 leaves inputs and output side by side: readers deduplicate (a partition with
more than one file is never treated as clean), and the next compaction merges them. Compactions of
one partition are serialized by a lock file in the lake (``.locks/``); object stores have no such
lock, so run one compactor per lake there (docs/object-storage.md).

Encoding (measured, see docs/ingest.md): ``meter_id``, ``ts`` and ``received_at`` use Parquet
DELTA_BINARY_PACKED (sorted, they are runs of small steps); ``register_milli`` uses BYTE_STREAM_SPLIT,
which zstd compresses to ~1.6 bytes/reading, where DELTA_BINARY_PACKED takes ~3 (its per-128-value
minimum delta is dragged negative at every meter boundary, widening every miniblock); strings and the
null columns use dictionaries; zstd level 9 on top.
"""
from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from meters.errors import MetersError
from meters.lake import Lake, fsync_dir
from meters.readings import COMPACT_PREFIX, dedup_table, is_compacted, write_edge
from meters.schemas import READINGS

COMPACT_PARQUET = dict(
    compression="zstd", compression_level=9,
    use_dictionary=["quality", "sender", "quantity_milli", "interval_s"],
    column_encoding={"meter_id": "DELTA_BINARY_PACKED", "ts": "DELTA_BINARY_PACKED",
                     "received_at": "DELTA_BINARY_PACKED", "register_milli": "BYTE_STREAM_SPLIT"},
    row_group_size=1 << 20,
)
STALE_TMP_S = 3600  # hidden temp files older than this are leftovers of a crash


@dataclass
class CompactResult:
    day: str
    files_in: int = 0
    rows_in: int = 0
    rows_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    skipped: bool = False
    file: str | None = None

    @property
    def duplicates(self) -> int:
        return self.rows_in - self.rows_out


def compact_day(lake: Lake, day: str, *, force: bool = False) -> CompactResult:
    """Compact one ``readings`` partition (``day`` = YYYY-MM-DD). A partition that already is one
    compacted file is skipped unless ``force``."""
    res = CompactResult(day)
    d = lake.partition_dir("readings", day)
    if not d.exists():
        raise MetersError(f"no readings partition day={day} in {lake.root}")
    with lake.lock(f"compact-readings-{day}"):
        inputs = lake.files("readings", day)  # the snapshot: later files are left alone
        if lake.is_local:  # object stores have no temporary files (one PUT per file)
            _remove_stale_tmp(d)
        if not inputs or (is_compacted(inputs) and not force):
            res.skipped = True
            res.files_in = len(inputs)
            return res
        res.files_in = len(inputs)
        res.bytes_in = sum(p.stat().st_size for p in inputs)
        try:
            table = lake.dataset(inputs, READINGS).to_table()
        except (OSError, pa.ArrowException) as e:  # a damaged input: refuse, name it, remove nothing
            raise lake.damage(inputs, e) from None
        res.rows_in = table.num_rows
        out = dedup_table(table).combine_chunks()
        res.rows_out = out.num_rows
        name = f"{COMPACT_PREFIX}{time.time_ns() // 1_000_000:x}-{uuid.uuid4().hex[:8]}.parquet"
        path = lake.write("readings", out, day, file_name=name, **COMPACT_PARQUET)
        written = pq.ParquetFile(path if lake.is_local else path.open("rb")).metadata.num_rows
        if written != res.rows_out:  # never remove inputs that are not safely in the output
            path.unlink()
            raise MetersError(f"compaction of day={day}: wrote {written} rows, expected {res.rows_out}")
        write_edge(lake, day, path.name, out)     # what a billing night reads of a neighbouring day
        res.bytes_out = path.stat().st_size
        res.file = path.name
        for p in sorted(inputs, key=lambda p: not p.name.startswith(COMPACT_PREFIX)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        if lake.is_local:
            fsync_dir(d)
    return res


def _remove_stale_tmp(d: Path) -> None:
    now = time.time()
    for p in d.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                if now - p.stat().st_mtime > STALE_TMP_S:
                    p.unlink()


def compact(lake: Lake, days: list[str] | None = None, *, force: bool = False,
            on_day: Callable[[CompactResult], None] | None = None) -> list[CompactResult]:
    """Compact the given ``day=`` partitions of ``readings`` (default: every partition)."""
    existing = lake.partitions("readings")
    if days is None:
        days = existing
    else:
        missing = [d for d in days if d not in existing]
        if missing:
            raise MetersError(f"no readings partition for day(s) {', '.join(missing)} in {lake.root}")
    out = []
    for day in days:
        r = compact_day(lake, day, force=force)
        out.append(r)
        if on_day:
            on_day(r)
    return out


def bytes_per_reading(results: list[CompactResult]) -> float:
    rows = sum(r.rows_out for r in results if not r.skipped)
    return sum(r.bytes_out for r in results if not r.skipped) / rows if rows else 0.0

