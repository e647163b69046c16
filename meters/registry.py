"""The registry: meters, accounts, contacts and tariffs (small, unpartitioned lake tables).

Every change is a read-modify-write under the lake's registry lock, replaced atomically, so an import
either lands whole or not at all.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .catalog import KEYS, tariff_rows
from .errors import MetersError
from .lake import Lake
from .recipients import parse_contact
from .schemas import ACCOUNTS, CONTACTS, METER_ID_MAX, METERS, MODES, UNITS, UTILITIES
from .heating import HeatingTariff, builtin_heating, is_heating
from .tariffs import Tariff

DEFAULT_WARN_1 = Decimal("30")
DEFAULT_WARN_2 = Decimal("20")


def _key_column(t: pa.Table, keys: list[str]) -> pa.Array:
    """One comparable key per row (the column itself for a single key)."""
    if len(keys) == 1:
        return t.column(keys[0]).combine_chunks()
    return pa.array(["\x1f".join(map(str, k)) for k in zip(*[t.column(k).to_pylist() for k in keys])], pa.string())


def _upsert(lake: Lake, name: str, new: pa.Table, keys: list[str]) -> int:
    """Insert or replace rows of ``name`` by ``keys``; returns the number of new or changed rows.
    Nothing is written when nothing changed (so re-imports leave the files as they are)."""
    order = [(k, "ascending") for k in keys]
    old = lake.read(name)
    new = new.select(old.column_names).cast(old.schema)
    kept = old.filter(pc.invert(pc.is_in(_key_column(old, keys), value_set=_key_column(new, keys))))
    merged = pa.concat_tables([kept, new]).sort_by(order)
    if old.num_rows and merged.equals(old.sort_by(order)):
        return 0
    # rows of ``new`` that are not identical to an existing row
    both = pa.concat_tables([old, new]).group_by(old.column_names, use_threads=False).aggregate([])
    changed = both.num_rows - old.num_rows if old.num_rows else new.num_rows
    lake.replace_partition(name, None, merged)
    return changed


def save_meters(lake: Lake, meters: pa.Table) -> int:
    """Insert or replace meters by ``meter_id``."""
    with lake.lock():
        return _upsert(lake, "meters", meters.cast(METERS) if meters.schema != METERS else meters, ["meter_id"])


def save_accounts(lake: Lake, accounts: pa.Table, contacts: pa.Table | None = None) -> int:
    """Insert or replace accounts by ``account_id`` and their contacts (replacing each account's
    contact list)."""
    with lake.lock():
        n = _upsert(lake, "accounts", accounts, ["account_id"])
        if contacts is not None:
            old = lake.read("contacts")
            ids = pa.array(accounts.column("account_id").to_pylist(), pa.string())
            kept = old.filter(pc.invert(pc.is_in(old.column("account_id"), value_set=ids)))
            merged = pa.concat_tables([kept, contacts.cast(CONTACTS)]).sort_by(
                [("account_id", "ascending"), ("relation", "descending"), ("recipient", "ascending")])
            if merged.to_pylist() != old.sort_by([("account_id", "ascending"), ("relation", "descending"),
                                                   ("recipient", "ascending")]).to_pylist():
                lake.replace_partition("contacts", None, merged)
        return n


def save_tariffs(lake: Lake, tariffs: list) -> int:
    """Insert or replace tariff versions (interval or heating) by (tariff_id, effective_from)."""
    with lake.lock():
        return _upsert(lake, "tariffs", tariff_rows(tariffs), KEYS)


def load_tariffs(lake: Lake, heating: bool = False) -> dict:
    """Every interval tariff in the lake, as ``{tariff_id: [versions sorted by effective_from]}``;
    ``heating``: also the heating tariffs (:mod:`meters.heating`: the built-in ones, replaced by the
    lake's versions of the same id once one is imported)."""
    out: dict[str, list] = {}
    heat: dict[str, list] = {}
    for d in lake.read("tariffs", columns=["definition"]).column("definition").to_pylist():
        d = json.loads(d)
        if is_heating(d):
            t = HeatingTariff.from_dict(d)
            heat.setdefault(t.tariff_id, []).append(t)
        else:
            t = Tariff.from_dict(d)
            out.setdefault(t.tariff_id, []).append(t)
    if heating:   # a lake made before heating tariffs were seeded: the built-in ones
        out = {**builtin_heating(), **heat, **out}
    for v in out.values():
        v.sort(key=lambda t: t.effective_from)
    return out


# -- accounts import ---------------------------------------------------------------------------
REQUIRED = ("account_id", "meter_id", "tariff_id", "mode")
OPTIONAL = ("billing_day", "balance", "warn_1", "warn_2", "topup_below", "topup_amount", "contacts",
            "utility", "external_id", "concentrator", "region", "premise_area")


def _money(value: str, column: str, line: int, *, default=None) -> Decimal | None:
    value = value.strip()
    if value == "":
        return default
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise MetersError(f"line {line}: {column} {value!r} is not a number") from None
    if not d.is_finite():
        raise MetersError(f"line {line}: {column} {value!r} is not a finite number")
    if d != d.quantize(Decimal("0.01")):
        raise MetersError(f"line {line}: {column} {value!r} has more than 2 decimal places")
    return d.quantize(Decimal("0.01"))


def parse_accounts_csv(path: str | Path, tariffs: dict[str, list[Tariff]]) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Validate every row of an accounts CSV; return (accounts, contacts, meters) tables.

    Raises :class:`MetersError` naming the line and column of the first bad row; nothing is
    returned for a file with any bad row.
    """
    path = Path(path)
    tariffs = {**builtin_heating(), **tariffs}
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise MetersError(f"{path}: {e.strerror}") from None
    with f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise MetersError(f"{path}: missing column(s) {', '.join(missing)} "
                              f"(required: {', '.join(REQUIRED)})")
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if unknown:
            raise MetersError(f"{path}: unknown column(s) {', '.join(unknown)}")
        reader.fieldnames = header
        accounts, contacts, meters = [], [], []
        seen_accounts: dict[str, int] = {}
        seen_meters: dict[int, int] = {}
        for row in reader:
            i = reader.line_num   # the physical line (a quoted field may span lines)
            if None in row or any(v is None for v in row.values()):   # extra fields, or too few
                n = len(header) + len(row.get(None) or ()) - sum(v is None for k, v in row.items() if k)
                raise MetersError(f"{path}: line {i}: {n} fields, the header has {len(header)} (an unquoted "
                                  f"comma, e.g. in 1,000.00?)")
            row = {k: v.strip() for k, v in row.items()}
            a = row["account_id"]
            if not a:
                raise MetersError(f"{path}: line {i}: account_id is empty")
            if a in seen_accounts:
                raise MetersError(f"{path}: line {i}: duplicate account {a!r} (first on line {seen_accounts[a]})")
            seen_accounts[a] = i
            try:
                meter_id = int(row["meter_id"])
            except ValueError:
                raise MetersError(f"{path}: line {i}: meter_id {row['meter_id']!r} is not an integer") from None
            if not 1 <= meter_id <= METER_ID_MAX:
                raise MetersError(f"{path}: line {i}: meter_id {meter_id} is out of range 1..2^63-1")
            if meter_id in seen_meters:
                raise MetersError(f"{path}: line {i}: meter {meter_id} already belongs to the account "
                                  f"on line {seen_meters[meter_id]}")
            seen_meters[meter_id] = i
            tariff_id = row["tariff_id"]
            if tariff_id not in tariffs:
                raise MetersError(f"{path}: line {i}: unknown tariff {tariff_id!r} "
                                  f"(known: {', '.join(sorted(tariffs))})")
            mode = row["mode"]
            if mode not in MODES:
                raise MetersError(f"{path}: line {i}: mode {mode!r} must be prepaid or postpaid")
            bd = row.get("billing_day", "") or "1"
            if not bd.isdigit() or not 1 <= int(bd) <= 28:
                raise MetersError(f"{path}: line {i}: billing_day {bd!r} must be an integer 1..28")
            m = lambda c, **kw: _money(row.get(c, ""), c, i, **kw)  # noqa: E731
            try:
                balance = m("balance", default=Decimal("0.00"))
                warn_1 = m("warn_1", default=DEFAULT_WARN_1)
                warn_2 = m("warn_2", default=DEFAULT_WARN_2)
                topup_below, topup_amount = m("topup_below"), m("topup_amount")
                area = m("premise_area")
            except MetersError as e:
                raise MetersError(f"{path}: {e}") from None
            if (topup_below is None) != (topup_amount is None):
                raise MetersError(f"{path}: line {i}: topup_below and topup_amount go together")
            if topup_amount is not None and topup_amount <= 0:
                raise MetersError(f"{path}: line {i}: topup_amount must be positive")
            if warn_2 > warn_1:
                raise MetersError(f"{path}: line {i}: warn_2 ({warn_2}) must not exceed warn_1 ({warn_1})")
            tariff = tariffs[tariff_id][-1]
            if area is not None and not 0 < area <= 100_000:
                raise MetersError(f"{path}: line {i}: premise_area {area} must be above 0 and at most 100000 m²")
            if tariff.utility == "heat" and area is None:
                raise MetersError(f"{path}: line {i}: premise_area (m²) is required for heating tariff {tariff_id}")
            utility = row.get("utility") or tariff.utility
            if utility not in UTILITIES:
                raise MetersError(f"{path}: line {i}: utility {utility!r} must be one of {', '.join(UTILITIES)}")
            if utility != tariff.utility:
                raise MetersError(f"{path}: line {i}: tariff {tariff_id} is for {tariff.utility}, "
                                  f"the meter is {utility}")
            for spec in filter(None, (s.strip() for s in row.get("contacts", "").split(";"))):
                try:
                    rel, rcpt, lang = parse_contact(spec)
                except MetersError as e:
                    raise MetersError(f"{path}: line {i}: {e}") from None
                contacts.append({"account_id": a, "recipient": rcpt, "relation": rel, "language": lang})
            accounts.append({"account_id": a, "meter_id": meter_id, "tariff_id": tariff_id, "mode": mode,
                             "billing_day": int(bd), "balance": balance, "warn_1": warn_1, "warn_2": warn_2,
                             "topup_below": topup_below, "topup_amount": topup_amount, "premise_area": area})
            meters.append({"meter_id": meter_id, "external_id": row.get("external_id") or None,
                           "utility": utility, "unit": UNITS[utility],
                           "concentrator": row.get("concentrator") or None, "region": row.get("region") or None,
                           "register_max": None})
        if not accounts:
            raise MetersError(f"{path}: no accounts (the file has a header but no rows)")
    return (pa.Table.from_pylist(accounts, ACCOUNTS), pa.Table.from_pylist(contacts, CONTACTS),
            pa.Table.from_pylist(meters, METERS))


def merge_meters(lake: Lake, meters: pa.Table) -> int:
    """Insert the meters of an accounts CSV, keeping the registry facts (register_max, concentrator …)
    of meters that already exist; returns the number of new or changed meters."""
    known = {r["meter_id"]: r for r in lake.read("meters").to_pylist()}
    rows = []
    for r in meters.to_pylist():
        old = known.get(r["meter_id"])
        rows.append({**old, **{k: v for k, v in r.items() if v is not None}} if old else r)
    with lake.lock():
        return _upsert(lake, "meters", pa.Table.from_pylist(rows, METERS), ["meter_id"])


def import_accounts(lake: Lake, path: str | Path) -> dict:
    """Validate and import an accounts CSV (all rows or none). Re-importing the same file changes
    nothing. Returns counts."""
    accounts, contacts, meters = parse_accounts_csv(path, load_tariffs(lake, heating=True))
    existing = lake.read("accounts", columns=["account_id", "meter_id"]).to_pylist()
    owner = {r["meter_id"]: r["account_id"] for r in existing}
    for r in accounts.select(["account_id", "meter_id"]).to_pylist():
        if owner.get(r["meter_id"], r["account_id"]) != r["account_id"]:
            raise MetersError(f"{path}: meter {r['meter_id']} already belongs to account {owner[r['meter_id']]}")
    m = merge_meters(lake, meters)
    n = save_accounts(lake, accounts, contacts)
    return {"accounts": accounts.num_rows, "contacts": contacts.num_rows, "accounts_changed": n,
            "meters_changed": m, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
