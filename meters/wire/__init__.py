"""Wire formats of meter readings (docs/wire-format.md): one codec module per format and the
``FORMATS`` table that the simulator, replay and ingest take their choices from.

A new format is a module with a :class:`Codec` added to ``FORMATS``; no stage names a format.
``detect`` finds the codec of a received payload (a payload starting with the binary magic, or shaped
like a damaged batch, is binary; anything else is JSON)."""
from __future__ import annotations

from ..errors import MetersError
from . import binary, json
from .codec import NULL_TEMP, NULL_VOLUME, Codec, Columns, HeatColumns, WireError

FORMATS: dict[str, Codec] = {c.name: c for c in (binary.CODEC, json.CODEC, json.ARRAY_CODEC)}
DEFAULT = binary.CODEC.name
# formats that carry a whole batch in one message, under the names `meters replay --format` uses
BATCH_FORMATS: dict[str, Codec] = {"binary": binary.CODEC, "json": json.ARRAY_CODEC}
_DETECT = (binary.CODEC, json.CODEC)  # in order; JSON claims everything
REASONS: dict[str, str] = {r: why for c in FORMATS.values() for r, why in c.reasons.items()}


def detect(payload: bytes) -> Codec:
    """The codec that reads ``payload``."""
    for c in _DETECT:
        if c.claims(payload):
            return c
    raise AssertionError("the JSON codec claims every payload")  # pragma: no cover


def json_object(payload: bytes) -> dict | None:
    """``payload``'s one JSON object, parsed, when it is one that :func:`detect` gives to JSON and
    the JSON codec would read the same way; None otherwise (use :func:`detect`). A payload starting
    with ``{`` is never claimed by the binary codec."""
    return json.one_object(payload) if payload[:1] == b"{" else None


def lookup(name: str, table: dict[str, Codec] = FORMATS) -> Codec:
    """``table[name]``, or a :class:`MetersError` naming the choices."""
    try:
        return table[name]
    except KeyError:
        raise MetersError(f"--format {name!r}: use one of {', '.join(table)}") from None


def describe(table: dict[str, Codec] = FORMATS) -> str:
    """``"binary batches, one JSON object per reading, or JSON arrays"`` (for help texts)."""
    helps = [c.help for c in table.values()]
    return helps[0] if len(helps) == 1 else ", ".join(helps[:-1]) + ("," if len(helps) > 2 else "") + " or " + helps[-1]


encode_batch, decode_batch, is_binary = binary.encode_batch, binary.decode_batch, binary.is_binary

__all__ = ["FORMATS", "BATCH_FORMATS", "DEFAULT", "REASONS", "Codec", "Columns", "HeatColumns", "NULL_TEMP",
           "NULL_VOLUME", "WireError", "detect", "lookup",
           "describe", "json_object", "encode_batch", "decode_batch", "is_binary"]
