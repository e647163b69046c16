"""The one shared way to read deduplicated readings (billing, SQL, reports all go through here).

The ``readings`` table is append-only and *at least once*: after a crash or a broker restart the
ingest service may write a reading again. Every consumer sees each ``(meter_id, ts)`` once:

- **Rule**: of the rows sharing ``(meter_id, ts)``, the one received first wins (smallest
  ``received_at``; ties and null ``received_at`` go to file order). Duplicates can never cross a
  partition, because the partition is the lake-local day of ``ts``.
- **Compacted partitions** (``meters compact``) hold exactly one file named ``compact-*.parquet``,
  sorted by ``(meter_id, ts)`` and duplicate-free: readers take it as it is. Any other partition
  (still receiving ``part-*`` files, or compacted and then appended to) is deduplicated at read time.

:func:`read_readings` returns Arrow for Python consumers; :func:`read_window` is its columnar form for
large batch readers (billing: one table per day partition, compacted partitions read as they are);
:func:`readings_view_sql` (from :mod:`meters.views`) is the DuckDB SELECT behind the ``readings`` view of
``meters sql``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .lake import Lake
from .schemas import READINGS, UTC_S
from .times import parse_instant
from .views import COMPACT_PREFIX, is_compacted, readings_view_sql  # noqa: F401 - the readings API

COLUMNS = READINGS.names  # meter_id, ts, register_milli, quantity_milli, interval_s, quality, sender, received_at
INTERVAL_COLUMNS = ("quantity_milli", "interval_s", "quality")   # only imported interval data has them
# A compacted partition's edge: its readings within EDGE_S of the day's two midnights, sorted like it, in
# a hidden file beside it named after it, not ending in ``.parquet`` (readers of the partition never see
# it, not even a glob of ``*.parquet``, which DuckDB matches against hidden files too; a recompaction's
# new name makes an old edge stale). A billing night reads the neighbouring days' edge instead of decoding
# their whole partitions for the 1 % next to the day's boundary; without one it reads them whole.
EDGE_S = 900
EDGE_PREFIX = f".edge-{EDGE_S}s-"
EDGE_SUFFIX = ".edge"
EDGE_ROW_GROUP = 65_536    # a block of meters reads only its own rows of the edge


# -- pure core -----------------------------------------------------------------------------------
def is_sorted_unique(meter_id: np.ndarray, ts: np.ndarray) -> bool:
    """True when rows are strictly increasing in ``(meter_id, ts)`` (so already deduplicated)."""
    if len(meter_id) < 2:
        return True
    dm = np.diff(meter_id)
    return bool(np.all((dm > 0) | ((dm == 0) & (np.diff(ts) > 0))))


def first_received(meter_id: np.ndarray, ts: np.ndarray, received_at: np.ndarray) -> np.ndarray:
    """Row indices that keep, for each ``(meter_id, ts)``, the row with the smallest ``received_at``
    (stable: ties keep the earlier row), ordered by ``(meter_id, ts)``. ``received_at`` is int64
    (use the int64 maximum for unknown)."""
    meter_id = np.asarray(meter_id, np.int64)
    ts = np.asarray(ts, np.int64)
    if is_sorted_unique(meter_id, ts):
        return np.arange(len(meter_id), dtype=np.int64)
    order = np.lexsort((np.asarray(received_at, np.int64), ts, meter_id))
    m, t = meter_id[order], ts[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = (m[1:] != m[:-1]) | (t[1:] != t[:-1])
    return order[keep]


def _int64(col: pa.ChunkedArray, fill: int) -> np.ndarray:
    col = col.cast(pa.int64()) if not pa.types.is_integer(col.type) else col
    return col.fill_null(fill).to_numpy()


def dedup_table(table: pa.Table) -> pa.Table:
    """Deduplicate a readings table on ``(meter_id, ts)``, first received wins; result sorted by
    ``(meter_id, ts)``."""
    if table.num_rows == 0:
        return table
    m = table.column("meter_id").to_numpy()
    t = _int64(table.column("ts").cast(UTC_S), 0)
    r = (_int64(table.column("received_at"), np.iinfo(np.int64).max)
         if "received_at" in table.column_names else np.zeros(len(m), np.int64))
    idx = first_received(m, t, r)
    if len(idx) == table.num_rows and np.array_equal(idx, np.arange(len(idx))):
        return table
    return table.take(pa.array(idx))


# -- I/O shell -----------------------------------------------------------------------------------
def partition_days(lake: Lake, start_utc: dt.datetime, end_utc: dt.datetime) -> list[str]:
    """Existing ``day=`` partitions that can hold readings with ts in [start, end)."""
    first = lake.local_day(start_utc)
    last = lake.local_day(end_utc - dt.timedelta(microseconds=1))
    return [k for k in lake.partitions("readings")
            if first.isoformat() <= k <= last.isoformat()]


def read_readings(lake: Lake, start_utc, end_utc, meter_min: int | None = None,
                  meter_max: int | None = None) -> pa.Table:
    """Deduplicated readings with ``start_utc <= ts < end_utc`` (and ``meter_min <= meter_id <=
    meter_max`` when given), sorted by ``(meter_id, ts)``, with the columns of
    :data:`meters.schemas.READINGS`. Instants are aware datetimes or ISO 8601 strings."""
    start, end = parse_instant(start_utc, name="start"), parse_instant(end_utc, name="end")
    if end <= start:
        return READINGS.empty_table()
    f = (pc.field("ts") >= pa.scalar(start, UTC_S)) & (pc.field("ts") < pa.scalar(end, UTC_S))
    if meter_min is not None:
        f &= pc.field("meter_id") >= pa.scalar(int(meter_min), pa.int64())
    if meter_max is not None:
        f &= pc.field("meter_id") <= pa.scalar(int(meter_max), pa.int64())
    parts = []
    for day in partition_days(lake, start, end):
        part = lake.read("readings", day, filter=f)
        if part.num_rows:
            parts.append(dedup_table(part))
    if not parts:
        return READINGS.empty_table()
    if len(parts) == 1:
        return parts[0]
    out = pa.concat_tables(parts)
    m, t = out.column("meter_id").to_numpy(), _int64(out.column("ts").cast(UTC_S), 0)
    if is_sorted_unique(m, t):
        return out
    return out.take(pa.array(np.lexsort((t, m))))


def null_columns(lake: Lake, files, names) -> set[str]:
    """Columns of ``names`` that are null in every row of ``files`` by the Parquet statistics (not
    reading them saves a zero-filled buffer per row: 1.5 GB for a 97M-row day of register readings)."""
    out = set(names)
    for frag in lake.dataset(files, READINGS).get_fragments():
        try:
            md = frag.metadata
        except (OSError, pa.ArrowException) as e:
            raise lake.damage(files, e) from None
        idx = {md.schema.column(j).name: j for j in range(md.num_columns)}
        for name in list(out):
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                st = rg.column(idx[name]).statistics if name in idx else None
                if name in idx and (st is None or not st.has_null_count or st.null_count != rg.num_rows):
                    out.discard(name)
                    break
    return out


def edge_rows(lake: Lake, day: str, table: pa.Table) -> pa.Table:
    """The rows of (a piece of) day ``day``'s readings ``table`` within :data:`EDGE_S` of its start or end."""
    d0, d1 = lake.day_bounds_utc(dt.date.fromisoformat(day))
    ts = table.column("ts").cast(UTC_S)
    edge = dt.timedelta(seconds=EDGE_S)
    return table.filter(pc.or_(pc.less(ts, pa.scalar(d0 + edge, UTC_S)),
                               pc.greater_equal(ts, pa.scalar(d1 - edge, UTC_S))))


