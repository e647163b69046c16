"""CSV interval data reader (CONTRACTS.md §3, ``meters import csv``).

Header columns: ``meter_id`` (integer, a meter of the lake) or ``external_id`` (any string id: NMI,
MPAN, LCLid …), ``ts`` (ISO 8601; without an offset it is local time of ``timezone``, by default the
lake's) and ``quantity`` (consumption in the interval) or ``register`` (cumulative). ``mapping`` renames
other headers (``{"ts": "tstp"}``). ``ts_label`` says whether ``ts`` labels the start or the end of its
interval; the interval length is ``interval_s`` or, when not given, each stream's most common step.
Gzip files are read directly. Values may be padded with spaces; empty or ``Null`` values are skipped
and counted. Any other bad value stops the import with an error naming the line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from ..errors import MetersError
from ..schemas import METER_ID_MAX, UNITS, UTILITIES
from ..times import parse_duration
from . import Option, Parsed, Reader, series_table

NULLS = {"", "null", "nan", "na", "n/a", "none"}


def parse_mapping(items) -> dict[str, str]:
    """``["ts=tstp", "quantity=energy(kWh/hh)"]`` (or one comma-separated string) → dict."""
    out = {}
    for item in items or []:
        for part in [item] if "=" in item and item.count("=") == 1 else item.split(","):
            ours, sep, theirs = part.partition("=")
            if not sep or not ours.strip() or not theirs.strip():
                raise MetersError(f"--map {part!r} must look like ts=tstp (our name=the file's header)")
            out[ours.strip()] = theirs.strip()
    return out


def read_csv(path: str | Path, *, timezone: str, mapping: dict[str, str] | None = None,
             ts_label: str = "end", interval_s: int | None = None, utility: str = "electricity",
             unit: str | None = None) -> Parsed:
    """Parse an interval-data CSV into series; ``timezone`` applies to timestamps without an offset."""
    import pandas as pd
    path = Path(path)
    if ts_label not in ("start", "end"):
        raise MetersError(f"--ts-label must be start or end, not {ts_label!r}")
    if utility not in UTILITIES:
        raise MetersError(f"--utility {utility!r} must be one of {', '.join(UTILITIES)}")
    unit = unit or UNITS[utility]
    mapping = mapping or {}
    try:
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            column_types={}, strings_can_be_null=False, auto_dict_encode=False),
            read_options=pcsv.ReadOptions(use_threads=True, block_size=1 << 24))
    except FileNotFoundError:
        raise MetersError(f"{path}: no such file") from None
    except pa.ArrowInvalid as e:
        raise MetersError(f"{path}: not a readable CSV file ({str(e).splitlines()[0]})") from None
    header = table.column_names
    rename = {theirs: ours for ours, theirs in mapping.items()}
    missing_mapped = [theirs for theirs in rename if theirs not in header]
    if missing_mapped:
        raise MetersError(f"{path}: --map names column(s) {', '.join(map(repr, missing_mapped))} that the "
                          f"header does not have (header: {', '.join(header)})")
    cols = {rename.get(h, h): table.column(h) for h in header}
    id_col = "meter_id" if "meter_id" in cols else "external_id" if "external_id" in cols else None
    value_col = "quantity" if "quantity" in cols else "register" if "register" in cols else None
    if id_col is None or "ts" not in cols or value_col is None:
        need = [n for n, ok in (("meter_id or external_id", id_col), ("ts", "ts" in cols),
                                ("quantity or register", value_col)) if not ok]
        raise MetersError(f"{path}: missing column(s) {', '.join(need)} (header: {', '.join(header)}; "
                          "rename with --map ours=theirs)")
    n = table.num_rows
    lines = np.arange(2, n + 2)

    # values: strings padded with spaces, empty / Null meaning missing
    raw_values = cols[value_col]
    if pa.types.is_string(raw_values.type) or pa.types.is_large_string(raw_values.type):
        import pyarrow.compute as pc
        stripped = pc.utf8_trim_whitespace(raw_values)
        is_null = pc.is_in(pc.utf8_lower(stripped), value_set=pa.array(sorted(NULLS)))
        values = pd.to_numeric(pd.Series(stripped.to_numpy(zero_copy_only=False)).where(
            ~is_null.to_numpy(zero_copy_only=False)), errors="coerce").to_numpy(dtype=float)
        bad = np.isnan(values) & ~is_null.to_numpy(zero_copy_only=False)
    else:
        values = raw_values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.zeros(n, bool)
    if bad.any():
        i = int(np.argmax(bad))
        raise MetersError(f"{path}: line {lines[i]}: {value_col} {raw_values[i].as_py()!r} is not a number")
    if np.any(values[~np.isnan(values)] < 0) and value_col == "register":
        i = int(np.argmax(values < 0))
        raise MetersError(f"{path}: line {lines[i]}: register {values[i]} is negative")
    keep = ~np.isnan(values)
    skipped_null = int(n - keep.sum())

    # ids
    if id_col == "meter_id":
        try:
            ids = pd.to_numeric(pd.Series(cols["meter_id"].to_numpy(zero_copy_only=False)), errors="raise")
        except (ValueError, TypeError):
            s = pd.Series(cols["meter_id"].to_numpy(zero_copy_only=False))
            i = int(np.argmax(pd.to_numeric(s, errors="coerce").isna().to_numpy()))
            raise MetersError(f"{path}: line {lines[i]}: meter_id {s[i]!r} is not an integer") from None
        ids = ids.to_numpy()
        if np.any((ids < 1) | (ids > METER_ID_MAX)):
            i = int(np.argmax((ids < 1) | (ids > METER_ID_MAX)))
            raise MetersError(f"{path}: line {lines[i]}: meter_id {ids[i]} is out of range 1..2^63-1")
        meter_ids = ids.astype(np.int64)
        ext = np.array([None] * n, dtype=object)
    else:
        meter_ids = None
        ext = np.asarray(pd.Series(cols["external_id"].to_numpy(zero_copy_only=False)).astype(str).str.strip(),
                         dtype=object)
        if np.any(ext == ""):
            i = int(np.argmax(ext == ""))
            raise MetersError(f"{path}: line {lines[i]}: external_id is empty")

    # timestamps
    ts_raw = cols["ts"]
    if pa.types.is_timestamp(ts_raw.type):
        s = pd.Series(ts_raw.to_pandas())
    else:
        s = pd.Series(ts_raw.cast(pa.string()).to_numpy(zero_copy_only=False)).str.strip()
    ts = _parse_ts(s, timezone, path, lines)
    ts = ts[keep]
    ext = ext[keep]
    if id_col == "meter_id":
        meter_ids = meter_ids[keep]
    values = values[keep]
    lines = lines[keep]

    interval = np.full(len(ts), interval_s or 0, dtype=np.int64)
    if value_col == "quantity":
        if not interval_s:
            interval = _infer_intervals(ext if meter_ids is None else meter_ids, ts)
            if len(ts) and np.any(interval <= 0):
                i = int(np.argmax(interval <= 0))
                raise MetersError(f"{path}: line {lines[i]}: cannot infer the interval length of {ext[i]} "
                                  "(a single reading?); give --interval")
        end = ts + interval if ts_label == "start" else ts
    else:
        end = ts
    milli = np.rint(values * 1000).astype(np.int64)
    columns = {"external_id": ext.tolist(), "meter_id": meter_ids, "utility": [utility] * len(end), "unit": [unit] * len(end),
               "ts": end.astype(np.int64)}
    if value_col == "quantity":
        columns["quantity_milli"] = milli
        columns["interval_s"] = interval.astype(np.int32)
    else:
        columns["register_milli"] = milli
    notes = [f"skipped {skipped_null} empty/Null values"] if skipped_null else []
    return Parsed(series_table(columns), notes)


def _parse_ts(s: pd.Series, timezone: str, path, lines) -> np.ndarray:
    """Unix seconds of ISO 8601 strings; naive ones are local time in ``timezone``."""
    import pandas as pd
    if pd.api.types.is_datetime64_any_dtype(s):
        dt_ = s
    else:
        has_offset = s.str.contains(r"(?:[+-]\d\d:?\d\d|Z)$", regex=True, na=False)
        try:
            if has_offset.all():
                dt_ = pd.to_datetime(s, format="ISO8601", utc=True)
            elif not has_offset.any():
                dt_ = pd.to_datetime(s, format="ISO8601")
            else:
                i = int(np.argmax(~has_offset.to_numpy()))
                raise MetersError(f"{path}: line {lines[i]}: ts {s[i]!r} has no UTC offset while others do")
        except (ValueError, TypeError):
            parsed = pd.to_datetime(s, format="ISO8601", errors="coerce", utc=bool(has_offset.all()))
            i = int(np.argmax(parsed.isna().to_numpy()))
            raise MetersError(f"{path}: line {lines[i]}: ts {s[i]!r} is not an ISO 8601 time") from None
    if dt_.dt.tz is None:
        try:
            dt_ = dt_.dt.tz_localize(timezone, ambiguous="raise", nonexistent="raise")
        except Exception as e:  # pytz / zoneinfo errors name the time
            raise MetersError(f"{path}: a local time does not exist or is ambiguous in {timezone} ({e}); "
                              "give --timezone or timestamps with an offset") from None
    return ((dt_ - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def _infer_intervals(ext: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Each row's interval length: the most common positive step of its stream."""
    import pandas as pd
    out = np.zeros(len(ts), dtype=np.int64)
    if not len(ts):
        return out
    codes, uniq = pd.factorize(ext)
    order = np.lexsort((ts, codes))
    c, t = codes[order], ts[order]
    step = np.diff(t)
    same = c[1:] == c[:-1]
    for k in range(len(uniq)):
        steps = step[same & (c[1:] == k) & (step > 0)]
        if len(steps):
            vals, counts = np.unique(steps, return_counts=True)
            out[codes == k] = vals[counts.argmax()]
    return out


def _read(path, *, lake_timezone: str, timezone: str | None = None, **options) -> Parsed:
    return read_csv(path, timezone=timezone or lake_timezone, **options)


READER = Reader("csv", "CSV", "Import a CSV with meter_id or external_id, ts, and quantity or register columns (gzip ok).",
                _read, (
    Option("--map", "mapping", "Rename a header: ts=tstp, external_id=LCLid, quantity=energy(kWh/hh) (repeatable).",
           multiple=True, metavar="OURS=THEIRS", convert=parse_mapping),
    Option("--ts-label", "ts_label", "Whether ts labels the start or the end of its interval.",
           choices=("start", "end"), default="end"),
    Option("--interval", "interval_s", "Interval length (15m, 30m, 1h); default: inferred per meter.",
           convert=lambda text: parse_duration(text, "--interval")),
    Option("--timezone", "timezone", "Time zone of timestamps without an offset (default: the lake's)."),
    Option("--utility", "utility", "Utility of the file's meters.", choices=UTILITIES, default="electricity"),
    Option("--unit", "unit", "Unit of the values (default: kWh for electricity and heat, m3 for water and gas)."),
))
