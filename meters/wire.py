"""The binary batch wire format (docs/wire-format.md) and JSON encoding of readings.

Binary batch, little-endian, 24-byte header then three fixed-width columns:

    offset size  field
    0      4     magic  b"MTR1"
    4      1     version (1)
    5      1     flags (0; reserved)
    6      2     reserved (0)
    8      4     count  n (uint32)
    12     4     crc32 of the body (zlib.crc32 of bytes 24..end)
    16     8     base_ts (int64 Unix seconds)
    24     8n    meter_id        int64[n]
    24+8n  4n    ts - base_ts    int32[n]  (seconds)
    24+12n 8n    register_milli  int64[n]  (register × 1000: Wh, litres; exact)

Decoding is zero-copy with numpy. JSON payloads share the topic: a payload starting with the magic is
binary, anything else is treated as JSON.
"""
from __future__ import annotations

import datetime as dt
import json
import struct
import zlib

import numpy as np

MAGIC = b"MTR1"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIq")
HEADER_SIZE = HEADER.size  # 24
BYTES_PER_READING = 20


class WireError(ValueError):
    """A payload that cannot be decoded; ``reason`` is a short code for the dead-letter table."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def is_binary(payload: bytes) -> bool:
    return payload[:4] == MAGIC


def encode_batch(meter_id: np.ndarray, ts: np.ndarray, register_milli: np.ndarray) -> bytes:
    """Encode one batch. ``ts`` in Unix seconds (int64); all arrays of equal length."""
    meter_id = np.ascontiguousarray(meter_id, dtype="<i8")
    ts = np.asarray(ts, dtype=np.int64)
    register_milli = np.ascontiguousarray(register_milli, dtype="<i8")
    n = len(meter_id)
    if not (len(ts) == n == len(register_milli)):
        raise ValueError("meter_id, ts and register_milli must have the same length")
    base = int(ts.min()) if n else 0
    dts = ts - base
    if n and dts.max() > np.iinfo(np.int32).max:
        raise ValueError("a batch may span at most 2^31 seconds")
    body = meter_id.tobytes() + dts.astype("<i4").tobytes() + register_milli.tobytes()
    return HEADER.pack(MAGIC, VERSION, 0, 0, n, zlib.crc32(body), base) + body


def decode_batch(payload: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode a binary batch into (meter_id int64, ts int64 Unix seconds, register_milli int64).

    Raises :class:`WireError` with reason ``bad_magic``, ``bad_version``, ``truncated`` or
    ``checksum``.
    """
    if len(payload) < HEADER_SIZE:
        if payload[:4] != MAGIC[: len(payload[:4])]:
            raise WireError("bad_magic", f"payload starts with {payload[:4]!r}, not {MAGIC!r}")
        raise WireError("truncated", f"{len(payload)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, _flags, _res, n, crc, base = HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise WireError("bad_magic", f"payload starts with {magic!r}, not {MAGIC!r}")
    if version != VERSION:
        raise WireError("bad_version", f"binary batch version {version} is not supported (expected {VERSION})")
    expected = HEADER_SIZE + BYTES_PER_READING * n
    if len(payload) != expected:
        raise WireError("truncated", f"header says {n} readings ({expected} bytes), payload has {len(payload)} bytes")
    body = memoryview(payload)[HEADER_SIZE:]
    if zlib.crc32(body) != crc:
        raise WireError("checksum", "body CRC32 does not match the header")
    meter_id = np.frombuffer(payload, dtype="<i8", count=n, offset=HEADER_SIZE)
    dts = np.frombuffer(payload, dtype="<i4", count=n, offset=HEADER_SIZE + 8 * n)
    register_milli = np.frombuffer(payload, dtype="<i8", count=n, offset=HEADER_SIZE + 12 * n)
    return meter_id, dts.astype(np.int64) + base, register_milli


def encode_json(meter_id, ts, register_milli, tz: dt.tzinfo | None = None) -> bytes:
    """Encode readings as a JSON array (CONTRACTS.md): ISO 8601 ``ts`` with offset (``tz``, default
    UTC) and ``register`` in the meter's unit."""
    tz = tz or dt.timezone.utc
    out = []
    for m, t, r in zip(np.asarray(meter_id).tolist(), np.asarray(ts).tolist(), np.asarray(register_milli).tolist()):
        out.append({"meter_id": m, "ts": dt.datetime.fromtimestamp(t, tz).isoformat(),
                    "register": round(r / 1000.0, 3)})
    return json.dumps(out if len(out) != 1 else out[0], separators=(",", ":")).encode()