def edge_name(compacted: str) -> str:
    """The name of the edge file of compacted file ``compacted``."""
    return EDGE_PREFIX + compacted + EDGE_SUFFIX


def write_edge(lake: Lake, day: str, compacted: str, table: pa.Table) -> None:
    """Write the edge of day ``day``'s compacted file ``compacted`` (its content ``table``), and remove
    the partition's stale edges."""
    lake.write("readings", edge_rows(lake, day, table), day, file_name=edge_name(compacted),
               row_group_size=EDGE_ROW_GROUP)
    for p in lake.partition_dir("readings", day).iterdir():
        if p.name.startswith(".edge-") and p.name.endswith(EDGE_SUFFIX) and p.name != edge_name(compacted):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _edge(lake: Lake, compacted: Path, lo, hi, d0, d1) -> Path | None:
    """The edge file of ``compacted`` when it exists and holds every reading of ``[lo, hi)``."""
    edge = dt.timedelta(seconds=EDGE_S)
    if not (hi <= d0 + edge or lo >= d1 - edge):
        return None
    path = compacted.parent / edge_name(compacted.name)
    return path if path.exists() else None


def read_window(lake: Lake, start: dt.datetime, end: dt.datetime, columns: list[str],
                meter_range: tuple[int, int] | None = None, dup: list | None = None) -> list[pa.Table]:
    """Deduplicated readings with ``start <= ts < end`` (and ``meter_range`` = (lo, hi) inclusive),
    one table per day partition, each sorted by (meter_id, ts). Compacted partitions (sorted,
    duplicate-free by contract) are read as they are, with only ``columns`` — less the
    :data:`INTERVAL_COLUMNS` that are null throughout (absent from the table); the others go through
    :func:`read_readings` (``columns`` selected). With ``dup``, the number of re-sent readings dropped
    in each of those is appended to it. (:class:`Window`: the same read block after block.)"""
    return Window(lake, start, end, columns).read(meter_range, dup)


