"""ingest.decode / ingest.batch: validation reasons, partial batches, local-day partitioning."""
from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Batch, BufferPool, local_day_numbers
from ingest.decode import Limits, decode_message, single_reading
from meters import wire

TOPIC = "meters/v1/conc-1/readings"
NOW = int(dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc).timestamp())
TS = NOW - 3600


def _reasons(payload, topic=TOPIC, limits=Limits()):
    d = decode_message(topic, payload, NOW, limits)
    return [r for _, r, _ in d.dead], d


def test_good_json_object_and_array():
    reasons, d = _reasons(b'{"meter_id": 110100000001, "ts": "2026-11-23T00:15:00+08:00", "register": 1532.417}')
    assert reasons == [] and d.meter_id.tolist() == [110100000001]
    assert d.ts.tolist() == [int(dt.datetime(2026, 11, 22, 16, 15, tzinfo=dt.timezone.utc).timestamp())]
    assert d.register_milli.tolist() == [1532417]
    rows = [{"meter_id": 1, "ts": TS, "register": 0, "utility": "water", "unit": "m3"},
            {"meter_id": 2, "ts": "2026-11-24T00:00:00Z", "register": 0.001}]
    reasons, d = _reasons(json.dumps(rows).encode())
    assert reasons == [] and d.register_milli.tolist() == [0, 1]


@pytest.mark.parametrize("payload,reason", [
    (b"hello", "not_json"),
    (b"\xff\xfe{", "bad_encoding"),
    (b"[]", "empty"),
    (b"", "empty"),
    (b'"just a string"', "bad_type"),
    (b'{"meter_id": "1", "ts": 1763827200, "register": 1}', "bad_type"),
    (b'{"meter_id": 1, "ts": 1763827200, "register": "1"}', "bad_type"),
    (b'{"meter_id": 1, "ts": 1763827200.5, "register": 1}', "bad_type"),
    (b'{"meter_id": true, "ts": 1763827200, "register": 1}', "bad_type"),
    (b'{"meter_id": 1, "ts": 1763827200, "register": NaN}', "not_finite"),
    (b'{"meter_id": 1, "ts": 1763827200, "register": Infinity}', "not_finite"),
    (b'{"meter_id": 1, "ts": 1763827200, "register": -0.5}', "negative_register"),
    (b'{"meter_id": 1, "ts": 1763827200, "register": 1e300}', "register_too_large"),
    (b'{"meter_id": 1, "ts": "1900-01-01T00:00:00+08:00", "register": 1}', "ts_out_of_range"),
    (b'{"meter_id": 1, "ts": "2099-01-01T00:00:00+08:00", "register": 1}', "ts_out_of_range"),
    (b'{"meter_id": 1, "ts": "2026-11-23T00:15:00", "register": 1}', "bad_ts"),
    (b'{"meter_id": 1, "ts": "yesterday", "register": 1}', "bad_ts"),
    (b'{"meter_id": 1, "register": 1}', "missing_field"),
    (b'{"meter_id": 1, "ts": 1763827200, "register": 1, "voltage": 230}', "unknown_field"),
    (b'{"meter_id": 0, "ts": 1763827200, "register": 1}', "bad_meter_id"),
    (b'{"meter_id": 9223372036854775808, "ts": 1763827200, "register": 1}', "bad_meter_id"),
    (b'{"meter_id": 1, "ts": 1763827200, "register": 1, "utility": "steam"}', "bad_utility"),
    (wire.encode_batch(np.array([1]), np.array([TS]), np.array([5]))[:-3], "truncated"),
    (b"XXXX" + wire.encode_batch(np.array([1]), np.array([TS]), np.array([5]))[4:], "bad_magic"),
    (b"MTR2" + wire.encode_batch(np.array([1]), np.array([TS]), np.array([5]))[4:], "bad_magic"),
])
def test_garbage_reasons(payload, reason):
    reasons, d = _reasons(payload)
    assert reasons == [reason] and d.n == 0


def test_payload_too_large_keeps_head_and_bad_topic():
    big = b"[" + b" " * 5000 + b"]"
    (reason,), d = _reasons(big, limits=Limits(max_payload=1000))
    assert reason == "payload_too_large" and d.n == 0
    assert _reasons(b'{"meter_id":1}', topic="other/topic")[0] == ["bad_topic"]


