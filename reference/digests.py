"""Plain-Python references of :mod:`meters.digests` (:mod:`hashlib` and :mod:`base64` per value) and of
:func:`meters.outbox.alert_ids` (:func:`meters.outbox.alert_id` per alert). Not shipped."""
from __future__ import annotations

import base64
import hashlib

from meters import outbox


def sha256_reference(values: list[bytes]) -> list[bytes]:
    return [hashlib.sha256(v).digest() for v in values]


def base32_reference(rows: list[bytes], prefix: str = "") -> list[str]:
    return [prefix + base64.b32encode(r).decode().lower() for r in rows]


def alert_ids_reference(accounts, day, kind, recipients, payments=None) -> list[str]:
    payments = payments if payments is not None else [None] * len(accounts)
    return [outbox.alert_id(a, day, kind, r, p) for a, r, p in zip(accounts, recipients, payments)]
