"""Green Button (NAESB REQ.21 ESPI, Atom+XML) reader.

Every ``IntervalBlock`` / ``IntervalReading`` becomes a row: ``ts`` = timePeriod start + duration (our
convention is the interval end), quantity = value × 10^powerOfTenMultiplier in the ReadingType's
``uom`` (Wh → kWh, therm, m³ …), quality = the reading's ``ReadingQuality`` (or the ReadingType's default)
by its ESPI name. Blocks are linked to their ReadingType through the MeterReading (``up`` / ``related``
links); feeds with broken or missing links (real downloads have both) fall back to the feed's only, or
latest, ReadingType, and feeds with none (IntervalBlock-only API responses) to Wh. The stream's
``external_id`` is the MeterReading's resource path (``.../UsagePoint/1/MeterReading/01``).
Namespace prefixes (``ns0:``, ``espi:``, none) do not matter.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MetersError
from . import Option, Parsed, Reader, series_table

# ESPI UnitSymbolKind code -> (our unit, factor to thousandths of our unit, utility guess)
UOM = {
    72: ("kWh", 1.0, "electricity"),        # Wh
    169: ("therm", 1000.0, "gas"),           # therm
    42: ("m3", 1000.0, "water"),             # m³ (gas when the service says so)
    119: ("m3", 1000.0 * 0.028316846592, "gas"),  # ft³
    132: ("kWh", 1.0, "electricity"),        # Q (Wh of apparent, treated as energy)
}
# ServiceCategory kind -> utility
SERVICE = {0: "electricity", 1: "gas", 2: "water", 4: "heat"}
QUALITY = {0: "valid", 7: "manually_edited", 8: "estimated_reference_day", 9: "estimated_interpolation",
           10: "questionable", 11: "derived", 12: "projected", 13: "mixed", 14: "raw",
           15: "weather_normalized", 16: "other", 17: "validated", 18: "verified", 19: "revenue_quality"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].split(":")[-1]


def _child(el, name):
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _children(el, name):
    return [c for c in el if _local(c.tag) == name]


def _text(el, name, default=None):
    c = _child(el, name) if el is not None else None
    return c.text.strip() if c is not None and c.text and c.text.strip() else default


def _path(href: str) -> str:
    """Resource path of a link: no scheme/host, no leading slash, after ``resource/`` when present."""
    h = re.sub(r"^[a-z]+://[^/]+", "", href.strip()).lstrip("/")
    return h.split("resource/", 1)[-1]


@dataclass
class _ReadingType:
    uom: int | None
    power: int
    quality: int | None


def read_greenbutton(path: str | Path, uom: int | None = None, power: int | None = None) -> Parsed:
    """Parse a Green Button feed into series; raise :class:`MetersError` for XML that is not a feed.

    ``uom`` / ``power`` (ESPI unit code, power-of-ten multiplier) are used where the feed's ReadingType
    does not say (an empty ReadingType, or none at all): real downloads do that, and guessing the unit of
    a bill would be wrong by a factor of 1000."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise MetersError(f"{path.name}: not well-formed XML ({e})") from None
    except OSError as e:
        raise MetersError(f"{path.name}: {e.strerror or e}") from None
    entries = [e for e in root.iter() if _local(e.tag) == "entry"]
    if not entries and _local(root.tag) == "IntervalBlock":
        entries = [root]
    reading_types: dict[str, _ReadingType] = {}
    rt_order: list[_ReadingType] = []
    mr_rt: dict[str, str] = {}          # MeterReading path -> ReadingType path
    service: dict[str, str] = {}        # UsagePoint path -> utility
    blocks = []                          # (meter reading path or None, IntervalBlock element, ReadingType seen so far)
    notes = []
    for entry in entries:
        links = {}
        for link in entry.iter():
            if _local(link.tag) == "link" and link.get("href"):
                links.setdefault(link.get("rel", ""), []).append(_path(link.get("href")))
        content = _child(entry, "content") if _local(entry.tag) == "entry" else None
        objs = list(content) if content is not None else [entry]
        self_path = (links.get("self") or [None])[0]
        for obj in objs:
            kind = _local(obj.tag)
            if kind == "ReadingType":
                rt = _ReadingType(_int(_text(obj, "uom")), _int(_text(obj, "powerOfTenMultiplier")),
                                  _int(_text(obj, "defaultQuality")))
                reading_types[self_path or f"#rt{len(rt_order)}"] = rt
                rt_order.append(rt)
            elif kind == "MeterReading":
                rel = [p for p in links.get("related", []) if "ReadingType" in p]
                if self_path and rel:
                    mr_rt[self_path] = rel[0]
            elif kind == "UsagePoint":
                sc = _child(obj, "ServiceCategory")
                k = _int(_text(sc, "kind")) if sc is not None else None
                if self_path and k in SERVICE:
                    service[self_path] = SERVICE[k]
            elif kind == "IntervalBlock":
                up = (links.get("up") or [None])[0]
                mr = up[: -len("/IntervalBlock")] if up and up.endswith("/IntervalBlock") else None
                if mr is None and self_path and "/IntervalBlock" in self_path:
                    mr = self_path.split("/IntervalBlock")[0]
                blocks.append((mr, obj, rt_order[-1] if rt_order else None))
    if not blocks:
        raise MetersError(f"{path.name}: no IntervalBlock in this Green Button file")
    ext, utility, unit, ts, qty, interval, quality = [], [], [], [], [], [], []
    for mr, block, last_rt in blocks:
        rt = reading_types.get(mr_rt.get(mr, ""), None) if mr else None
        if rt is None:
            rt = last_rt or (rt_order[0] if len(rt_order) == 1 else None)
        if rt is None:
            rt = _ReadingType(None, None, None)
        if rt.uom is None or rt.power is None:
            if rt.uom is None and uom is None:
                raise MetersError(f"{path.name}: the feed does not say the unit of its readings (no ReadingType "
                                  "uom); give it with --uom (ESPI code: 72 Wh, 169 therm, 42 m3) and --multiplier")
            rt = _ReadingType(rt.uom if rt.uom is not None else uom,
                              rt.power if rt.power is not None else (power or 0), rt.quality)
            note = f"unit from the command line: uom {rt.uom}, multiplier 10^{rt.power}"
            if note not in notes:
                notes.append(note)
        if rt.uom not in UOM:
            raise MetersError(f"{path.name}: ReadingType unit of measure {rt.uom} is not supported "
                              f"(supported ESPI uom codes: {', '.join(map(str, sorted(UOM)))})")
        our_unit, factor, guess = UOM[rt.uom]
        up_path = mr.split("/MeterReading")[0] if mr else None
        util = service.get(up_path) or guess
        if rt.uom == 42 and util not in ("water", "gas"):
            util = "water"
        stream = mr or path.stem
        for r in _children(block, "IntervalReading"):
            tp = _child(r, "timePeriod")
            start, dur, value = _num(_text(tp, "start")), _num(_text(tp, "duration")), _num(_text(r, "value"))
            if start is None or dur is None or value is None:
                continue
            rq = _child(r, "ReadingQuality")
            q = _int(_text(rq, "quality")) if rq is not None else rt.quality
            ext.append(stream)
            utility.append(util)
            unit.append(our_unit)
            ts.append(int(start) + int(dur))
            interval.append(int(dur))
            qty.append(int(round(value * 10.0 ** rt.power * factor)))
            quality.append(QUALITY.get(q, str(q)) if q is not None else None)
    series = series_table({"external_id": ext, "utility": utility, "unit": unit, "ts": np.array(ts, np.int64),
                           "quantity_milli": qty, "interval_s": interval, "quality": quality})
    return Parsed(series, notes)


def _int(s):
    try:
        return int(s) if s is not None else None
    except ValueError:
        return None


def _num(s):
    try:
        return float(s) if s is not None else None
    except ValueError:
        return None


def _read(path, *, lake_timezone: str, uom: int | None = None, multiplier: int | None = None) -> Parsed:
    return read_greenbutton(path, uom=uom, power=multiplier)


READER = Reader("greenbutton", "Green Button",
                "Import a Green Button (ESPI Atom XML) feed: IntervalBlocks with their reading quality.", _read,
                (Option("--uom", "uom", "ESPI unit code for feeds whose ReadingType does not say (72 Wh, 169 therm, 42 m3).",
                        type=int),
                 Option("--multiplier", "multiplier", "Power-of-ten multiplier for feeds whose ReadingType does not say.",
                        type=int)))