def test_partly_bad_json_batch_keeps_good_rows():
    rows = [{"meter_id": 1, "ts": TS, "register": 1.5}, {"meter_id": 2, "ts": TS, "register": -1},
            {"meter_id": 3, "ts": TS, "register": 2, "extra": 1}, 17, {"meter_id": 4, "ts": TS, "register": 3}]
    reasons, d = _reasons(json.dumps(rows).encode())
    assert reasons == ["negative_register", "unknown_field", "bad_type"]
    assert d.meter_id.tolist() == [1, 4] and d.register_milli.tolist() == [1500, 3000]
    assert json.loads(d.dead[0][0]) == rows[1]  # the dead row keeps its own bytes


def test_partly_bad_binary_batch_keeps_good_rows():
    m = np.array([1, 0, 3, 4], np.int64)
    t = np.array([TS, TS, 915148800, TS], np.int64)  # row 2: 1999, before the window
    r = np.array([10, 20, 30, -40], np.int64)
    reasons, d = _reasons(wire.encode_batch(m, t, r))
    assert reasons == ["bad_meter_id", "ts_out_of_range", "negative_register"]
    assert d.meter_id.tolist() == [1] and d.register_milli.tolist() == [10]
    assert wire.decode_batch(d.dead[2][0])[2].tolist() == [-40]  # replayable one-row batch


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_never_raises_on_random_bytes(payload):
    d = decode_message(TOPIC, payload, NOW)
    assert d.n + len(d.dead) >= 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-2 * 10**9, 4 * 10**9), min_size=1, max_size=50),
       st.sampled_from(["Asia/Shanghai", "Europe/London", "America/New_York", "Asia/Kathmandu", "UTC"]))
def test_local_day_numbers_match_zoneinfo(ts, tzname):
    tz = ZoneInfo(tzname)
    got = local_day_numbers(np.array(ts, np.int64), tz)
    want = [(dt.datetime.fromtimestamp(t, tz).date() - dt.date(1970, 1, 1)).days for t in ts]
    assert got.tolist() == want


def test_batch_splits_by_local_day_and_repeats_sender():
    tz = ZoneInfo("Asia/Shanghai")
    b = Batch(tz=tz)
    mid = int(dt.datetime(2026, 11, 23, 16, 0, tzinfo=dt.timezone.utc).timestamp())  # local midnight
    d1 = decode_message("meters/v1/a/readings", wire.encode_batch(np.array([1, 2]), np.array([mid - 900, mid]),
                                                                   np.array([1, 2])), NOW)
    d2 = decode_message("meters/v1/b/readings", b'{"meter_id": 3, "ts": "2026-11-23T12:00:00+08:00", "register": 1}', NOW)
    b.add(d1, "meters/v1/a/readings", "a", 1000, (1, 1, 1), 0.0)
    b.add(d2, "meters/v1/b/readings", "b", 2000, (2, 1, 1), 0.0)
    parts = dict(b.readings_by_day(tz))
    assert sorted(parts) == ["2026-11-23", "2026-11-24"]
    assert parts["2026-11-23"].column("meter_id").to_pylist() == [1, 3]
    assert parts["2026-11-23"].column("sender").to_pylist() == ["a", "b"]
    assert parts["2026-11-24"].column("meter_id").to_pylist() == [2]
    assert b.messages == 2 and b.rows == 3 and len(b.acks) == 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(1, 9000), min_size=1, max_size=6), min_size=1, max_size=4))
def test_batches_reusing_pooled_buffers_equal_fresh_batches(batches):
    """Day buffers go back to the pool after a batch is written and are filled again by later
    batches (grown past their first capacity): every batch's tables equal a batch built fresh."""
    tz = ZoneInfo("Asia/Shanghai")
    pool = BufferPool()
    base = int(dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.timezone.utc).timestamp())
    k = 0
    for sizes in batches:
        pooled, fresh = Batch(tz=tz, pool=pool), Batch(tz=tz)
        for n in sizes:   # messages spanning a local midnight: two days per batch
            m = np.arange(k, k + n, dtype=np.int64) % 5000 + 1
            ts = base + 900 * (np.arange(n, dtype=np.int64) % 8)
            payload = wire.encode_batch(m, ts, np.arange(n, dtype=np.int64) + k)
            topic = f"meters/v1/s{k % 3}/readings"
            for b in (pooled, fresh):
                b.add(decode_message(topic, payload, NOW), topic, f"s{k % 3}", 1000 + k, (k, 1, 1), 0.0)
            k += n
        got, want = pooled.readings_by_day(tz), fresh.readings_by_day(tz)
        assert [d for d, _ in got] == [d for d, _ in want]
        for (_, a), (_, b) in zip(got, want):
            assert a.equals(b)
        del got
        pooled.release()
    assert pool.free and all(d.n == 0 for d in pool.free)


