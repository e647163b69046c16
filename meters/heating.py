"""District-heating tariffs (供暖费): by floor area, or two-part metered (两部制热价).

A heating tariff is not interval-priced like the URDB-shaped :class:`meters.tariffs.Tariff`: it is
charged per heating season.

- ``method`` ``area``: ``area_price`` currency per m² of the premise per season, billed once at the
  season's start.
- ``method`` ``two_part``: ``basic_price`` per m² per season (spread over the season's days) plus
  ``energy_price`` per ``energy_unit`` (``kWh`` or ``GJ``) read from the heat meter; at the season's
  end the total is trued up to lie between ``floor_ratio`` and ``cap_ratio`` times the area charge
  (``area_price`` × m²). A ratio of null means no bound.
- ``season_start`` / ``season_end``: the heating season as ``MM-DD`` (both days included); a season
  that ends before it starts runs over New Year (Beijing: ``11-15`` to ``03-15``).

Files in ``meters/data/tariffs`` with ``"model": "heating"`` hold them, versioned like the others
(``{"versions": [...]}`` sharing top-level keys); ``source`` and ``notes`` say what was confirmed.
Money is computed in exact integers (:mod:`billing.heating`); prices are kept to micro-units.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field

from .errors import MetersError
from .tariffs import HEATING_MODEL as MODEL, builtin_documents, in_force, parsing, version_dicts

METHODS = ("area", "two_part")
ENERGY_UNITS = ("kWh", "GJ")
KWH_PER_GJ = 1e6 / 3600.0             # 277.78 kWh per GJ (exact: 1 kWh = 0.0036 GJ)
AREA_BANDS = ("area", "basic", "floor", "cap")   # bill lines whose quantity is the premise area (m²)


@dataclass(frozen=True)
class HeatingTariff:
    tariff_id: str
    description: str
    effective_from: dt.date
    method: str                       # area | two_part
    season_start: str                 # "MM-DD", first heating day
    season_end: str                   # "MM-DD", last heating day
    area_price: float                 # currency per m² per season (two_part: the reference for floor/cap)
    basic_price: float = 0.0          # two_part: currency per m² per season
    energy_price: float = 0.0         # two_part: currency per energy_unit
    energy_unit: str = "kWh"
    floor_ratio: float | None = None  # two_part: season total ≥ floor_ratio × area charge
    cap_ratio: float | None = None    # two_part: season total ≤ cap_ratio × area charge
    utility: str = "heat"
    unit: str = "kWh"                 # the heat meter's register unit
    currency: str = "CNY"
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, d: dict) -> "HeatingTariff":
        with parsing(f"heating tariff {d.get('tariff_id', '?')}"):
            t = cls(tariff_id=str(d["tariff_id"]), description=d.get("description", ""),
                    effective_from=dt.date.fromisoformat(str(d["effective_from"])), method=d["method"],
                    season_start=str(d["season_start"]), season_end=str(d["season_end"]),
                    area_price=float(d["area_price"]), basic_price=float(d.get("basic_price", 0.0)),
                    energy_price=float(d.get("energy_price", 0.0)), energy_unit=d.get("energy_unit", "kWh"),
                    floor_ratio=_ratio(d.get("floor_ratio")), cap_ratio=_ratio(d.get("cap_ratio")),
                    utility=d.get("utility", "heat"), unit=d.get("unit", "kWh"),
                    currency=d.get("currency", "CNY"), source=d.get("source", ""),
                    notes=tuple(d.get("notes", ())))
        t.validate()
        return t

    def to_dict(self) -> dict:
        d = asdict(self)
        d["effective_from"] = self.effective_from.isoformat()
        d["model"] = MODEL
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def validate(self) -> None:
        """Raise :class:`MetersError` naming the first inconsistency."""
        who = f"heating tariff {self.tariff_id}"
        if self.utility != "heat" or self.unit != "kWh":
            raise MetersError(f"{who}: utility must be 'heat' with register unit 'kWh'")
        if self.method not in METHODS:
            raise MetersError(f"{who}: method must be one of {', '.join(METHODS)} (got {self.method!r})")
        if self.energy_unit not in ENERGY_UNITS:
            raise MetersError(f"{who}: energy_unit must be one of {', '.join(ENERGY_UNITS)}")
        for name in ("season_start", "season_end"):
            _month_day(getattr(self, name), f"{who}: {name}")
        if self.season_start == self.season_end:
            raise MetersError(f"{who}: the season cannot start and end on the same day")
        for name in ("area_price", "basic_price", "energy_price"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 10_000):
                raise MetersError(f"{who}: {name} must be between 0 and 10000 (got {v})")
        if self.method == "area" and self.area_price <= 0:
            raise MetersError(f"{who}: an area tariff needs area_price > 0")
        if self.method == "two_part" and self.energy_price <= 0:
            raise MetersError(f"{who}: a two-part tariff needs energy_price > 0")
        lo, hi = self.floor_ratio, self.cap_ratio
        if lo is not None and hi is not None and lo > hi:
            raise MetersError(f"{who}: floor_ratio {lo} is above cap_ratio {hi}")

    def season(self, day: dt.date) -> tuple[dt.date, dt.date] | None:
        """The (first, last) day of the heating season that contains ``day``, or None outside it."""
        for year in (day.year - 1, day.year):
            first = _on(year, self.season_start)
            last = _on(year + (self.season_end < self.season_start), self.season_end)
            if first <= day <= last:
                return first, last
        return None

    def describe(self) -> list[str]:
        """Readable lines: method, season, prices, floor and cap."""
        c = self.currency
        lines = [f"{self.tariff_id} — {self.description}",
                 f"  utility heat, register unit {self.unit}, currency {c}, effective from {self.effective_from}",
                 f"  heating season {self.season_start} to {self.season_end} (both days included)"]
        if self.method == "area":
            lines.append(f"  by floor area: {self.area_price:g} {c}/m² per season, billed at the season's start")
        else:
            lines.append(f"  two-part: basic {self.basic_price:g} {c}/m² per season "
                         f"+ energy {self.energy_price:g} {c}/{self.energy_unit}; billed monthly, "
                         "trued up at the season's end")
            bounds = [f"{n} {r:g} × the area charge ({self.area_price:g} {c}/m²)"
                      for n, r in (("floor", self.floor_ratio), ("cap", self.cap_ratio)) if r is not None]
            lines.append("  season total " + (", ".join(bounds) if bounds else "not bounded"))
        if self.source:
            lines.append(f"  source: {self.source}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return lines


def _ratio(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    if not (math.isfinite(v) and 0 <= v <= 10):
        raise ValueError(f"a floor or cap ratio must be between 0 and 10 (got {v})")
    return v


def _month_day(s: str, who: str) -> tuple[int, int]:
    try:
        m, d = (int(x) for x in s.split("-"))
        dt.date(2001, m, d)   # not a leap year: 02-29 is refused
    except ValueError:
        raise MetersError(f"{who} {s!r} is not a day of the year as MM-DD") from None
    return m, d


def _on(year: int, md: str) -> dt.date:
    m, d = (int(x) for x in md.split("-"))
    return dt.date(year, m, d)


def is_heating(data: dict) -> bool:
    """Whether a tariff file's JSON holds heating tariffs."""
    return data.get("model") == MODEL


def heating_from_json(data: dict) -> list[HeatingTariff]:
    return [HeatingTariff.from_dict(d) for d in version_dicts(data)]


def builtin_heating() -> dict[str, list[HeatingTariff]]:
    """The built-in heating tariffs: ``{tariff_id: [versions sorted by effective_from]}``."""
    out: dict[str, list[HeatingTariff]] = {}
    for data in builtin_documents():
        if is_heating(data):
            for t in heating_from_json(data):
                out.setdefault(t.tariff_id, []).append(t)
    for v in out.values():
        v.sort(key=lambda t: t.effective_from)
    return out


heating_in_force = in_force   # the version in force on a day, as for interval tariffs
