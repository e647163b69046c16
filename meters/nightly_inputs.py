"""The store the night reads: what the nightly batch needs from the account store, as an interface.

Billing never imports the account service (stages are independent); it asks this module for the
lake's :class:`NightlyStore`, which the account service implements and declares under the Python
entry point group ``meters.stores`` (``pyproject.toml``). A lake without an account store (no
``accounts.db`` and no ``--db``/``$METERS_DB``) has none: billing then reads the lake's registry
tables and payment files as before.

The protocol of one day (exactly once, never refused): ``payments, watermark =
store.payments_for_day(day)``; settle the day with ``settings_in_force(day)`` and
``contacts_in_force(day)``; commit the day's outputs; then ``record_settled(day, watermark)``. A
settled day's re-run reads the same payments and settings again.
"""
from __future__ import annotations

import datetime as dt
import os
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import pyarrow as pa

from .accountdb import DB_FILE as STORE_FILE  # the embedded store in a local lake (the account service's default)
from .errors import MetersError
from .lake import Lake

GROUP = "meters.stores"
# Payments migrated from a lake's payment files keep those files in the ledger (not written again).
LAKE_CHANNEL = "lake"


@runtime_checkable
class NightlyStore(Protocol):
    """The account store as the nightly batch sees it."""

    def payments_for_day(self, day: dt.date) -> tuple[pa.Table, int]:
        """(the payments to credit on lake-local ``day`` — columns ``seq``, ``account_id``,
        ``amount`` (decimal, negative: a reversal), ``received_at``, ``channel``, ``channel_ref``,
        ``payer``, ``reverses`` —, the watermark to record after the day's commit)."""

    def settings_in_force(self, day: dt.date) -> pa.Table:
        """Every account with its settings in force on ``day`` (the lake's ``accounts`` schema)."""

    def contacts_in_force(self, day: dt.date) -> pa.Table:
        """The alert recipients in force on ``day`` (the lake's ``contacts`` schema)."""

    def record_settled(self, day: dt.date, watermark: int) -> bool:
        """Record that ``day`` was settled with the payments up to ``watermark``."""

    def reset_settled(self, before: dt.date) -> None:
        """Forget every settled day (``meters bill reset``: billing starts again on ``before``);
        refused (:class:`MetersError`) when a payment was received before ``before``."""

    def export_registry(self, day: dt.date) -> None:
        """Write the lake's ``accounts`` and ``contacts`` tables as in force on ``day`` (the analysts'
        views)."""

    def close(self) -> None:
        """Release the connection."""


def _factories() -> dict:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def open_nightly_store(lake: Lake, db: str | None = None, *, create: bool = False) -> NightlyStore | None:
    """The lake's account store, or None when the lake has none (``create``: make it, importing the
    lake's registry and payments on first use). The implementation is the ``meters.stores`` entry
    point (``$METERS_STORE`` names one when several are installed)."""
    eps = _factories()
    name = os.environ.get("METERS_STORE") or (sorted(eps)[0] if eps else None)
    if name is None or name not in eps:
        embedded = lake.is_local and (lake.root / STORE_FILE).exists()
        if create or db or os.environ.get("METERS_DB") or embedded:   # never bill past a store unseen
            raise MetersError(f"no account store implementation installed (entry point group {GROUP!r}"
                              f"{', name ' + repr(name) if name else ''}); reinstall meters")
        return None
    return eps[name].load()(lake, db, create=create)
