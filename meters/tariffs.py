"""Tariff model and catalog.

A tariff is URDB-shaped so that OpenEI records and Chinese block tariffs share one model:

- ``periods``: named price periods (e.g. ``summer``/``winter`` for a seasonal block tariff,
  ``day``/``night`` for time of use). Each period has a ``season`` and a ``band`` label.
- ``weekday_schedule`` / ``weekend_schedule``: 12×24 matrices (month × local hour) of period indices.
- ``tier_bounds``: for each month (12 rows) the cumulative upper bounds of tiers 1..T-1 (tier T is
  unbounded). ``tier_bound_unit`` is ``"cycle"`` (the bound applies to the tier cycle as given) or
  ``"day"`` (per day, multiplied by the days in the month, as URDB "kWh daily").
- ``prices``: ``prices[period][tier]`` in currency per unit.
- ``tier_cycle``: ``month`` (calendar month), ``year`` (calendar year: counters carry across months and
  reset on 1 January) or ``period`` (the account's billing period).
- ``tier_method``: ``chronological`` (intervals in time order, split at tier bounds) or ``pro_rata``
  (tiers on the period total, shared among periods in proportion to use: NREL SAM / URDB).
- ``fixed_charge`` with ``fixed_charge_unit`` ``month`` or ``day``; ``minimum_charge`` per month.
- ``effective_from``: date the version takes effect; several versions may share a ``tariff_id``.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from .errors import MetersError

HEATING_MODEL = "heating"   # a tariff file's ``"model"`` for heating tariffs (:mod:`meters.heating`)

CYCLES = ("month", "year", "period")
METHODS = ("chronological", "pro_rata")


@dataclass(frozen=True)
class Period:
    name: str
    season: str = "all"
    band: str = "all"


@dataclass(frozen=True)
class Tariff:
    tariff_id: str
    utility: str
    unit: str
    currency: str
    description: str
    effective_from: dt.date
    periods: tuple[Period, ...]
    weekday_schedule: tuple[tuple[int, ...], ...]
    weekend_schedule: tuple[tuple[int, ...], ...]
    tier_bounds: tuple[tuple[float, ...], ...]
    prices: tuple[tuple[float, ...], ...]
    tier_cycle: str = "month"
    tier_method: str = "chronological"
    tier_bound_unit: str = "cycle"
    fixed_charge: float = 0.0
    fixed_charge_unit: str = "month"
    minimum_charge: float = 0.0
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_tiers(self) -> int:
        return len(self.prices[0])

    @property
    def n_periods(self) -> int:
        return len(self.periods)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["effective_from"] = self.effective_from.isoformat()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Tariff":
        with parsing(f"tariff {d.get('tariff_id', '?')}"):
            t = cls(
                tariff_id=str(d["tariff_id"]), utility=d["utility"], unit=d["unit"],
                currency=d.get("currency", "CNY"), description=d.get("description", ""),
                effective_from=dt.date.fromisoformat(str(d["effective_from"])),
                periods=tuple(Period(**p) if isinstance(p, dict) else Period(str(p)) for p in d["periods"]),
                weekday_schedule=_matrix(d["weekday_schedule"], int),
                weekend_schedule=_matrix(d.get("weekend_schedule", d["weekday_schedule"]), int),
                tier_bounds=_matrix(d["tier_bounds"], float),
                prices=_matrix(d["prices"], float),
                tier_cycle=d.get("tier_cycle", "month"), tier_method=d.get("tier_method", "chronological"),
                tier_bound_unit=d.get("tier_bound_unit", "cycle"),
                fixed_charge=float(d.get("fixed_charge", 0.0)),
                fixed_charge_unit=d.get("fixed_charge_unit", "month"),
                minimum_charge=float(d.get("minimum_charge", 0.0)),
                source=d.get("source", ""), notes=tuple(d.get("notes", ())),
            )
        t.validate()
        return t

    def validate(self) -> None:
        """Raise :class:`MetersError` naming the first inconsistency."""
        who = f"tariff {self.tariff_id}"
        if self.tier_cycle not in CYCLES:
            raise MetersError(f"{who}: tier_cycle must be one of {CYCLES}")
        if self.tier_method not in METHODS:
            raise MetersError(f"{who}: tier_method must be one of {METHODS}")
        if self.tier_bound_unit not in ("cycle", "day"):
            raise MetersError(f"{who}: tier_bound_unit must be 'cycle' or 'day'")
        if self.fixed_charge_unit not in ("month", "day"):
            raise MetersError(f"{who}: fixed_charge_unit must be 'month' or 'day'")
        for name, m in (("weekday_schedule", self.weekday_schedule), ("weekend_schedule", self.weekend_schedule)):
            if len(m) != 12 or any(len(r) != 24 for r in m):
                raise MetersError(f"{who}: {name} must be 12 rows (months) of 24 hours")
            if any(not 0 <= p < self.n_periods for r in m for p in r):
                raise MetersError(f"{who}: {name} refers to a period that does not exist")
        if len(self.prices) != self.n_periods or len({len(r) for r in self.prices}) != 1:
            raise MetersError(f"{who}: prices must have one row per period, all with the same tiers")
        if len(self.tier_bounds) != 12 or any(len(r) != self.n_tiers - 1 for r in self.tier_bounds):
            raise MetersError(f"{who}: tier_bounds must be 12 rows of {self.n_tiers - 1} bounds")
        if any(not math.isfinite(x) for r in self.prices for x in r) or not all(
                math.isfinite(x) and x >= 0 for x in (self.fixed_charge, self.minimum_charge)):
            raise MetersError(f"{who}: prices, fixed and minimum charges must be finite (charges ≥ 0)")
        for r in self.tier_bounds:
            if any(not b > 0 for b in r) or list(r) != sorted(r) or len(set(r)) != len(r):
                raise MetersError(f"{who}: tier bounds must be positive and increasing: {list(r)}")

    def describe(self) -> list[str]:
        """Readable lines: cycle, seasons, tier bounds, prices per period."""
        lines = [f"{self.tariff_id} — {self.description}",
                 f"  utility {self.utility}, unit {self.unit}, currency {self.currency}, "
                 f"effective from {self.effective_from}",
                 f"  tiers: {self.n_tiers} on a {self.tier_cycle} cycle ({self.tier_method}); "
                 f"bounds per {'day × days in month' if self.tier_bound_unit == 'day' else self.tier_cycle}"
                 if self.n_tiers > 1 else "  no tiers (one price per period)"]
        months = "JFMAMJJASOND"
        seen: dict[tuple, list[int]] = {}
        for m, b in enumerate(self.tier_bounds):
            seen.setdefault(tuple(b), []).append(m + 1)
        for bounds, ms in seen.items() if self.n_tiers > 1 else ():
            shown = [f"{b:g}" for b in bounds if b < 1e37] or ["none (one tier used)"]
            lines.append(f"  months {_month_ranges(ms)}: tier bounds {', '.join(shown)} {self.unit}")
        for p, period in enumerate(self.periods):
            hours = sorted({h for m in range(12) for h in range(24) if self.weekday_schedule[m][h] == p})
            ms = sorted({m + 1 for m in range(12) for h in range(24)
                         if p in (self.weekday_schedule[m][h], self.weekend_schedule[m][h])})
            we_hours = sorted({h for m in range(12) for h in range(24) if self.weekend_schedule[m][h] == p})
            hours_txt = f"weekday hours {_hour_ranges(hours)}"
            if we_hours != hours:
                hours_txt += f", weekend hours {_hour_ranges(we_hours)}"
            price = " / ".join(f"{x:.10g}" for x in self.prices[p])
            lines.append(f"  period {period.name} (season {period.season}, band {period.band}; months "
                         f"{_month_ranges(ms)}; {hours_txt}): {price} {self.currency}/{self.unit}"
                         + (" by tier" if self.n_tiers > 1 else ""))
        if self.fixed_charge:
            lines.append(f"  fixed charge {self.fixed_charge:g} {self.currency} per {self.fixed_charge_unit}")
        if self.minimum_charge:
            lines.append(f"  minimum charge {self.minimum_charge:g} {self.currency} per month")
        if self.source:
            lines.append(f"  source: {self.source}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        del months
        return lines


def _matrix(rows, kind) -> tuple:
    return tuple(tuple(kind(x) for x in r) for r in rows)


def _month_ranges(ms: list[int]) -> str:
    return _ranges(ms) if ms else "none"


def _hour_ranges(hs: list[int]) -> str:
    if not hs:
        return "none"
    out, start, prev = [], hs[0], hs[0]
    for h in hs[1:] + [None]:
        if h is not None and h == prev + 1:
            prev = h
            continue
        out.append(f"{start:02d}–{prev + 1:02d}")
        if h is not None:
            start = prev = h
    return ", ".join(out)


def _ranges(xs: list[int]) -> str:
    out, start, prev = [], xs[0], xs[0]
    for x in xs[1:] + [None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        out.append(f"{start}" if start == prev else f"{start}–{prev}")
        if x is not None:
            start = prev = x
    return ",".join(out)


def load_tariff_file(path: str | Path) -> list[Tariff]:
    """Load one of our tariff files: a JSON object, or ``{"versions": [...]}`` sharing top-level keys."""
    data = json.loads(Path(path).read_text())
    return tariffs_from_json(data)


@contextmanager
def parsing(who: str):
    """Turn a missing field or a bad value met while reading a tariff into one :class:`MetersError`
    naming ``who`` (a tariff and its id)."""
    try:
        yield
    except KeyError as e:
        raise MetersError(f"{who}: missing field {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise MetersError(f"{who}: {e}") from None


def version_dicts(data: dict) -> list[dict]:
    """A tariff file's versions as whole dicts: ``{"versions": [...]}`` shares its other top-level keys
    (``model`` aside); a file without ``versions`` is one version."""
    base = {k: v for k, v in data.items() if k not in ("versions", "model")}
    return [{**base, **v} for v in data.get("versions", [{}])]


def tariffs_from_json(data: dict) -> list[Tariff]:
    return [Tariff.from_dict(d) for d in version_dicts(data)]


def builtin_documents() -> list[dict]:
    """The JSON documents of the tariff files shipped in ``meters/data/tariffs``, by file name."""
    return [json.loads(f.read_text())
            for f in sorted(resources.files("meters.data").joinpath("tariffs").iterdir(), key=lambda p: p.name)
            if f.name.endswith(".json")]


def builtin_catalog() -> list[Tariff]:
    """Every built-in tariff version shipped in ``meters/data/tariffs``."""
    out: list[Tariff] = []
    for data in builtin_documents():
        if data.get("model") != HEATING_MODEL:   # heating tariffs: meters.heating
            out.extend(tariffs_from_json(data))
    return out


def in_force(versions: list, day: dt.date):
    """The version of one tariff (interval or heating) in force on ``day`` (latest ``effective_from`` ≤ day)."""
    eligible = [t for t in versions if t.effective_from <= day]
    if not eligible:
        raise MetersError(f"tariff {versions[0].tariff_id}: no version in force on {day}")
    return max(eligible, key=lambda t: t.effective_from)


def uniform_schedule(period: int = 0) -> list[list[int]]:
    return [[period] * 24 for _ in range(12)]
