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


def test_heat_batches_and_old_batches_through_mosquitto_into_the_lake(broker, lake):
    """A heat meter's batch and an old sender's batch, published at QoS 1 to a real Mosquitto and
    ingested: both land in ``readings``, the heat columns in ``heat_readings`` (and its SQL view)."""
    from test_ingest_service import Publisher, create_session, T0

    from ingest.service import run_ingest
    from meters.mqtt import parse_broker_url
    from meters.sql import connect

    create_session(broker.url("ingest"), lake)
    pub = Publisher(broker.url("sender"))
    ts = np.full(3, T0, np.int64) + np.arange(3) * 900
    pub.send(binary.encode_batch(M, ts, R, HEAT))
    pub.send(binary.encode_batch(M + 10, ts, R))
    pub.wait()
    pub.close()
    out = run_ingest(parse_broker_url(broker.url("ingest")), lake, until_idle=1.0)
    assert out["written"] == 6
    con = connect(lake)
    got = con.execute("SELECT meter_id, flow_temp_centi, return_temp_centi, volume_milli FROM heat_readings "
                      "ORDER BY meter_id").fetchall()
    assert got == [(500000000001, 6512, 4801, 987654), (500000000002, -1250, 2000, None),
                   (500000000003, None, None, 5)]
    assert con.execute("SELECT count(*) FROM readings").fetchone()[0] == 6
