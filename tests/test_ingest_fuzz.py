"""No message stops ingest: decoding never raises, whatever the bytes; a mixed message keeps every good
row and dead-letters every bad one; whatever is dead-lettered can be stored.

Hypothesis drives arbitrary bytes, valid JSON readings with hostile rows mixed in, and bit-flipped binary
batches through ``decode_message`` and the batch's Arrow tables (the step that wrote the lake's
dead-letter files when a lone surrogate crashed it)."""
from __future__ import annotations

import io
import json
import math
import time
from fractions import Fraction
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decode import decode_message
from meters import wire

NOW = 1_800_000_000
TOPIC = "meters/v1/c1/readings"
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _store(decoded) -> tuple[int, int]:
    """Everything decoded goes through the batch into Parquet, as ingest would write it."""
    batch = Batch(tz=ZoneInfo("Asia/Shanghai"))
    batch.add(decoded, TOPIC, "c1", NOW * 1000, None, time.monotonic())
    n_dead = 0
    for _, table in batch.deadletters_by_day(ZoneInfo("Asia/Shanghai")):
        pq.write_table(table, io.BytesIO())
        n_dead += table.num_rows
    for _, table in batch.readings_by_day():
        pq.write_table(table, io.BytesIO())
    return decoded.n, n_dead


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_stop_ingest(payload):
    d = decode_message(TOPIC, payload, NOW)
    good, dead = _store(d)
    assert good + dead >= 1                       # a message is either readings or a dead letter


GOOD = st.fixed_dictionaries({"meter_id": st.integers(1, 2**63 - 1),
                              "ts": st.integers(NOW - 86400 * 30, NOW),
                              "register": st.integers(0, 10**12) | st.floats(0, 1e12)})
HOSTILE_VALUE = st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 9.3e15, 2**63, 2**64, -1, 10**400, "1e308",
                                 None, [], {}, True, "\ud800", "nan", "2026-13-45T00:00:00+08:00",
                                 "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-12:00", 1e-320])
BAD = st.one_of(
    GOOD.flatmap(lambda g: st.sampled_from(["meter_id", "ts", "register"]).flatmap(
        lambda k: HOSTILE_VALUE.map(lambda v: {**g, k: v}))),
    GOOD.map(lambda g: {**g, "\ud800": 1}),
    GOOD.map(lambda g: {**g, "utility": "\udfff"}),
    st.just([1, 2, 3]), st.just("x" * 100),
)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_good(row) -> bool:
    """The reading rules of docs/ingest.md, judged exactly (Fraction: no float overflow). A hostile
    value can still make a valid row (``"register": 1e-320`` is 0 Wh)."""
    if not isinstance(row, dict) or not row.keys() <= {"meter_id", "ts", "register", "utility", "unit"}:
        return False
    m, t, r = row["meter_id"], row["ts"], row["register"]
    return (_number(m) and isinstance(m, int) and 1 <= m < 2**63
            and _number(t) and isinstance(t, int) and 946684800 <= t <= NOW + 86400
            and _number(r) and (isinstance(r, int) or math.isfinite(r)) and 0 <= round(Fraction(r) * 1000) < 2**63
            and row.get("utility") in (None, "electricity", "water", "gas", "heat"))


@FUZZ
@given(st.lists(st.tuples(st.booleans(), GOOD, BAD), min_size=1, max_size=20))
def test_mixed_json_keeps_every_good_row(rows):
    doc = [g if ok else b for ok, g, b in rows]
    good = [row for row in doc if _is_good(row)]
    payload = json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")
    d = decode_message(TOPIC, payload, NOW)
    n_good, n_dead = _store(d)
    assert n_good == len(good)
    assert sorted(zip(d.meter_id.tolist(), d.ts.tolist())) == sorted((g["meter_id"], g["ts"]) for g in good)
    if len(doc) > 1:
        assert n_dead == len(doc) - len(good)    # each bad row dead-lettered on its own
    else:
        assert n_dead == 1 - len(good)


@FUZZ
@given(st.integers(1, 50), st.data())
def test_damaged_binary_batches_never_stop_ingest(n, data):
    m = np.arange(1, n + 1, dtype=np.int64)
    t = np.full(n, NOW - 3600, np.int64)
    r = np.arange(n, dtype=np.int64) * 1000
    payload = bytearray(wire.encode_batch(m, t, r))
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(payload)))
    d = decode_message(TOPIC, bytes(payload[:cut] if data.draw(st.booleans()) else payload), NOW)
    good, dead = _store(d)
    assert good + dead >= 1


def test_the_reported_payloads():
    """The payloads of the hardening report, exactly as written there."""
    d = decode_message(TOPIC, b'{"meter_id": 1, "ts": 1799996400, "register": 1e308}', NOW)
    assert d.n == 0 and [x[1] for x in d.dead] == ["register_too_large"]
    mixed = b'[{"meter_id": 1, "ts": 1799996400, "register": 1e308}, {"meter_id": 2, "ts": 1799996400, "register": 5}]'
    d = decode_message(TOPIC, mixed, NOW)
    assert d.meter_id.tolist() == [2] and [x[1] for x in d.dead] == ["register_too_large"]
    surrogate = b'{"meter_id": 1, "ts": 1799996400, "register": 5, "\\ud800": 1}'
    d = decode_message(TOPIC, surrogate, NOW)
    assert [x[1] for x in d.dead] == ["unknown_field"]
    assert _store(d) == (0, 1)


def _stdlib_records(payload: bytes):
    """What the JSON codec decoded to when it used only the standard library: records or a reason."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return "bad_encoding"
    except (ValueError, RecursionError):
        return "not_json"
    return doc if isinstance(doc, list) else [doc]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(-(2**63) - 2, 2**64 + 2)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.sampled_from(["", " ", "\n"]))
def test_json_codec_decodes_as_the_standard_library(doc, pad):
    """orjson parses the JSON codec's payloads; whatever it parses must equal the standard library's
    result (values and types: a 70-bit integer stays an integer), and what it refuses falls back."""
    payload = (pad + json.dumps(doc) + pad).encode()
    got, want = wire.json.decode(payload), _stdlib_records(payload)
    assert repr(got) == repr(want)   # repr: an integer read as a float would show


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.sampled_from([b"[NaN]", b'{"a": Infinity}', b'"\\ud800"', b"\xef\xbb\xbf{}",
                                                 b"[1,]", b"[" * 3000, b"-9223372036854775809", b"1e400"]))
def test_json_codec_refuses_and_accepts_what_the_standard_library_does(payload):
    try:
        got = wire.json.decode(payload)
    except wire.WireError as e:
        got = e.reason
    want = _stdlib_records(payload)
    assert type(got) is type(want) and (got == want or got != got or repr(got) == repr(want))
