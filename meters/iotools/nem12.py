"""AEMO NEM12 (MDFF interval metering data) reader.

Records: 100 header (must be the first line), 200 NMI data details (NMI, suffix, unit, interval length),
300 interval data (one day: 1440/interval values, then the quality method), 400 interval events (per
interval quality for a ``V`` day), 500 B2B details (ignored), 900 end. Energy channels (Wh, kWh, MWh)
become one series each (``external_id`` = ``NMI/suffix``, kWh); other channels (kVArh, voltage) are
skipped with a note. Timestamps are NEM time (AEST, UTC+10, no daylight saving) unless a time zone is
given. NEM13 (accumulation meter) files are refused. Any malformed record stops the import with an
error naming the line.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from ..errors import MetersError
from ..times import parse_zone
from . import Option, Parsed, Reader, series_table

NEM_TZ = dt.timezone(dt.timedelta(hours=10))
ENERGY_UNITS = {"wh": 1, "kwh": 1000, "mwh": 1_000_000}  # → Wh (thousandths of kWh)
QUALITY_FLAGS = {"A", "E", "F", "N", "S", "V"}


def _open_lines(path: Path) -> list[str]:
    import gzip

    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except OSError as e:
        raise MetersError(f"{path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.splitlines()


def read_nem12(path: str | Path, tz: dt.tzinfo | None = None) -> Parsed:
    """Parse a NEM12 file into series (see module doc); raise :class:`MetersError` naming the line of
    the first malformed record."""
    path = Path(path)
    tz = tz or NEM_TZ
    lines = _open_lines(path)

    def fail(lineno: int, msg: str):
        raise MetersError(f"{path.name}: line {lineno}: {msg}")

    if not lines:
        raise MetersError(f"{path.name}: the file is empty")
    first = [f.strip() for f in lines[0].split(",")]
    if first[0] != "100":
        found = "an empty line" if not lines[0].strip() else f"record {first[0]!r}"
        fail(1, f"a NEM12 file must start with a 100 header record, found {found}")
    version = first[1].upper() if len(first) > 1 else ""
    if version == "NEM13":
        fail(1, "this is a NEM13 (accumulation meter) file; only NEM12 interval data can be imported")
    if version != "NEM12":
        fail(1, f"100 header says version {version!r}, expected NEM12")

    ext_ids, units, ts_out, q_out, int_out, qual_out = [], [], [], [], [], []
    notes: dict[str, int] = {}
    channel = None          # (external_id, Wh per unit, interval minutes, line of the 200 record) or skip
    skip_channel = False
    day_rows: list[int] = []  # row indexes of the last 300 record (for its 400 records)
    last_300_line = 0
    ended = False
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if ended:
            fail(lineno, "data after the 900 end record")
        fields = [f.strip() for f in line.split(",")]
        rec = fields[0]
        if rec == "200":
            if len(fields) < 9:
                fail(lineno, f"200 record has {len(fields)} fields, expected at least 9")
            nmi, suffix, unit, interval = fields[1], fields[4], fields[7], fields[8]
            if not nmi or not suffix:
                fail(lineno, "200 record without NMI or NMI suffix")
            if not interval.isdigit() or int(interval) not in (1, 5, 10, 15, 30, 60):
                fail(lineno, f"200 record interval length {interval!r} must be 1, 5, 10, 15, 30 or 60 minutes")
            factor = ENERGY_UNITS.get(unit.lower())
            skip_channel = factor is None
            if skip_channel:
                key = f"skipped non-energy channel(s) (unit {unit or 'none'})"
                notes[key] = notes.get(key, 0) + 1
            channel = (f"{nmi}/{suffix}", factor, int(interval), lineno)
            day_rows = []
        elif rec == "300":
            if channel is None:
                fail(lineno, "300 record before any 200 record")
            ext, factor, minutes, line200 = channel
            n = 1440 // minutes
            if len(fields) < 2 + n + 1 or not fields[2 + n]:
                got = len(fields) - 2
                fail(lineno, f"300 record has {got} fields after the date; the 200 record on line {line200} "
                             f"says {minutes}-minute intervals, so {n} values and a quality flag are needed")
            try:
                day = dt.datetime.strptime(fields[1], "%Y%m%d")
            except ValueError:
                fail(lineno, f"300 record date {fields[1]!r} is not YYYYMMDD")
            quality = fields[2 + n]
            if quality[:1].upper() not in QUALITY_FLAGS:
                fail(lineno, f"300 record quality method {quality!r} must start with one of A E F N S V")
            last_300_line = lineno
            if skip_channel:
                day_rows = []
                continue
            try:
                values = np.array([float(v) for v in fields[2:2 + n]])
            except ValueError:
                bad = next(i for i, v in enumerate(fields[2:2 + n]) if not _is_number(v))
                fail(lineno, f"interval {bad + 1} value {fields[2 + bad]!r} is not a number")
            start = dt.datetime.combine(day.date(), dt.time(), tz).timestamp()
            base = len(ts_out)
            ts_out.extend((int(start) + 60 * minutes * np.arange(1, n + 1)).tolist())
            q_out.extend(np.rint(values * factor).astype(np.int64).tolist())
            int_out.extend([60 * minutes] * n)
            qual_out.extend([quality] * n)
            ext_ids.extend([ext] * n)
            units.extend(["kWh"] * n)
            day_rows = list(range(base, base + n))
            day_quality = quality
        elif rec == "400":
            if not last_300_line:
                fail(lineno, "400 record without a preceding 300 record")
            if len(fields) < 4:
                fail(lineno, f"400 record has {len(fields)} fields, expected at least 4")
            try:
                a, b = int(fields[1]), int(fields[2])
            except ValueError:
                fail(lineno, f"400 record interval range {fields[1]!r}..{fields[2]!r} is not numeric")
            flag = fields[3]
            if not flag or flag[:1].upper() not in QUALITY_FLAGS:
                fail(lineno, f"400 record quality method {flag!r} must start with one of A E F N S V")
            n_day = len(day_rows) if day_rows else 1440 // channel[2]
            if not 1 <= a <= b <= n_day:
                fail(lineno, f"400 record intervals {a}..{b} outside 1..{n_day}")
            if day_rows:
                if not day_quality.upper().startswith("V"):
                    fail(lineno, f"400 record for a day whose quality is {day_quality!r}, not V (variable)")
                for i in day_rows[a - 1:b]:
                    qual_out[i] = flag
        elif rec == "500":
            continue
        elif rec == "900":
            ended = True
        elif rec == "100":
            fail(lineno, "a second 100 header record (two files joined?)")
        else:
            fail(lineno, f"unknown record indicator {rec!r} (expected 200, 300, 400, 500 or 900)")
    series = series_table({"external_id": ext_ids, "utility": ["electricity"] * len(ext_ids), "unit": units,
                           "ts": np.array(ts_out, dtype=np.int64), "quantity_milli": q_out,
                           "interval_s": int_out, "quality": qual_out})
    return Parsed(series, [f"{k}: {v}" for k, v in notes.items()])


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _read(path, *, lake_timezone: str, timezone: str | None = None) -> Parsed:
    return read_nem12(path, tz=parse_zone(timezone) if timezone else None)


READER = Reader("nem12", "NEM12", "Import an AEMO NEM12 interval file (100/200/300/400/500/900 records).", _read,
                (Option("--timezone", "timezone", "Time zone of the file's dates (default NEM time, UTC+10)."),))
