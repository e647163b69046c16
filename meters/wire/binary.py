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

With flag bit 0 (``HEAT``) three more columns follow (32 bytes per reading):

    24+20n 2n    flow_temp_centi   int16[n]  (°C × 100; -32768 = not reported)
    24+22n 2n    return_temp_centi int16[n]
    24+24n 8n    volume_milli      int64[n]  (volume register × 1000: litres; -2^63 = not reported)

A batch without the flag is byte for byte the original version 1 layout.

Decoding is zero-copy with numpy. :class:`Template` builds batches whose meter and time columns
repeat (a concentrator's upload) without re-encoding them.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from .codec import Codec, Columns, HeatColumns, WireError

MAGIC = b"MTR1"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIq")
HEADER_SIZE = HEADER.size  # 24
BYTES_PER_READING = 20
HEAT = 0x01                 # flag: heat columns follow
HEAT_BYTES = 12             # extra bytes per reading with HEAT
KNOWN_FLAGS = HEAT


def is_binary(payload: bytes) -> bool:
    return payload[:4] == MAGIC


def encode_batch(meter_id: np.ndarray, ts: np.ndarray, register_milli: np.ndarray,
                 heat: HeatColumns | None = None) -> bytes:
    """Encode one batch. ``ts`` in Unix seconds (int64); all arrays of equal length; ``heat`` adds
    the heat columns (flag ``HEAT``)."""
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
    flags = 0
    if heat is not None:
        if any(len(c) != n for c in heat):
            raise ValueError("heat columns must have the same length as meter_id")
        flags = HEAT
        body += b"".join(np.ascontiguousarray(c, dtype=d).tobytes() for c, d in zip(heat, ("<i2", "<i2", "<i8")))
    return HEADER.pack(MAGIC, VERSION, flags, 0, n, zlib.crc32(body), base) + body


def decode_batch(payload: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode a binary batch into (meter_id int64, ts int64 Unix seconds, register_milli int64)
    (the heat columns of a ``HEAT`` batch: :func:`decode`).

    Raises :class:`WireError` with reason ``bad_magic``, ``bad_version``, ``bad_flags``,
    ``truncated`` or ``checksum``.
    """
    return _decode(payload)[:3]


def _decode(payload: bytes) -> tuple:
    if len(payload) < HEADER_SIZE:
        if payload[:4] != MAGIC[: len(payload[:4])]:
            raise WireError("bad_magic", f"payload starts with {payload[:4]!r}, not {MAGIC!r}")
        raise WireError("truncated", f"{len(payload)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, flags, _res, n, crc, base = HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise WireError("bad_magic", f"payload starts with {magic!r}, not {MAGIC!r}")
    if version != VERSION:
        raise WireError("bad_version", f"binary batch version {version} is not supported (expected {VERSION})")
    if flags & ~KNOWN_FLAGS:
        raise WireError("bad_flags", f"binary batch flags {flags:#04x} has bits other than HEAT (0x01)")
    expected = HEADER_SIZE + (BYTES_PER_READING + (HEAT_BYTES if flags & HEAT else 0)) * n
    if len(payload) != expected:
        raise WireError("truncated", f"header says {n} readings ({expected} bytes), payload has {len(payload)} bytes")
    body = memoryview(payload)[HEADER_SIZE:]
    if zlib.crc32(body) != crc:
        raise WireError("checksum", "body CRC32 does not match the header")
    meter_id = np.frombuffer(payload, dtype="<i8", count=n, offset=HEADER_SIZE)
    dts = np.frombuffer(payload, dtype="<i4", count=n, offset=HEADER_SIZE + 8 * n)
    register_milli = np.frombuffer(payload, dtype="<i8", count=n, offset=HEADER_SIZE + 12 * n)
    heat = None
    if flags & HEAT:
        o = HEADER_SIZE + 20 * n
        heat = HeatColumns(np.frombuffer(payload, dtype="<i2", count=n, offset=o),
                           np.frombuffer(payload, dtype="<i2", count=n, offset=o + 2 * n),
                           np.frombuffer(payload, dtype="<i8", count=n, offset=o + 4 * n))
    return meter_id, dts.astype(np.int64) + base, register_milli, heat


def looks_binary(payload: bytes) -> bool:
    """A payload that is shaped like a binary batch (header count matches its length, or it starts
    like the magic) but lacks the magic: a damaged batch rather than bad JSON."""
    if payload[:1] in (b"{", b"[", b" ", b"\n", b"\r", b"\t") or len(payload) < HEADER_SIZE:
        return False
    n = int.from_bytes(payload[8:12], "little")
    return payload[:2] == MAGIC[:2] or len(payload) in (HEADER_SIZE + BYTES_PER_READING * n,
                                                        HEADER_SIZE + (BYTES_PER_READING + HEAT_BYTES) * n)


def claims(payload: bytes) -> bool:
    return is_binary(payload) or looks_binary(payload)


def decode(payload: bytes) -> Columns:
    if not is_binary(payload):
        raise WireError("bad_magic", f"binary batch starts with {payload[:4]!r}, not {MAGIC!r}")
    return Columns(*_decode(payload))


def encode(meter_id, ts, register_milli, tz=None, heat: HeatColumns | None = None) -> list[bytes]:
    return [encode_batch(meter_id, ts, register_milli, heat)]


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
                       "bad_flags": "binary batch with flag bits other than HEAT (0x01)",
                       "truncated": "binary batch whose length is not 24 + 20n bytes (24 + 32n with HEAT)",
                       "checksum": "binary batch whose body CRC32 does not match its header"})
