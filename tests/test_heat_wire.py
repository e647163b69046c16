"""Heat meters on the wire: the optional flow / return temperatures and volume in binary batches and
JSON, old senders' payloads unchanged, and the ingest batch writing them to ``heat_readings``."""
from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from ingest.batch import Batch
from ingest.decode import decode_message
from meters import wire
from meters.wire import binary

TOPIC = "meters/v1/dcu-000001/readings"
NOW = 1_795_000_000
M = np.array([500000000001, 500000000002, 500000000003], np.int64)
T = np.array([1_794_990_000, 1_794_990_900, 1_794_991_800], np.int64)
R = np.array([1_234_567, 1_235_000, 0], np.int64)
HEAT = wire.HeatColumns(np.array([6512, -1250, wire.NULL_TEMP], np.int16),
                        np.array([4801, 2000, wire.NULL_TEMP], np.int16),
                        np.array([987_654, wire.NULL_VOLUME, 5], np.int64))


def test_a_batch_without_heat_is_the_original_layout_and_still_decodes():
    old = binary.encode_batch(M, T, R)
    assert len(old) == 24 + 20 * 3 and old[5] == 0
    d = decode_message(TOPIC, old, NOW)
    assert d.heat is None and d.register_milli.tolist() == R.tolist() and not d.dead


def test_heat_batch_round_trip_and_damage():
    p = binary.encode_batch(M, T, R, HEAT)
    assert len(p) == 24 + 32 * 3 and p[5] == binary.HEAT
    m, t, r = binary.decode_batch(p)           # old callers: three columns
    assert m.tolist() == M.tolist() and r.tolist() == R.tolist()
    d = decode_message(TOPIC, p, NOW)
    assert [c.tolist() for c in d.heat] == [c.tolist() for c in HEAT]
    assert decode_message(TOPIC, p[:-1], NOW).dead[0][1] == "truncated"
    bad = bytearray(p)
    bad[5] = 0x03
    assert decode_message(TOPIC, bytes(bad), NOW).dead[0][1] == "bad_flags"
    assert binary.looks_binary(b"XX" + p[2:])   # a damaged heat batch is still recognised as binary


@pytest.mark.parametrize("codec", ["json", "json-array"])
def test_json_heat_fields_round_trip(codec):
    payloads = wire.FORMATS[codec].encode(M, T, R, None, heat=HEAT)
    first = json.loads(payloads[0])
    first = first[0] if isinstance(first, list) else first
    assert first["flow_temp"] == 65.12 and first["return_temp"] == 48.01 and first["volume"] == 987.654
    heat = [decode_message(TOPIC, p, NOW).heat for p in payloads]
    cols = [np.concatenate([h[k] for h in heat]) for k in range(3)]
    assert [c.tolist() for c in cols] == [c.tolist() for c in HEAT]
    plain = wire.FORMATS[codec].encode(M, T, R, None)        # old senders: no heat fields at all
    assert all(decode_message(TOPIC, p, NOW).heat is None for p in plain)
    assert b"flow_temp" not in b"".join(plain)


def test_json_heat_field_out_of_range_is_dead_lettered():
    p = json.dumps({"meter_id": 1, "ts": int(T[0]), "register": 1.5, "flow_temp": 400}).encode()
    d = decode_message(TOPIC, p, NOW)
    assert d.n == 0 and d.dead[0][1] == "bad_heat_field"


def test_ingest_batch_writes_heat_readings_beside_readings():
    b = Batch(tz=ZoneInfo("Asia/Shanghai"))
    b.add(decode_message(TOPIC, binary.encode_batch(M, T, R, HEAT), NOW), TOPIC, "dcu-000001", NOW * 1000,
          None, 0.0)
    b.add(decode_message(TOPIC, binary.encode_batch(M, T, R), NOW), TOPIC, "dcu-000001", NOW * 1000, None, 0.0)
    assert b.readings().num_rows == 6
    [(day, t)] = b.heat_by_day()
    assert t.num_rows == 3
    assert t.column("flow_temp_centi").to_pylist() == [6512, -1250, None]
    assert t.column("volume_milli").to_pylist() == [987654, None, 5]
