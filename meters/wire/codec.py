"""What every wire format provides: a :class:`Codec` (encode, decode, recognise) and its errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np


class WireError(ValueError):
    """A payload that cannot be decoded; ``reason`` is a short code for the dead-letter table."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Columns(NamedTuple):
    """Readings decoded column-wise (a binary batch): int64 arrays, ``ts`` in Unix seconds."""

    meter_id: np.ndarray
    ts: np.ndarray
    register_milli: np.ndarray


@dataclass(frozen=True, eq=False)
class Codec:
    """One wire format.

    ``encode(meter_id, ts, register_milli, tz)`` turns readings (``ts`` Unix seconds, registers in
    thousandths; ``tz`` the offset written into text timestamps) into the payloads to publish, one
    message each. ``decode(payload)`` gives :class:`Columns` (already typed readings) or a ``list`` of
    records (JSON-like objects still to be validated), or raises :class:`WireError` with one of
    ``reasons``. ``claims(payload)`` tells whether a payload is this format (or a damaged payload of
    it)."""

    name: str
    help: str
    encode: Callable[..., list[bytes]]
    decode: Callable[[bytes], "Columns | list"]
    claims: Callable[[bytes], bool]
    reasons: dict[str, str] = field(default_factory=dict)  # WireError reason -> what it means
