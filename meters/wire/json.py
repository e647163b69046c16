"""The JSON wire format (docs/wire-format.md): one reading object, or an array of them.

``{"meter_id": 110100000001, "ts": "2026-11-23T00:15:00+08:00", "register": 1532.417}``; the
register is written exactly from thousandths. A heat meter's reading may add ``flow_temp`` and
``return_temp`` (°C, to 0.01) and ``volume`` (m³, to 0.001); a field not reported is left out. Decoding only parses the text: the records' fields are
validated by the reader (ingest)."""
from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import orjson

from .codec import NULL_TEMP, NULL_VOLUME, Codec, HeatColumns, WireError

LONG_DIGITS = re.compile(rb"[0-9]{19}")  # orjson reads such an integer as a float
_ISO_CACHES: dict[dt.tzinfo, dict[int, str]] = {}


def _fixed(x: int, places: int) -> str:
    sign, x = ("-", -x) if x < 0 else ("", x)
    q = 10 ** places
    return f"{sign}{x // q}.{x % q:0{places}d}"


def _heat_fields(heat: HeatColumns | None, n: int) -> list[str]:
    if heat is None:
        return [""] * n
    out = []
    for f, r, v in zip(*(np.asarray(c).tolist() for c in heat)):
        parts = [f',"{k}":{_fixed(x, p)}' for k, x, p, null in (("flow_temp", f, 2, NULL_TEMP),
                 ("return_temp", r, 2, NULL_TEMP), ("volume", v, 3, NULL_VOLUME)) if x != null]
        out.append("".join(parts))
    return out


def objects(meter_id, ts, register_milli, tz: dt.tzinfo | None = None, heat: HeatColumns | None = None) -> list[str]:
    """One JSON object per reading, ``ts`` as ISO 8601 with ``tz``'s offset (default UTC); ``heat``
    adds a heat meter's optional fields."""
    tz = tz or dt.timezone.utc
    cache = _ISO_CACHES.setdefault(tz, {})
    out = []
    extra = _heat_fields(heat, len(meter_id))
    for m, t, r, x in zip(np.asarray(meter_id).tolist(), np.asarray(ts).tolist(), np.asarray(register_milli).tolist(),
                          extra):
        iso = cache.get(t)
        if iso is None:
            if len(cache) > 100_000:
                cache.clear()
            iso = cache[t] = dt.datetime.fromtimestamp(t, tz).isoformat()
        out.append(f'{{"meter_id":{m},"ts":"{iso}","register":{r // 1000}.{r % 1000:03d}{x}}}')
    return out


def encode_each(meter_id, ts, register_milli, tz=None, heat=None) -> list[bytes]:
    return [d.encode() for d in objects(meter_id, ts, register_milli, tz, heat)]


def encode_array(meter_id, ts, register_milli, tz=None, heat=None) -> list[bytes]:
    return [("[" + ",".join(objects(meter_id, ts, register_milli, tz, heat)) + "]").encode()]


def decode(payload: bytes) -> list:
    """The payload's records: the object, or the array's items. Parsed by orjson; what it refuses
    (NaN, integers beyond 64 bits, lone surrogates, bad UTF-8, deep nesting …) is parsed again by the
    standard library, so the accepted documents, the values and the reasons are the same as with it.
    A payload with 19 digits in a row also goes to the standard library: orjson reads an integer
    beyond 64 bits as a float."""
    if LONG_DIGITS.search(payload):
        doc = _decode_stdlib(payload)
    else:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            doc = _decode_stdlib(payload)
    return doc if isinstance(doc, list) else [doc]


def one_object(payload: bytes) -> dict | None:
    """The payload's JSON object when it is one and orjson reads it as :func:`decode` would (the fast
    path of the commonest message); None otherwise: use :func:`decode`."""
    if LONG_DIGITS.search(payload):
        return None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return doc if type(doc) is dict else None


def _decode_stdlib(payload: bytes):
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError("bad_encoding", f"not UTF-8: {e}") from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise WireError("not_json", f"not JSON: {str(e)[:200]}") from None
    return doc


def claims(payload: bytes) -> bool:
    return True  # whatever no other format claims is read as JSON


REASONS = {"bad_encoding": "JSON payload is not UTF-8", "not_json": "not valid JSON (and not a binary batch)"}
CODEC = Codec("json", "one JSON object per reading", encode_each, decode, claims, REASONS)
ARRAY_CODEC = Codec("json-array", "JSON arrays", encode_array, decode, claims, REASONS)