_VALUES = st.one_of(st.integers(-2, 3) | st.integers(NOW - 10**8, NOW + 2 * 86400) | st.integers(2**62, 2**64),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
                        ["2026-11-24T00:00:00Z", "2026-11-24T00:00:00", "x", "1999-01-01T00:00:00+00:00"]),
                    st.none(), st.booleans(), st.lists(st.integers(0, 3), max_size=2))
_KEYS = st.sampled_from(["meter_id", "ts", "register", "utility", "unit", "flow_temp", "volume", "other"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=5), st.booleans(), st.binary(max_size=4))
def test_single_reading_fast_path_equals_decode_message(fields, complete, tail):
    """The fast path of a one-reading JSON message gives exactly what decode_message gives, or None
    (then decode_message decides, dead letters and reasons included)."""
    if complete:
        fields = {"meter_id": 7, "ts": TS, "register": 1.5, **fields}
    payload = json.dumps(fields).encode() + (tail if tail[:1] in (b"", b" ") else b"")
    got = single_reading(payload, NOW)
    d = decode_message(TOPIC, payload, NOW)
    if got is not None:
        assert not d.dead and d.heat is None and d.n == 1
        assert got == (d.meter_id[0], d.ts[0], d.register_milli[0])
    elif set(fields) <= {"meter_id", "ts", "register"} and not d.dead and d.n == 1 and not tail.strip():
        pytest.fail(f"fast path refused a plain valid reading {payload!r}")


def test_single_reading_refuses_what_decode_message_reads_otherwise():
    ok = b'{"meter_id": 110100000001, "ts": "2026-11-23T00:15:00+08:00", "register": 1532.417}'
    assert single_reading(ok, NOW) == (110100000001, int(dt.datetime(2026, 11, 22, 16, 15, tzinfo=dt.timezone.utc)
                                                         .timestamp()), 1532417)
    for payload in (b'[{"meter_id": 1, "ts": %d, "register": 1}]' % TS,          # an array
                    b'{"meter_id": 1, "ts": %d, "register": 1, "volume": 2}' % TS,  # a heat reading
                    b'{"meter_id": 1234567890123456789, "ts": %d, "register": 1}' % TS,  # 19 digits: stdlib
                    b'{"meter_id": 1, "ts": %d, "register": NaN}' % TS,          # orjson refuses: stdlib
                    b'{"meter_id": 0, "ts": %d, "register": 1}' % TS):           # a dead letter
        assert single_reading(payload, NOW) is None
    assert single_reading(ok, NOW, Limits(max_payload=10)) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(-96, 96), st.integers(0, 10**6), st.sampled_from("abc"),
                          st.booleans()), min_size=1, max_size=30),
       st.integers(0, 3))
def test_add_readings_equals_adding_each_message(rows, before):
    """Batch.add_readings (messages of one reading, in one step) makes the batch that Batch.add makes
    of the same messages one at a time, across local days and senders, after other messages."""
    tz = ZoneInfo("Asia/Shanghai")
    base = int(dt.datetime(2026, 11, 23, 16, 0, tzinfo=dt.timezone.utc).timestamp())  # local midnight
    pool = BufferPool()
    one, many = Batch(tz=tz, pool=pool), Batch(tz=tz)
    for k in range(before):  # earlier messages: senders and days already known
        topic = f"meters/v1/{'cb'[k % 2]}/readings"
        d = decode_message(topic, wire.encode_batch(np.array([k + 1]), np.array([base + 900 * k]), np.array([k])), NOW)
        for b in (one, many):
            b.add(d, topic, "cb"[k % 2], 500, (k, 1, 1), 0.0)
    msgs = [((m, base + 900 * s, r), sender, (i, 1, 1) if qos else None) for i, (m, s, r, sender, qos) in enumerate(rows)]
    for row, sender, ack in msgs:
        topic = f"meters/v1/{sender}/readings"
        payload = json.dumps({"meter_id": row[0], "ts": row[1], "register": row[2] / 1000}).encode()
        one.add(decode_message(topic, payload, NOW), topic, sender, 1000, ack, 0.0)
    many.add_readings([r for r, _, _ in msgs], [s for _, s, _ in msgs], 1000, [a for _, _, a in msgs], 0.0)
    assert (one.messages, one.rows, one.acks, one.senders) == (many.messages, many.rows, many.acks, many.senders)
    got, want = many.readings_by_day(tz), one.readings_by_day(tz)
    assert [d for d, _ in got] == [d for d, _ in want]
    for (_, a), (_, b) in zip(got, want):
        assert a.equals(b)
