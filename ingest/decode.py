"""Decoding and validation of one MQTT message: pure, never raises on bad input.

A message becomes good readings (three int64 arrays) and dead-letter rows (payload bytes, reason code,
detail). A bad row of a batch dead-letters that row only; the good rows of the batch are kept. The
payload's format is recognised and decoded by its :mod:`meters.wire` codec; the reason codes
(``deadletter.reason``) are ``REASONS``.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from meters import wire
from meters.mqtt import sender_of as _sender_of
from meters.schemas import METER_ID_MAX, UTILITIES

REASONS: dict[str, str] = {
    "bad_topic": "topic is not ``meters/v1/<sender>/readings``",
    "payload_too_large": "payload longer than ``Limits.max_payload`` (only its head is kept)",
    "empty": "empty payload, empty JSON array or binary batch of 0 readings",
    **wire.REASONS,
    "bad_type": "a row is not an object, or a field has the wrong JSON type",
    "missing_field": "``meter_id``, ``ts`` or ``register`` absent",
    "unknown_field": "a field other than meter_id, ts, register, utility, unit, flow_temp, return_temp, volume",
    "bad_meter_id": "meter_id outside 1 .. 2^63-1",
    "bad_ts": "ts string is not ISO 8601 with a UTC offset",
    "ts_out_of_range": "ts before ``Limits.min_ts`` or more than ``max_future_s`` ahead of now",
    "not_finite": "register is NaN or infinite",
    "negative_register": "register < 0",
    "register_too_large": "register × 1000 does not fit in int64",
    "bad_utility": "utility not one of electricity, water, gas, heat",
    "internal": "decoding the message (or row) raised an unexpected error; the detail names it",
    "bad_heat_field": "a heat meter's flow_temp / return_temp (|°C| ≤ 327.67) or volume (≥ 0) out of range",
}
HEAT_FIELDS = (("flow_temp", 100, wire.NULL_TEMP, 327.67), ("return_temp", 100, wire.NULL_TEMP, 327.67),
               ("volume", 1000, wire.NULL_VOLUME, 9.2e15))      # heat meters: (field, scale, null, |max|)
HEAT_NAMES = frozenset(f for f, *_ in HEAT_FIELDS)
KNOWN_FIELDS = frozenset({"meter_id", "ts", "register", "utility", "unit"} | HEAT_NAMES)
REQUIRED_FIELDS = ("meter_id", "ts", "register")
MILLI_MAX = np.iinfo(np.int64).max
TS_2000 = 946684800  # 2000-01-01T00:00:00Z
DEADLETTER_HEAD = 65536  # bytes of an oversized payload kept in the dead-letter table
DETAIL_MAX = 500  # characters of a dead letter's detail
REGISTER_MAX = MILLI_MAX // 1000  # a larger register × 1000 does not fit in int64


def safe_text(text: str, limit: int = DETAIL_MAX) -> str:
    """``text`` made storable: lone surrogates escaped (``\\ud800``), at most ``limit`` characters."""
    text = str(text)
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def sender_of(topic: str) -> str | None:
    """:func:`meters.mqtt.sender_of`, cached (a handful of topics repeat millions of times)."""
    return _cached_sender(topic) if len(topic) < 256 else _sender_of(topic)


_cached_sender = lru_cache(maxsize=1 << 16)(_sender_of)


@dataclass(frozen=True)
class Limits:
    """The sanity window and size limit applied to every message."""

    min_ts: int = TS_2000            # earliest accepted ts (Unix seconds)
    max_future_s: int = 86400        # latest accepted ts = now + this
    max_payload: int = 16 * 2**20    # bytes


@dataclass
class Decoded:
    """The outcome of one message."""

    meter_id: np.ndarray
    ts: np.ndarray
    register_milli: np.ndarray
    dead: list[tuple[bytes, str, str]] = field(default_factory=list)  # (payload, reason, detail)
    heat: wire.HeatColumns | None = None   # a heat meter batch's temperatures and volume

    @property
    def n(self) -> int:
        return len(self.meter_id)


_EMPTY = np.empty(0, np.int64)


def _dead(payload: bytes, reason: str, detail: str) -> Decoded:
    return Decoded(_EMPTY, _EMPTY, _EMPTY, [(payload, reason, detail)])


class RowError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_ts(value, now: int, limits: Limits) -> int:
    """``ts`` (ISO 8601 with offset, or int Unix seconds) → Unix seconds, checked against the window."""
    if _is_int(value):
        t = value
    elif isinstance(value, str):
        if len(value) > 64:
            raise RowError("bad_ts", f"ts {value[:64]!r}… is not ISO 8601 ({len(value)} characters)")
        try:
            d = dt.datetime.fromisoformat(value)
        except ValueError:
            raise RowError("bad_ts", f"ts {value!r} is not ISO 8601") from None
        if d.tzinfo is None:
            raise RowError("bad_ts", f"ts {value!r} has no UTC offset")
        try:
            t = math.floor(d.timestamp())
        except (OverflowError, ValueError):
            raise RowError("ts_out_of_range", f"ts {value!r} is outside the accepted window") from None
    else:
        raise RowError("bad_type", f"ts must be an ISO 8601 string or integer seconds, not {type(value).__name__}")
    if t < limits.min_ts or t > now + limits.max_future_s:
        raise RowError("ts_out_of_range", f"ts {_short(value)} is outside the accepted window "
                                          f"[{_iso(limits.min_ts)}, now + {limits.max_future_s} s]")
    return t


def _short(x) -> str:
    """``repr(x)`` of a JSON value, at most 40 characters (an integer may have thousands of digits)."""
    r = repr(x) if not _is_int(x) or abs(x) < 10**30 else f"{'-' if x < 0 else ''}<{len(str(abs(x)))}-digit integer>"
    return r if len(r) <= 40 else r[:39] + "…"


def _iso(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()


def parse_row(obj, now: int, limits: Limits) -> tuple[int, int, int]:
    """One JSON reading → ``(meter_id, ts, register_milli)``; raises :class:`RowError`."""
    if not isinstance(obj, dict):
        raise RowError("bad_type", f"a reading must be a JSON object, not {type(obj).__name__}")
    unknown = obj.keys() - KNOWN_FIELDS
    if unknown:
        raise RowError("unknown_field", f"unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}")
    for name in REQUIRED_FIELDS:
        if name not in obj:
            raise RowError("missing_field", f"field {name!r} is missing")
    m = obj["meter_id"]
    if not _is_int(m):
        raise RowError("bad_type", f"meter_id must be an integer, not {type(m).__name__}")
    if not 1 <= m <= METER_ID_MAX:
        raise RowError("bad_meter_id", f"meter_id {_short(m)} is outside 1 .. 2^63-1")
    t = parse_ts(obj["ts"], now, limits)
    r = obj["register"]
    if not (_is_int(r) or isinstance(r, float)):
        raise RowError("bad_type", f"register must be a number, not {type(r).__name__}")
    if isinstance(r, float) and not math.isfinite(r):
        raise RowError("not_finite", f"register is {r}")
    if r < 0:
        raise RowError("negative_register", f"register {_short(r)} is negative")
    if r > REGISTER_MAX + 1:  # checked before any arithmetic: 1e308 × 1000 overflows a float
        raise RowError("register_too_large", f"register {_short(r)} is too large")
    milli = round(r * 1000)
    if milli > MILLI_MAX:
        raise RowError("register_too_large", f"register {_short(r)} is too large")
    u = obj.get("utility")
    if u is not None and u not in UTILITIES:
        raise RowError("bad_utility", f"utility {str(u)[:40]!r} is not one of {', '.join(UTILITIES)}")
    unit = obj.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise RowError("bad_type", f"unit must be a string, not {type(unit).__name__}")
    return m, t, milli


def parse_heat(obj: dict) -> tuple[int, int, int] | None:
    """A heat meter's optional fields → (flow, return hundredths of °C, volume litres; null codes
    where absent), None when the reading has none; raises :class:`RowError`."""
    if obj.keys().isdisjoint(HEAT_NAMES):
        return None
    out = []
    for name, scale, null, top in HEAT_FIELDS:
        x = obj.get(name)
        if x is None:
            out.append(null)
            continue
        if not (_is_int(x) or isinstance(x, float)) or not math.isfinite(x):
            raise RowError("bad_type", f"{name} must be a finite number")
        if abs(x) > top or (name == "volume" and x < 0):
            raise RowError("bad_heat_field", f"{name} {x} is outside the range a heat meter reports")
        out.append(round(x * scale))
    return out[0], out[1], out[2]


def validate_records(rows: list, payload: bytes, codec: wire.Codec, now: int, limits: Limits) -> Decoded:
    """Records of a text payload (JSON objects): each row is checked; bad rows are dead-lettered."""
    if not rows:
        return _dead(payload, "empty", "empty JSON array")
    ms, ts, rs, dead, heat = [], [], [], [], []
    for i, obj in enumerate(rows):
        try:
            m, t, r = parse_row(obj, now, limits)
            h = parse_heat(obj)
        except RowError as e:
            dead.append((payload if len(rows) == 1 else _row_bytes(obj), e.reason, e.detail))
            continue
        except Exception as e:  # a bug or a value no check foresaw: this row only, never the message
            dead.append((payload if len(rows) == 1 else _row_bytes(obj), "internal", _internal(e, f"row {i}")))
            continue
        ms.append(m)
        ts.append(t)
        rs.append(r)
        heat.append(h)
    hc = None
    if any(h is not None for h in heat):
        f, rt, v = zip(*[(wire.NULL_TEMP, wire.NULL_TEMP, wire.NULL_VOLUME) if h is None else h for h in heat])
        hc = wire.HeatColumns(np.array(f, np.int16), np.array(rt, np.int16), np.array(v, np.int64))
    return Decoded(np.array(ms, np.int64), np.array(ts, np.int64), np.array(rs, np.int64), dead, hc)


def _row_bytes(obj) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()
    except Exception:  # e.g. an integer of more digits than str() allows
        return safe_text(repr(obj), DEADLETTER_HEAD).encode()


def _internal(e: BaseException, where: str) -> str:
    return safe_text(f"{type(e).__name__} in {where}: {e}")


def internal_error(payload: bytes, e: BaseException, where: str) -> Decoded:
    """The message dead-lettered whole with reason ``internal`` (``e`` raised while handling it)."""
    return _dead(bytes(payload)[:DEADLETTER_HEAD], "internal", _internal(e, where))


def validate_columns(cols: wire.Columns, payload: bytes, codec: wire.Codec, now: int, limits: Limits) -> Decoded:
    """Typed columns (a binary batch); rows failing validation are dead-lettered one by one, each
    re-encoded by ``codec`` as a one-reading payload so that it can be replayed after repair."""
    m, t, r, heat = cols
    if len(m) == 0:
        return _dead(payload, "empty", "binary batch with 0 readings")
    bad_m = m < 1
    bad_t = (t < limits.min_ts) | (t > now + limits.max_future_s)
    bad_r = r < 0
    bad = bad_m | bad_t | bad_r
    if not bad.any():
        return Decoded(m, t, r, heat=heat)
    dead = []
    for i in np.flatnonzero(bad):
        row = codec.encode(m[i:i + 1], t[i:i + 1], r[i:i + 1],
                           heat=None if heat is None else heat.take(slice(i, i + 1)))[0]
        if bad_m[i]:
            dead.append((row, "bad_meter_id", f"meter_id {m[i]} is outside 1 .. 2^63-1 (row {i})"))
        elif bad_t[i]:
            dead.append((row, "ts_out_of_range", f"ts {t[i]} is outside the accepted window (row {i})"))
        else:
            dead.append((row, "negative_register", f"register_milli {r[i]} is negative (row {i})"))
    good = ~bad
    return Decoded(m[good], t[good], r[good], dead, None if heat is None else heat.take(good))


def decode_message(topic: str, payload: bytes, now: int, limits: Limits = Limits()) -> Decoded:
    """Decode and validate one message (``now`` in Unix seconds). Never raises: a message that makes
    decoding fail unexpectedly is dead-lettered with reason ``internal``; every detail is storable
    (:func:`safe_text`)."""
    payload = bytes(payload)
    try:
        decoded = _decode(topic, payload, now, limits)
    except Exception as e:
        decoded = internal_error(payload, e, "decoding")
    if decoded.dead:
        decoded.dead = [(p, reason, safe_text(detail)) for p, reason, detail in decoded.dead]
    return decoded


def _decode(topic: str, payload: bytes, now: int, limits: Limits) -> Decoded:
    if sender_of(topic) is None:
        return _dead(payload[:DEADLETTER_HEAD], "bad_topic", f"topic {topic[:200]!r} is not meters/v1/<sender>/readings")
    if len(payload) > limits.max_payload:
        return _dead(payload[:DEADLETTER_HEAD], "payload_too_large",
                     f"{len(payload)} bytes > limit {limits.max_payload}; first {DEADLETTER_HEAD} bytes kept")
    if not payload:
        return _dead(payload, "empty", "empty payload")
    codec = wire.detect(payload)
    try:
        decoded = codec.decode(payload)
    except wire.WireError as e:
        return _dead(payload, e.reason, e.detail)
    return _VALIDATE[type(decoded)](decoded, payload, codec, now, limits)


_VALIDATE = {wire.Columns: validate_columns, list: validate_records}  # by what a codec decodes to


def single_reading(payload: bytes, now: int, limits: Limits = Limits()) -> tuple[int, int, int] | None:
    """The fast path of the commonest message, one JSON object of one valid reading (no heat
    fields): ``(meter_id, ts, register_milli)``, exactly what :func:`decode_message` gives for it;
    None for anything else (an array, a binary batch, a row to dead-letter, a heat reading, a payload
    orjson refuses or the standard library would read otherwise): decode that with
    :func:`decode_message`. The topic is the caller's to check (:func:`sender_of`). Never raises."""
    if len(payload) > limits.max_payload:
        return None
    try:
        obj = wire.json_object(payload)
        if obj is None or not obj.keys().isdisjoint(HEAT_NAMES):
            return None
        return parse_row(obj, now, limits)
    except Exception:  # RowError or anything else: the full path decides (and says why)
        return None
