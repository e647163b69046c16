"""Readers for real interval data files (pvlib-iotools style) and the one way they enter the lake.

Each reader (``read_nem12``, ``read_greenbutton``, ``read_csv``) parses a file into an Arrow table with
the :data:`SERIES` schema: one row per interval (or register read) of one external data stream
(``external_id``: NMI/suffix, Green Button meter reading, LCLid …), timestamps in UTC at the interval
end, quantities in thousandths of the stream's unit. :func:`store` maps external ids to meter ids in the
``meters`` table and appends the rows not already in ``readings``, so importing a file twice changes
nothing.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa

from ..errors import MetersError
from ..lake import Lake
from ..schemas import METER_ID_MAX, METERS, UTC_MS, UTC_S

SERIES = pa.schema([
    pa.field("external_id", pa.string()),                 # the stream's id in the source
    pa.field("meter_id", pa.int64()),                     # or our meter id (CSV with a meter_id column)
    pa.field("utility", pa.string(), nullable=False),
    pa.field("unit", pa.string(), nullable=False),
    pa.field("ts", UTC_S, nullable=False),              # interval end (or instant of a register read)
    pa.field("quantity_milli", pa.int64()),             # consumption in the interval, thousandths of unit
    pa.field("register_milli", pa.int64()),             # or a cumulative register
    pa.field("interval_s", pa.int32()),
    pa.field("quality", pa.string()),                   # source flag kept as given (NEM12 "A", "F14" …)
])

# imported meters get ids 9.0e18 + hash(external_id) mod 1e17: stable whatever the import order
IMPORT_ID_BASE = 9_000_000_000_000_000_000
IMPORT_ID_SPAN = 100_000_000_000_000_000


@dataclass
class Parsed:
    """What a reader found: the series table and notes on what it skipped."""

    series: pa.Table
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Option:
    """One option of a reader, as ``meters import <reader>`` offers it."""

    flag: str                           # --timezone
    name: str                           # the keyword of the reader's ``read``
    help: str
    type: type = str
    choices: tuple[str, ...] = ()
    default: object = None
    multiple: bool = False
    metavar: str | None = None
    convert: Callable | None = None     # the option's text(s) -> the keyword's value


@dataclass(frozen=True)
class Reader:
    """A file format ``meters import`` reads: ``read(path, *, lake_timezone, **options) -> Parsed``
    (see :data:`meters.iotools.readers.READERS`)."""

    name: str                           # the subcommand
    title: str                          # the format's name in prose
    help: str
    read: Callable[..., Parsed]
    options: tuple[Option, ...] = ()


def series_table(columns: dict) -> pa.Table:
    """Build a :data:`SERIES` table from column arrays (missing nullable columns become null)."""
    n = len(columns["ts"])
    arrays = []
    for f in SERIES:
        if f.name in columns and columns[f.name] is not None:
            arrays.append(pa.array(columns[f.name], f.type) if not isinstance(columns[f.name], pa.Array)
                          else columns[f.name].cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=SERIES)


def import_meter_id(external_id: str, taken: dict[int, str]) -> int:
    """The meter id of a newly imported external id: a hash in the import range, probing on collision."""
    h = int.from_bytes(hashlib.blake2b(external_id.encode(), digest_size=8).digest(), "big")
    mid = IMPORT_ID_BASE + h % IMPORT_ID_SPAN
    while mid in taken and taken[mid] != external_id:
        mid = mid + 1 if mid < METER_ID_MAX else IMPORT_ID_BASE
    return mid


def _map_meters(lake: Lake, series: pa.Table, source: str) -> tuple[np.ndarray, int]:
    """meter_id per row: given ones are kept (and registered if the lake lacks them), external ids are
    mapped through ``meters.external_id``, new ones get an id (saved). Returns (ids, new meters)."""
    from ..registry import _upsert

    meters = lake.read("meters")
    m_ids = meters.column("meter_id").to_pylist()
    by_ext = {e: m for e, m in zip(meters.column("external_id").to_pylist(), m_ids) if e is not None}
    taken = dict(zip(m_ids, meters.column("external_id").to_pylist()))
    known = {m: (u, un) for m, u, un in zip(m_ids, meters.column("utility").to_pylist(),
                                             meters.column("unit").to_pylist())}
    ext_col = series.column("external_id").to_pylist()
    mid_col = series.column("meter_id").to_pylist()
    streams = sorted(set(zip(ext_col, mid_col, series.column("utility").to_pylist(),
                             series.column("unit").to_pylist())), key=lambda r: (str(r[0]), r[1] or 0))
    new = []
    for ext, mid, utility, unit in streams:
        label = ext if ext is not None else f"meter {mid}"
        if mid is None:
            if ext is None:
                raise MetersError("a row has neither meter_id nor external_id")
            mid = by_ext.get(ext)
        if mid is not None and mid in known:
            if known[mid] != (utility, unit):
                raise MetersError(f"{label}: the lake knows meter {mid} as {known[mid][0]} in {known[mid][1]}, "
                                  f"the file says {utility} in {unit} (use --utility/--unit)")
            continue
        if mid is None:
            mid = import_meter_id(ext, taken)
            by_ext[ext] = mid
        taken[mid] = ext
        known[mid] = (utility, unit)
        new.append({"meter_id": mid, "external_id": ext, "utility": utility, "unit": unit,
                    "concentrator": source, "region": None, "register_max": None})
    if new:
        _upsert(lake, "meters", pa.Table.from_pylist(new, METERS), ["meter_id"])
    ids = np.fromiter((m if m is not None else by_ext[e] for e, m in zip(ext_col, mid_col)),
                      dtype=np.int64, count=len(ext_col))
    return ids, len(new)


def local_days(lake: Lake, ts: pa.Array) -> np.ndarray:
    """The lake-local date string (YYYY-MM-DD) of each UTC timestamp."""
    import pandas as pd

    s = pd.Series(pd.to_datetime(np.asarray(ts.cast(pa.int64()).to_numpy(zero_copy_only=False)), unit="s", utc=True))
    return s.dt.tz_convert(lake.timezone_name).dt.strftime("%Y-%m-%d").to_numpy()


def store(lake: Lake, parsed: Parsed, source: str, progress=None) -> dict:
    """Append the parsed series to ``readings`` (sender ``import:<format>``), skipping rows whose
    (meter, ts) is already in the lake or repeated in the file. Returns counts."""
    series = parsed.series
    sender = f"import:{source}"
    with lake.lock("registry"):
        meter_ids, new_meters = _map_meters(lake, series, sender)
    now = dt.datetime.now(dt.timezone.utc)
    rows = pa.table({
        "meter_id": pa.array(meter_ids, pa.int64()),
        "ts": series.column("ts"),
        "register_milli": series.column("register_milli"),
        "quantity_milli": series.column("quantity_milli"),
        "interval_s": series.column("interval_s"),
        "quality": series.column("quality"),
        "sender": pa.array([sender] * series.num_rows, pa.string()),
        "received_at": pa.array([now] * series.num_rows, UTC_MS),
    })
    # within the file: keep the first row of each (meter, ts)
    ts_s = rows.column("ts").cast(pa.int64()).to_numpy()
    key = np.stack([rows.column("meter_id").to_numpy(), ts_s], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    repeated = rows.num_rows - len(first)
    rows = rows.take(pa.array(np.sort(first)))
    days = local_days(lake, rows.column("ts"))
    written = skipped = 0
    with lake.lock("import"):
        order = np.argsort(days, kind="stable")
        uniq, starts = np.unique(days[order], return_index=True)
        bounds = list(starts) + [len(order)]
        for i, day in enumerate(uniq):
            part = rows.take(pa.array(order[bounds[i]:bounds[i + 1]]))
            existing = lake.read("readings", day, columns=["meter_id", "ts"])
            if existing.num_rows:
                have = set(zip(existing.column("meter_id").to_numpy().tolist(),
                               existing.column("ts").cast(pa.int64()).to_numpy().tolist()))
                mask = [(m, t) not in have for m, t in zip(part.column("meter_id").to_numpy().tolist(),
                                                           part.column("ts").cast(pa.int64()).to_numpy().tolist())]
                fresh = part.filter(pa.array(mask, pa.bool_()))
            else:
                fresh = part
            skipped += part.num_rows - fresh.num_rows
            if fresh.num_rows:
                lake.write("readings", fresh, day, sort_by=[("meter_id", "ascending"), ("ts", "ascending")])
                written += fresh.num_rows
            if progress:
                progress(part.num_rows)
    return {"rows": series.num_rows, "written": written, "already_present": skipped,
            "repeated_in_file": repeated, "meters": len(set(meter_ids.tolist())), "new_meters": new_meters,
            "days": len(uniq), "notes": parsed.notes}


def quality_is_actual_sql(col: str = "quality") -> str:
    """SQL predicate: the source flag means an actual (measured, validated) value."""
    return (f"({col} IS NULL OR {col} IN ('actual', 'A', 'valid', 'validated', 'verified', 'revenue_quality', "
            f"'raw') OR {col} LIKE 'A%')")


def _ts_column(values) -> pa.Array:
    return pa.array(values, pa.int64()).cast(UTC_S)


def check_nonempty(p: Parsed, path) -> Parsed:
    if p.series.num_rows == 0:
        raise MetersError(f"{path}: no interval data found" + (f" ({'; '.join(p.notes)})" if p.notes else ""))
    return p


__all__ = ["SERIES", "Parsed", "Option", "Reader", "series_table", "store", "import_meter_id",
           "quality_is_actual_sql"]
