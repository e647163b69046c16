"""SHA-256 of every value of an Arrow string column at once (a numba kernel over the column's
offsets and bytes: no Python object per value), and the ``base32`` text of digests in numpy.

The plain-Python reference is :mod:`hashlib` itself (``reference/digests.py``; tests hold them equal).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit, prange

_K = np.array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2],
    np.uint64)
_H0 = np.array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19], np.uint64)
_M = np.uint64(0xFFFFFFFF)


@njit(cache=True, inline="always")
def _rotr(x, n):
    return ((x >> np.uint64(n)) | (x << np.uint64(32 - n))) & _M


@njit(cache=True)
def _digest(data, start, length, out, w, h):
    """SHA-256 of ``data[start:start + length]`` into ``out`` (32 bytes); ``w``, ``h``: scratch."""
    total = (length + 9 + 63) // 64 * 64          # the message, 0x80, zeros, its bit length (8 bytes)
    bits = np.uint64(length) * np.uint64(8)
    h[:] = _H0
    for block in range(0, total, 64):
        for t in range(16):
            v = np.uint64(0)
            for j in range(4):
                p = block + 4 * t + j
                if p < length:
                    b = np.uint64(data[start + p])
                elif p == length:
                    b = np.uint64(0x80)
                elif p >= total - 8:
                    b = (bits >> np.uint64(8 * (total - 1 - p))) & np.uint64(0xFF)
                else:
                    b = np.uint64(0)
                v = (v << np.uint64(8)) | b
            w[t] = v
        for t in range(16, 64):
            s0 = _rotr(w[t - 15], 7) ^ _rotr(w[t - 15], 18) ^ (w[t - 15] >> np.uint64(3))
            s1 = _rotr(w[t - 2], 17) ^ _rotr(w[t - 2], 19) ^ (w[t - 2] >> np.uint64(10))
            w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & _M
        a, b_, c, d, e, f, g, hh = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
        for t in range(64):
            t1 = (hh + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & _M & g)) + _K[t] + w[t]) & _M
            t2 = ((_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b_) ^ (a & c) ^ (b_ & c))) & _M
            hh, g, f, e, d, c, b_, a = g, f, e, (d + t1) & _M, c, b_, a, (t1 + t2) & _M
        h[0] = (h[0] + a) & _M
        h[1] = (h[1] + b_) & _M
        h[2] = (h[2] + c) & _M
        h[3] = (h[3] + d) & _M
        h[4] = (h[4] + e) & _M
        h[5] = (h[5] + f) & _M
        h[6] = (h[6] + g) & _M
        h[7] = (h[7] + hh) & _M
    for i in range(8):
        for j in range(4):
            out[4 * i + j] = np.uint8((h[i] >> np.uint64(24 - 8 * j)) & np.uint64(0xFF))


@njit(cache=True, parallel=True)
def sha256_kernel(data, offsets, out):
    """``out[i]`` (32 bytes) = SHA-256 of ``data[offsets[i]:offsets[i + 1]]``."""
    n = len(offsets) - 1
    for i in prange(n):
        w = np.empty(64, np.uint64)
        h = np.empty(8, np.uint64)
        _digest(data, offsets[i], offsets[i + 1] - offsets[i], out[i], w, h)


@njit(cache=True)
def sha256_serial(data, offsets, out):
    """:func:`sha256_kernel` in the calling thread (a few values: no OpenMP threads woken)."""
    w = np.empty(64, np.uint64)
    h = np.empty(8, np.uint64)
    for i in range(len(offsets) - 1):
        _digest(data, offsets[i], offsets[i + 1] - offsets[i], out[i], w, h)


PARALLEL_FROM = 4096     # values hashed at once from which the kernel's threads pay


def sha256(strings: pa.Array) -> np.ndarray:
    """SHA-256 of each value's UTF-8 bytes (a string or binary array without nulls): ``[n, 32]`` uint8."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    if strings.null_count:
        raise ValueError("sha256: the column has nulls")
    n = len(strings)
    out = np.zeros((n, 32), np.uint8)
    if n == 0:
        return out
    large = pa.types.is_large_string(strings.type) or pa.types.is_large_binary(strings.type)
    _, offs, data = strings.buffers()
    offsets = np.frombuffer(offs, np.int64 if large else np.int32)[strings.offset: strings.offset + n + 1]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    (sha256_kernel if n >= PARALLEL_FROM else sha256_serial)(raw, offsets.astype(np.int64), out)
    return out


_BASE32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", np.uint8)
_FIVE = np.array([16, 8, 4, 2, 1], np.uint8)


def base32_lower(raw: np.ndarray, prefix: str = "") -> pa.Array:
    """Rows of ``raw`` (``[n, k]`` uint8, k a multiple of 5) as lowercase base32 text (as
    ``base64.b32encode(row).decode().lower()``: no padding at such lengths), after ``prefix``."""
    n, k = raw.shape
    if k % 5:
        raise ValueError("base32_lower: rows must be a multiple of 5 bytes")
    bits = np.unpackbits(raw, axis=1).reshape(n, k * 8 // 5, 5)
    text = _BASE32[bits @ _FIVE]
    p = np.frombuffer(prefix.encode(), np.uint8)
    width = len(p) + text.shape[1]
    buf = np.empty((n, width), np.uint8)
    buf[:, :len(p)] = p
    buf[:, len(p):] = text
    offsets = np.arange(n + 1, dtype=np.int32) * width
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def hex_lower(raw: np.ndarray) -> pa.Array:
    """Rows of ``raw`` (``[n, k]`` uint8) as lowercase hex text (as ``bytes.hex()``)."""
    n, k = raw.shape
    buf = np.empty((n, 2 * k), np.uint8)
    buf[:, 0::2] = _HEX[raw >> 4]
    buf[:, 1::2] = _HEX[raw & 15]
    offsets = np.arange(n + 1, dtype=np.int32) * 2 * k
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])
