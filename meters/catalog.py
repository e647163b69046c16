"""The tariff catalog as rows of the ``tariffs`` table, and the built-in catalog every new lake
starts with (below :mod:`meters.lake`, which seeds it; :mod:`meters.registry` edits it later)."""
from __future__ import annotations

import pyarrow as pa

from .schemas import TARIFFS
from .tariffs import builtin_catalog

KEYS = ["tariff_id", "effective_from"]


def tariff_rows(tariffs: list) -> pa.Table:
    """``tariffs`` as a ``tariffs`` table, sorted by (tariff_id, effective_from)."""
    rows = [{"tariff_id": t.tariff_id, "utility": t.utility, "unit": t.unit, "currency": t.currency,
             "description": t.description, "effective_from": t.effective_from, "source": t.source,
             "definition": t.to_json()} for t in tariffs]
    return pa.Table.from_pylist(rows, TARIFFS).sort_by([(k, "ascending") for k in KEYS])


def seed_catalog(lake) -> None:
    """Write the built-in catalog (interval and heating tariffs) into a new lake (whose ``tariffs``
    table is empty)."""
    from .heating import builtin_heating

    heating = [v for versions in builtin_heating().values() for v in versions]
    with lake.lock():
        lake.replace_partition("tariffs", None, tariff_rows(builtin_catalog() + heating))
