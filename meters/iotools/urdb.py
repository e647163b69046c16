"""Import OpenEI Utility Rate Database (URDB) rate records into :class:`meters.tariffs.Tariff`.

Supported: energy rates by period and tier (``rate + adj``), tier limits in ``kWh`` (per month) or
``kWh daily`` (times the days in the month), 12×24 weekday/weekend schedules (integers or floats
such as ``1.0``), fixed charges (``fixedchargefirstmeter`` in $/month or $/day, or the old
``fixedmonthlycharge``) and monthly minimum charges (``mincharge`` in $/month, or ``minmonthlycharge``).
Tiers are applied pro rata on the month's total (the URDB / NREL SAM convention).

Quirks handled: a file JSON-encoded twice (a JSON string holding JSON); ``{"items": [...]}``, a list or a
bare record; ``enddate`` before ``startdate`` (ignored, noted); a last tier carrying a ``max`` (ignored).

Unsupported parts — demand charges (``demandratestructure``, ``flatdemandstructure``, coincident
demand), tier limits in ``kWh/kW``, annual minimum charges, fixed charges in other units — are
reported as a :class:`MetersError` naming them; ``ignore_unsupported=True`` imports the energy part
and records every omission in the tariff's ``notes``.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from meters.errors import MetersError
from meters.tariffs import Tariff, tariffs_from_json

NO_LIMIT = 1e38  # URDB's "no maximum"


@dataclass
class UrdbImport:
    tariffs: list[Tariff]
    omitted: list[str]  # unsupported parts left out (only with ignore_unsupported)


def load_records(path: str | Path) -> list[dict]:
    """The rate records in a URDB JSON file (handles double encoding and the ``items`` wrapper)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise MetersError(f"{path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise MetersError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    for _ in range(3):                       # JSON encoded twice (or more): a string holding JSON
        if not isinstance(data, str):
            break
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise MetersError(f"{path}: a JSON string that does not hold JSON ({e.msg})") from None
    if isinstance(data, dict) and "items" in data:
        data = data["items"]
    records = data if isinstance(data, list) else [data]
    if not records or not all(isinstance(r, dict) for r in records):
        raise MetersError(f"{path}: no URDB rate records found")
    return records


def _nonzero(structure) -> bool:
    return any(float(t.get("rate", 0) or 0) + float(t.get("adj", 0) or 0) != 0
               for period in structure or [] for t in period)


def _schedule(rec: dict, key: str, n_periods: int, who: str) -> list[list[int]]:
    m = rec.get(key)
    if m is None:
        raise MetersError(f"{who}: missing {key}")
    if len(m) != 12 or any(len(r) != 24 for r in m):
        raise MetersError(f"{who}: {key} must be 12 rows of 24 hours")
    out = []
    for r in m:
        row = []
        for x in r:
            if float(x) != int(float(x)):
                raise MetersError(f"{who}: {key} holds a non-integer period {x!r}")
            p = int(float(x))
            if not 0 <= p < n_periods:
                raise MetersError(f"{who}: {key} refers to period {p}, the energy rate structure has {n_periods}")
            row.append(p)
        out.append(row)
    return out


def record_to_tariff(rec: dict, *, tariff_id: str | None = None, ignore_unsupported: bool = False,
                     where: str = "") -> tuple[Tariff, list[str]]:
    """Convert one URDB record; returns the tariff and the unsupported parts that were left out."""
    label = rec.get("label")
    tid = tariff_id or (f"urdb-{label}" if label else None)
    who = f"{where}URDB rate {label or tid or '(no label)'}"
    if not tid:
        raise MetersError(f"{who}: the record has no label; give the tariff an id (--id)")
    ers = rec.get("energyratestructure")
    if not ers:
        raise MetersError(f"{who}: no energyratestructure (only energy rates can be priced)")
    notes, unsupported = [], []
    if _nonzero(rec.get("demandratestructure")):
        unsupported.append(f"TOU demand charges (demandratestructure, {len(rec['demandratestructure'])} periods)")
    if _nonzero(rec.get("flatdemandstructure")):
        unsupported.append("flat demand charges (flatdemandstructure)")
    if _nonzero(rec.get("coincidentratestructure")):
        unsupported.append("coincident demand charges (coincidentratestructure)")
    if float(rec.get("annualmincharge") or 0):
        unsupported.append(f"annual minimum charge ({rec['annualmincharge']})")
    units = {t.get("unit", "kWh") for period in ers for t in period}
    if units - {"kWh", "kWh daily"}:
        raise MetersError(f"{who}: tier limits in {', '.join(sorted(units - {'kWh', 'kWh daily'}))} are not "
                          f"supported (only kWh per month and kWh daily)"
                          + (f"; also unsupported: {'; '.join(unsupported)}" if unsupported else ""))
    if len(units) > 1:
        raise MetersError(f"{who}: tiers mix the units {', '.join(sorted(units))}")
    P = len(ers)
    T = max(len(p) for p in ers)
    if any(len(p) == 0 for p in ers):
        raise MetersError(f"{who}: a period of energyratestructure has no tiers")
    wd = _schedule(rec, "energyweekdayschedule", P, who)
    we = _schedule(rec, "energyweekendschedule", P, who) if rec.get("energyweekendschedule") else wd
    prices, limits = [], []
    for p, tiers in enumerate(ers):
        row = [float(t.get("rate", 0) or 0) + float(t.get("adj", 0) or 0) for t in tiers]
        prices.append(row + [row[-1]] * (T - len(row)))
        lim = []
        for k, t in enumerate(tiers[:-1]):
            if "max" not in t:
                raise MetersError(f"{who}: period {p + 1} tier {k + 1} has no max but a tier follows it")
            lim.append(float(t["max"]))
        limits.append(lim)
    if any(t.get("sell") for period in ers for t in period):
        notes.append("URDB sell rates (export compensation) are not modelled")
    bounds = []
    for m in range(12):
        used = sorted({wd[m][h] for h in range(24)} | {we[m][h] for h in range(24)})
        longest = max((limits[p] for p in used), key=len)
        for p in used:
            if limits[p] != longest[: len(limits[p])]:
                raise MetersError(f"{who}: month {m + 1}: periods {used[0] + 1} and {p + 1} have different tier "
                                  f"limits ({longest} vs {limits[p]}); tiers shared by the periods of a month "
                                  f"are required (as in NREL SAM)")
        row = list(longest)
        while len(row) < T - 1:                          # tiers no period of this month has: unreachable
            row.append(NO_LIMIT * (len(row) - len(longest) + 1))
        bounds.append(row)
    fixed, fixed_unit = 0.0, "month"
    if rec.get("fixedchargefirstmeter") not in (None, ""):
        fixed = float(rec["fixedchargefirstmeter"])
        u = rec.get("fixedchargeunits", "$/month")
        if u == "$/day":
            fixed_unit = "day"
        elif u != "$/month":
            unsupported.append(f"fixed charge in {u}")
            fixed = 0.0
    elif rec.get("fixedmonthlycharge") not in (None, ""):
        fixed = float(rec["fixedmonthlycharge"])
        notes.append("fixed charge from the old field fixedmonthlycharge")
    minimum = 0.0
    if rec.get("mincharge") not in (None, ""):
        u = rec.get("minchargeunits", "$/month")
        if u == "$/month":
            minimum = float(rec["mincharge"])
        else:
            unsupported.append(f"minimum charge in {u}")
    elif rec.get("minmonthlycharge") not in (None, ""):
        minimum = float(rec["minmonthlycharge"])
    start = rec.get("startdate")
    if start:
        effective = dt.datetime.fromtimestamp(int(start), dt.timezone.utc).date()
        end = rec.get("enddate")
        if end and int(end) < int(start):
            notes.append(f"URDB enddate {dt.datetime.fromtimestamp(int(end), dt.timezone.utc).date()} is before "
                         f"startdate {effective}: enddate ignored")
    else:
        effective = dt.date(1970, 1, 1)
        notes.append("no startdate in the record: effective from 1970-01-01")
    if unsupported and not ignore_unsupported:
        raise MetersError(f"{who}: unsupported: {'; '.join(unsupported)}. The tariff model prices energy, fixed "
                          f"and monthly minimum charges only; import the rest with --ignore-unsupported "
                          f"(the omission is recorded in the tariff's notes)")
    notes.extend(f"NOT MODELLED: {u}" for u in unsupported)
    name = rec.get("name") or "URDB rate"
    t = Tariff.from_dict(dict(
        tariff_id=tid, utility="electricity", unit="kWh", currency="USD",
        description=f"{rec.get('utility', '')} {name}".strip(), effective_from=effective.isoformat(),
        periods=[{"name": f"period{p + 1}"} for p in range(P)], weekday_schedule=wd, weekend_schedule=we,
        tier_bounds=bounds, prices=prices, tier_cycle="month", tier_method="pro_rata",
        tier_bound_unit="day" if units == {"kWh daily"} else "cycle",
        fixed_charge=fixed, fixed_charge_unit=fixed_unit, minimum_charge=minimum,
        source=rec.get("uri") or "OpenEI URDB", notes=notes))
    return t, unsupported


def import_file(path: str | Path, *, tariff_id: str | None = None, ignore_unsupported: bool = False) -> UrdbImport:
    """Tariffs from a URDB JSON file, or from one of our own tariff files (recognised by ``tariff_id``;
    a heating tariff file, ``"model": "heating"``, gives :class:`meters.heating.HeatingTariff` versions)."""
    from meters.heating import heating_from_json, is_heating

    records = load_records(path)
    if len(records) == 1 and "tariff_id" in records[0] and ("prices" in records[0] or is_heating(records[0])):
        data = dict(records[0])
        if tariff_id:
            data["tariff_id"] = tariff_id
        return UrdbImport((heating_from_json if is_heating(data) else tariffs_from_json)(data), [])
    out, omitted = [], []
    for i, rec in enumerate(records):
        where = f"{Path(path).name}: " + (f"record {i + 1}: " if len(records) > 1 else "")
        t, u = record_to_tariff(rec, tariff_id=tariff_id, ignore_unsupported=ignore_unsupported, where=where)
        out.append(t)
        omitted.extend(u)
    keys = [(t.tariff_id, t.effective_from) for t in out]
    if len(set(keys)) != len(keys):
        raise MetersError(f"{path}: several records give the same tariff id and start date {keys[0]}")
    return UrdbImport(out, omitted)