class Window:
    """:func:`read_window` of one window for meter range after meter range (a billing night's blocks):
    each compacted partition is opened once, and a range reads only the row groups whose ``meter_id``
    (and ``ts``) statistics can hold its rows, kept by slicing (the file is sorted by meter) instead of
    a filter; the last row group read is kept for the next range (blocks come in meter order, so a
    row group spanning two blocks is decoded once). Of a neighbouring day, only the edge is read
    (:func:`write_edge`) when the partition has one."""

    def __init__(self, lake: Lake, start: dt.datetime, end: dt.datetime, columns: list[str]):
        self.lake, self.start, self.end, self.columns = lake, start, end, columns
        self._compacted: dict[str, _Compacted] = {}

    def read(self, meter_range: tuple[int, int] | None = None, dup: list | None = None) -> list[pa.Table]:
        lake, columns = self.lake, self.columns
        parts = []
        for key in partition_days(lake, self.start, self.end):
            d0, d1 = lake.day_bounds_utc(dt.date.fromisoformat(key))
            lo, hi = max(self.start, d0), min(self.end, d1)
            m_lo, m_hi = meter_range if meter_range else (None, None)
            files = lake.files("readings", key)
            if is_compacted(files):
                edge = _edge(lake, files[0], lo, hi, d0, d1) if (lo, hi) != (d0, d1) else None
                src = [edge] if edge is not None else files    # (the edge: sorted the same way)
                c = self._compacted.get(key)
                if c is None or c.path != src[0]:
                    c = self._compacted[key] = _Compacted(lake, src, columns)
                t = c.read(lo, hi, (lo, hi) != (d0, d1), meter_range)
            else:
                t = read_readings(lake, lo, hi, m_lo, m_hi).select(columns)
                if dup is not None:  # re-sent readings that were dropped (first received wins)
                    f = (pc.field("ts") >= pa.scalar(lo, UTC_S)) & (pc.field("ts") < pa.scalar(hi, UTC_S))
                    if meter_range:
                        f &= (pc.field("meter_id") >= pa.scalar(m_lo, pa.int64())) & \
                            (pc.field("meter_id") <= pa.scalar(m_hi, pa.int64()))
                    dup.append(lake.read("readings", key, columns=["meter_id"], filter=f).num_rows - t.num_rows)
            if t.num_rows:
                parts.append(t)
        return parts


