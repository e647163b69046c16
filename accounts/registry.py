"""Importing the customer registry into the store: from the lake's ``accounts``/``contacts``/``meters``
tables (an existing lake's migration) or from an accounts CSV validated by :mod:`meters.registry`.

All rows or none (one transaction). A column the source leaves out changes nothing; a value that
differs from the one in force today becomes a new dated settings row effective today (a new account's
first row is in force since always, so re-running old days sees it); an unchanged source writes
nothing.
"""
from __future__ import annotations

import csv
import datetime as dt
import getpass
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa

from meters.errors import MetersError
from meters.registry import OPTIONAL, load_tariffs, parse_accounts_csv

from .schema import accounts, contacts, settings
from .settings import LANGUAGES_DEFAULT, SETTING_FIELDS, check_effective, in_force
from .store import Store, utcnow

ALWAYS = dt.date(1970, 1, 1)  # effective_from of an account's first settings
SETTING_COLUMNS = {"tariff_id": "tariff_id", "mode": "mode", "warn_1": "warn_1_cents", "warn_2": "warn_2_cents",
                   "topup_below": "topup_below_cents", "topup_amount": "topup_amount_cents",
                   "premise_area": "premise_area_centi"}


def _cents(d) -> int | None:
    return None if d is None else int(d * 100)


def apply_registry(store: Store, accs: pa.Table, cons: pa.Table | None, meters: pa.Table, columns: set[str],
                   *, changed_by: str, channel: str = "import") -> dict:
    """Write accounts (lake ``accounts`` schema), their contacts (``contacts`` schema, None: leave
    contacts alone) and their meters' utilities, using only ``columns`` of the optional ones."""
    utility = dict(zip(meters.column("meter_id").to_pylist(), meters.column("utility").to_pylist()))
    now = utcnow()
    counts = {"accounts": accs.num_rows, "accounts_new": 0, "accounts_changed": 0, "settings_rows": 0,
              "contact_rows": 0}
    with store.write() as conn:
        day = check_effective(conn, store, None)
        old_acc = {r.account_id: r for r in conn.execute(sa.select(accounts)).all()}
        old_set = {r.account_id: r for r in in_force(conn, day, settings, [settings.c.account_id])}
        old_con: dict[str, dict] = {}
        for r in in_force(conn, day, contacts, [contacts.c.account_id, contacts.c.recipient]):
            if not r.removed:
                old_con.setdefault(r.account_id, {})[r.recipient] = (r.relation, r.language)
        new_con: dict[str, dict] = {a: {} for a in accs.column("account_id").to_pylist()}
        for r in (cons.to_pylist() if cons is not None else []):
            new_con.setdefault(r["account_id"], {})[r["recipient"]] = (r["relation"],
                                                                       r.get("language") or LANGUAGES_DEFAULT)
        set_rows, con_rows = [], []
        who = {"changed_at": now, "changed_by": changed_by, "channel": channel}
        for r in accs.to_pylist():
            a = r["account_id"]
            if r["meter_id"] not in utility:
                raise MetersError(f"account {a}: meter {r['meter_id']} is not in the meter registry")
            row = {"meter_id": r["meter_id"], "utility": utility[r["meter_id"]],
                   "billing_day": r["billing_day"], "opening_cents": _cents(r["balance"]) or 0}
            full = {f: (_cents(r.get(c)) if c.startswith(("warn", "topup", "premise")) else r[c])
                    for c, f in SETTING_COLUMNS.items()}
            values = {f: v for (c, f), v in zip(SETTING_COLUMNS.items(), full.values()) if c in columns}
            if a not in old_acc:
                conn.execute(sa.insert(accounts).values(account_id=a, created_at=now, **row))
                set_rows.append({"account_id": a, "effective_from": ALWAYS, **full, **who})
                counts["accounts_new"] += 1
                since = ALWAYS
            else:
                update = {k: row[k] for k, c in (("meter_id", "account_id"), ("utility", "account_id"),
                                                 ("billing_day", "billing_day"), ("opening_cents", "balance"))
                          if c == "account_id" or c in columns}
                if any(getattr(old_acc[a], k) != v for k, v in update.items()):
                    conn.execute(sa.update(accounts).where(accounts.c.account_id == a).values(**update))
                    counts["accounts_changed"] += 1
                old = {f: getattr(old_set[a], f) for f in SETTING_FIELDS} if a in old_set else None
                if old is None or old | values != old:
                    set_rows.append({"account_id": a, "effective_from": day, **(old or full), **values, **who})
                since = day
            if "contacts" in columns:
                before, after = old_con.get(a, {}), new_con.get(a, {})
                for rcpt, (rel, lang) in after.items():
                    if before.get(rcpt) != (rel, lang):
                        con_rows.append({"account_id": a, "recipient": rcpt, "relation": rel, "language": lang,
                                         "removed": False, "effective_from": since, **who})
                for rcpt, (rel, lang) in before.items():
                    if rcpt not in after:
                        con_rows.append({"account_id": a, "recipient": rcpt, "relation": rel, "language": lang,
                                         "removed": True, "effective_from": since, **who})
        if set_rows:
            conn.execute(sa.insert(settings), set_rows)
        if con_rows:
            conn.execute(sa.insert(contacts), con_rows)
    counts["settings_rows"], counts["contact_rows"] = len(set_rows), len(con_rows)
    return counts


