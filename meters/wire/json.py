"""The JSON wire format (docs/wire-format.md): one reading object, or an array of them.

``{"meter_id": 110100000001, "ts": "2026-11-23T00:15:00+08:00", "register": 1532.417}``; the
register is written exactly from thousandths. Decoding only parses the text: the records' fields are
validated by the reader (ingest)."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np

from .codec import Codec, WireError

_ISO_CACHES: dict[dt.tzinfo, dict[int, str]] = {}


def objects(meter_id, ts, register_milli, tz: dt.tzinfo | None = None) -> list[str]:
    """One JSON object per reading, ``ts`` as ISO 8601 with ``tz``'s offset (default UTC)."""
    tz = tz or dt.timezone.utc
    cache = _ISO_CACHES.setdefault(tz, {})
    out = []
    for m, t, r in zip(np.asarray(meter_id).tolist(), np.asarray(ts).tolist(), np.asarray(register_milli).tolist()):
        iso = cache.get(t)
        if iso is None:
            if len(cache) > 100_000:
                cache.clear()
            iso = cache[t] = dt.datetime.fromtimestamp(t, tz).isoformat()
        out.append(f'{{"meter_id":{m},"ts":"{iso}","register":{r // 1000}.{r % 1000:03d}}}')
    return out


def encode_each(meter_id, ts, register_milli, tz=None) -> list[bytes]:
    return [d.encode() for d in objects(meter_id, ts, register_milli, tz)]


def encode_array(meter_id, ts, register_milli, tz=None) -> list[bytes]:
    return [("[" + ",".join(objects(meter_id, ts, register_milli, tz)) + "]").encode()]


def decode(payload: bytes) -> list:
    """The payload's records: the object, or the array's items."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError("bad_encoding", f"not UTF-8: {e}") from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise WireError("not_json", f"not JSON: {str(e)[:200]}") from None
    return doc if isinstance(doc, list) else [doc]


def claims(payload: bytes) -> bool:
    return True  # whatever no other format claims is read as JSON


REASONS = {"bad_encoding": "JSON payload is not UTF-8", "not_json": "not valid JSON (and not a binary batch)"}
CODEC = Codec("json", "one JSON object per reading", encode_each, decode, claims, REASONS)
ARRAY_CODEC = Codec("json-array", "JSON arrays", encode_array, decode, claims, REASONS)
