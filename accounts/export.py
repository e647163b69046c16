"""The analysts' registry views in step with the store: the lake's ``accounts`` and ``contacts``
tables are written from the settings and contacts in force (today by default) — by every billing run
(through :mod:`meters.nightly_inputs`) and by ``meters accounts import``. A table whose content is
unchanged is not rewritten."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa

from .settings import contacts_in_force, settings_in_force
from .store import Store

ORDER = {"accounts": [("account_id", "ascending")],
         "contacts": [("account_id", "ascending"), ("relation", "descending"), ("recipient", "ascending")]}


def _replace(store: Store, name: str, table: pa.Table) -> bool:
    lake = store.lake
    table = table.sort_by(ORDER[name])
    if lake.read(name).sort_by(ORDER[name]).to_pylist() == table.to_pylist():
        return False
    lake.replace_partition(name, None, table)
    return True


def export_registry(store: Store, day: dt.date | None = None) -> dict:
    """Write the lake's ``accounts`` and ``contacts`` as in force on ``day`` (default today); returns
    which tables changed."""
    day = day or store.today()
    with store.lake.lock():
        return {"accounts": _replace(store, "accounts", settings_in_force(store, day)),
                "contacts": _replace(store, "contacts", contacts_in_force(store, day))}