def import_from_lake(store: Store, *, changed_by: str | None = None) -> dict:
    """Import the lake's registry (``meters accounts import`` wrote it) into the store."""
    lake = store.lake
    return apply_registry(store, lake.read("accounts"), lake.read("contacts"), lake.read("meters"),
                          set(OPTIONAL) | set(SETTING_COLUMNS), changed_by=changed_by or getpass.getuser())


def import_accounts_csv(store: Store, path: str | Path, *, changed_by: str | None = None) -> dict:
    """Validate an accounts CSV (:func:`meters.registry.parse_accounts_csv`: errors by line, all rows
    or none) and import it into the store; columns the file leaves out change nothing."""
    accs, cons, meters = parse_accounts_csv(path, load_tariffs(store.lake, heating=True))
    with store.read() as conn:
        owner = dict(conn.execute(sa.select(accounts.c.meter_id, accounts.c.account_id)).all())
    for a, m in zip(accs.column("account_id").to_pylist(), accs.column("meter_id").to_pylist()):
        if owner.get(m, a) != a:
            raise MetersError(f"{path}: meter {m} already belongs to account {owner[m]}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = {h.strip() for h in next(csv.reader(f), [])}
    known = {r["meter_id"]: r["utility"] for r in store.lake.read("meters", columns=["meter_id", "utility"]).to_pylist()}
    meters = pa.Table.from_pylist([{"meter_id": m, "utility": u} for m, u in
                                   {**known, **dict(zip(meters.column("meter_id").to_pylist(),
                                                        meters.column("utility").to_pylist()))}.items()])
    return apply_registry(store, accs, cons, meters, header, changed_by=changed_by or getpass.getuser())


def import_csv(store: Store, path: str | Path, *, changed_by: str | None = None) -> dict:
    """``meters accounts import``: the CSV into the store (:func:`import_accounts_csv`), its meters into
    the lake's meter registry, and the lake's ``accounts``/``contacts`` views brought in step
    (:mod:`accounts.export`; an unchanged file writes nothing)."""
    from meters.registry import merge_meters

    from .export import export_registry

    out = import_accounts_csv(store, path, changed_by=changed_by)
    out["meters_changed"] = merge_meters(store.lake, parse_accounts_csv(path, load_tariffs(store.lake, heating=True))[2])
    out["views_changed"] = [k for k, v in export_registry(store).items() if v]
    return out
