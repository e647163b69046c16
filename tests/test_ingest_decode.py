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
from ingest.decode import Limits, decode_message
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
