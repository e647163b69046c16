"""The binary batch wire format (docs/wire-format.md).

Little-endian, 24-byte header then three fixed-width columns:

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

Decoding is zero-copy with numpy. :class:`Template` builds batches whose meter and time columns
repeat (a concentrator's upload) without re-encoding them.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from .codec import Codec, Columns, WireError

MAGIC = b"MTR1"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIq")
HEADER_SIZE = HEADER.size  # 24
BYTES_PER_READING = 20


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


def looks_binary(payload: bytes) -> bool:
    """A payload that is shaped like a binary batch (header count matches its length, or it starts
    like the magic) but lacks the magic: a damaged batch rather than bad JSON."""
    if payload[:1] in (b"{", b"[", b" ", b"\n", b"\r", b"\t") or len(payload) < HEADER_SIZE:
        return False
    n = int.from_bytes(payload[8:12], "little")
    return payload[:2] == MAGIC[:2] or len(payload) == HEADER_SIZE + BYTES_PER_READING * n


def claims(payload: bytes) -> bool:
    return is_binary(payload) or looks_binary(payload)


def decode(payload: bytes) -> Columns:
    if not is_binary(payload):
        raise WireError("bad_magic", f"binary batch starts with {payload[:4]!r}, not {MAGIC!r}")
    return Columns(*decode_batch(payload))


def encode(meter_id, ts, register_milli, tz=None) -> list[bytes]:
    return [encode_batch(meter_id, ts, register_milli)]


class Template:
    """Batches of ``meter_id``/``dts`` (seconds after each batch's base) that differ only in their
    registers: the two fixed columns are encoded once and :meth:`batch` adds the registers."""

    def __init__(self, meter_id: np.ndarray, dts: np.ndarray):
        self.n = len(meter_id)
        self.prefix = np.asarray(meter_id).astype("<i8").tobytes() + np.asarray(dts).astype("<i4").tobytes()
        self.crc = zlib.crc32(self.prefix)

    def batch(self, base: int, register_milli: np.ndarray) -> bytes:
        rb = np.ascontiguousarray(register_milli, dtype="<i8").tobytes()
        return b"".join((HEADER.pack(MAGIC, VERSION, 0, 0, self.n, zlib.crc32(rb, self.crc), base), self.prefix, rb))


CODEC = Codec("binary", "binary batches", encode, decode, claims,
              reasons={"bad_magic": "binary batch without the MTR1 magic",
                       "bad_version": "binary batch of a version other than 1",
                       "truncated": "binary batch whose length is not 24 + 20n bytes",
                       "checksum": "binary batch whose body CRC32 does not match its header"})