class _Compacted:
    """One compacted readings file read row group by row group (see :class:`Window`)."""

    def __init__(self, lake: Lake, files: list[Path], columns: list[str]):
        self.lake, self.files, self.path = lake, files, files[0]
        skip = null_columns(lake, files, INTERVAL_COLUMNS)
        self.columns = [c for c in columns if c not in skip]
        self._read = self.columns + [c for c in ("meter_id", "ts") if c not in self.columns]   # (to cut by)
        try:
            self.fragment = next(iter(lake.dataset(files, READINGS).get_fragments()))
            md = self.fragment.metadata
        except (OSError, pa.ArrowException) as e:
            raise lake.damage(files, e) from None
        names = [md.schema.column(j).name for j in range(md.num_columns)]
        self.rows = np.array([md.row_group(g).num_rows for g in range(md.num_row_groups)], np.int64)
        self.stats = [[self._range(md.row_group(g), names, c) for c in ("meter_id", "ts")]
                      for g in range(md.num_row_groups)]
        self._kept: dict[int, tuple] = {}     # row group → (table, its meter ids, sorted by them)

    @staticmethod
    def _range(rg, names, name):
        st = rg.column(names.index(name)).statistics if name in names else None
        return (st.min, st.max) if st is not None and st.has_min_max else (None, None)

    def _may_hold(self, g: int, lo, hi, meter_range) -> bool:
        (m0, m1), (t0, t1) = self.stats[g]
        if meter_range and m0 is not None and (m1 < meter_range[0] or m0 > meter_range[1]):
            return False
        return t0 is None or not (t1 < lo or t0 >= hi)

    def read(self, lo: dt.datetime, hi: dt.datetime, by_ts: bool, meter_range) -> pa.Table:
        """Rows with ``lo <= ts < hi`` (checked only when ``by_ts``) and the meter range, in file order."""
        groups = [g for g in range(len(self.rows)) if self.rows[g] and self._may_hold(g, lo, hi, meter_range)]
        todo = [g for g in groups if g not in self._kept]
        if todo:
            try:
                t = self.fragment.subset(row_group_ids=todo).to_table(schema=READINGS, columns=self._read)
            except (OSError, pa.ArrowException) as e:
                raise self.lake.damage(self.files, e) from None
            off = 0
            for g in todo:
                part = t.slice(off, int(self.rows[g]))
                m = part.column("meter_id").combine_chunks().to_numpy()
                self._kept[g] = (part, m, len(m) < 2 or bool(np.all(m[1:] >= m[:-1])))
                off += int(self.rows[g])
        pieces = [_in_range(*self._kept[g], meter_range) for g in groups]
        self._kept = {g: self._kept[g] for g in groups[-1:]}   # the one the next range may share
        out = pa.concat_tables(pieces) if pieces else READINGS.empty_table().select(self._read)
        if by_ts and out.num_rows:
            ts = out.column("ts")
            out = out.filter(pc.and_(pc.greater_equal(ts, pa.scalar(lo, UTC_S)), pc.less(ts, pa.scalar(hi, UTC_S))))
        return out.select(self.columns)


def _in_range(t: pa.Table, m: np.ndarray, is_sorted: bool, meter_range) -> pa.Table:
    """The rows of ``t`` (meter ids ``m``) with a meter in ``meter_range`` (inclusive): a slice when
    they are sorted by meter, else a filter."""
    if not meter_range:
        return t
    lo, hi = meter_range
    if is_sorted:
        a, b = np.searchsorted(m, lo, "left"), np.searchsorted(m, hi, "right")
        return t.slice(int(a), int(b - a))
    return t.filter(pa.array((m >= lo) & (m <= hi)))
