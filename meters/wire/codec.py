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
    """Readings decoded column-wise (a binary batch): int64 arrays, ``ts`` in Unix seconds; a heat
    meter's batch also carries :class:`HeatColumns` (None for other batches)."""

    meter_id: np.ndarray
    ts: np.ndarray
    register_milli: np.ndarray
    heat: "HeatColumns | None" = None


NULL_TEMP = -32768                    # int16: not reported
NULL_VOLUME = -(2**63)                # int64: not reported


class HeatColumns(NamedTuple):
    """A heat meter's optional readings: temperatures in hundredths of a °C (int16,
    :data:`NULL_TEMP` = not reported), volume register in litres (int64, :data:`NULL_VOLUME`)."""

    flow_temp_centi: np.ndarray
    return_temp_centi: np.ndarray
    volume_milli: np.ndarray

    def take(self, idx) -> "HeatColumns":
        return HeatColumns(*(np.asarray(c)[idx] for c in self))


@dataclass(frozen=True, eq=False)
class Codec:
    """One wire format.

    ``encode(meter_id, ts, register_milli, tz, heat=None)`` turns readings (``ts`` Unix seconds, registers in
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
