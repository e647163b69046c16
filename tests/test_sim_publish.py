"""The simulator against a real Mosquitto: manifest == what a subscriber received, broker restart
loses nothing at QoS 1, JSON and single-sender modes, the CLI."""
from __future__ import annotations

import collections
import json
import threading
import time
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from meters.cli import cli
from meters.errors import MetersError
from meters.mqtt import make_client, parse_broker_url
from meters.wire import WireError, decode_batch, is_binary
from simulator.publish import Publisher
from simulator.run import simulate

START = "2026-11-01"


class Counter:
    """An ingest-role subscriber with a persistent session that records every reading it gets."""

    def __init__(self, broker):
        self.per_meter = collections.Counter()
        self.readings: set[tuple[int, int, int]] = set()
        self.received = 0
        self.malformed = 0
        self.topics = collections.Counter()
        self.lock = threading.Lock()
        self.client, kw = make_client(parse_broker_url(broker.url("ingest")), f"test-counter-{uuid.uuid4().hex[:8]}",
                                      clean_start=False, session_expiry=600)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("meters/v1/+/readings", qos=1)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(**kw)
        self.client.loop_start()
        deadline = time.monotonic() + 5
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)

    def _on_message(self, client, userdata, msg):
        rows = []
        p = msg.payload
        try:
            if is_binary(p):
                m, t, r = decode_batch(p)
                rows = list(zip(m.tolist(), t.tolist(), r.tolist()))
            else:
                doc = json.loads(p)
                for d in doc if isinstance(doc, list) else [doc]:
                    from datetime import datetime
                    rows.append((d["meter_id"], int(datetime.fromisoformat(d["ts"]).timestamp()),
                                 round(d["register"] * 1000)))
        except (WireError, ValueError, UnicodeDecodeError):
            with self.lock:
                self.malformed += 1
            return
        with self.lock:
            self.topics[msg.topic] += 1
            self.received += len(rows)
            for row in rows:
                self.per_meter[row[0]] += 1
                self.readings.add(row)

    def wait(self, total: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = len(self.readings) if total < 0 else self.received
            if n >= abs(total):
                time.sleep(0.2)
                return
            time.sleep(0.05)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def _manifest(path):
    return {n: pq.read_table(f"{path}/{n}.parquet").to_pandas()
            for n in ("meters", "daily", "events", "concentrators")}


def test_manifest_matches_what_a_subscriber_received(broker, tmp_path):
    sub = Counter(broker)
    try:
        s = simulate(1500, START, 1, broker_dir=broker.dir, lake=tmp_path / "lake", seed=3,
                     faults="lost=0.02,duplicate=0.02,late=0.02,spike=0.002,rollover=0.02,replacement=0.02,"
                            "skew=0.02,malformed=0.02")
        sub.wait(s["readings"])
    finally:
        sub.close()
    man = _manifest(s["manifest"])
    meters = man["meters"].set_index("meter_id")
    assert sub.received == s["readings"] == meters.published.sum()
    got = {m: sub.per_meter.get(m, 0) for m in meters.index}
    assert got == meters.published.to_dict()
    assert sub.malformed == s["malformed"] == man["concentrators"].malformed.sum() > 0
    # every concentrator published under its own credentials and topic
    assert {t.split("/")[2] for t in sub.topics} == set(man["concentrators"].concentrator)
    # lost readings never arrived; everything else did, duplicates included
    lost = man["events"][man["events"].kind == "lost"]
    assert len(lost) == s["lost"] > 0
    received_keys = {(m, t) for m, t, _ in sub.readings}
    for r in lost.itertuples():
        assert (r.meter_id, int(r.published_ts.timestamp())) not in received_keys
    # the registry went to the lake and the truth per day adds up
    assert man["daily"].groupby("meter_id").consumption_milli.sum().to_dict() == meters.consumption_milli.to_dict()
    assert (s["reads_per_meter"] == 97) and len(man["daily"]) == 1500


def test_broker_restart_mid_run_loses_nothing(broker, tmp_path):
    sub = Counter(broker)
    box = {}

    def run():
        try:
            box["s"] = simulate(1200, START, 1, broker_dir=broker.dir, manifest=tmp_path / "man", seed=8,
                                speed="28800x", batch_intervals=2)
        except BaseException as e:  # surfaced below
            box["e"] = e

    t = threading.Thread(target=run)
    t.start()
    try:
        deadline = time.monotonic() + 20
        while sub.received < 20_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sub.received >= 20_000, "the simulation did not start publishing"
        broker.restart()
        t.join(timeout=60)
        assert not t.is_alive()
        if "e" in box:
            raise box["e"]
        s = box["s"]
        assert s["reconnects"] > 0 and s["seconds"] > 2
        sub.wait(-s["readings"], timeout=30)
    finally:
        t.join(timeout=5)
        sub.close()
    man = _manifest(tmp_path / "man")["meters"]
    start = int(np.datetime64("2026-10-31T16:00:00", "s").astype(int))   # 2026-11-01 00:00 +08:00
    expected = {(m, start + k * 900) for m in man.meter_id.tolist() for k in range(97)}
    assert len(sub.readings) == s["readings"] == 1200 * 97           # nothing lost (duplicates allowed)
    assert {(m, t) for m, t, _ in sub.readings} == expected
    last = {}
    for m, t, r in sub.readings:
        if t >= last.get(m, (0, 0))[0]:
            last[m] = (t, r)
    assert {m: r for m, (t, r) in last.items()} == dict(zip(man.meter_id, man.end_milli))


def test_json_messages_and_single_sender_url(broker, tmp_path):
    sub = Counter(broker)
    try:
        s = simulate(300, START, 0.25, broker=broker.url("sender"), interval="1h", fmt="json", seed=1,
                     manifest=tmp_path / "m")
        sub.wait(s["readings"])
    finally:
        sub.close()
    assert s["senders"] == "sender" and s["readings"] == 300 * 7 == sub.received == s["messages"]
    assert set(sub.topics) == {"meters/v1/sender/readings"}
    man = _manifest(tmp_path / "m")["meters"]
    assert dict(sub.per_meter) == dict(zip(man.meter_id, man.published))


def test_publisher_refused_credentials_is_a_clear_error(broker):
    url = parse_broker_url(broker.url("sender")).with_credentials("sender", "wrong")
    pub = Publisher(url, stall_timeout=5)
    with pytest.raises(MetersError, match="refused sender 'sender'"):
        pub.connect_all(["sender"], timeout=5)


def test_cli_simulate_small_fleet(broker, tmp_path):
    lake = tmp_path / "lake"
    r = CliRunner().invoke(cli, ["simulate", "--broker-dir", str(broker.dir), "--meters", "400",
                                 "--start", "2026-11-20T00:00", "--days", "1", "--interval", "1h",
                                 "--seed", "4", "--lake", str(lake), "--faults", "lost=0.01"])
    assert r.exit_code == 0, r.output
    assert "simulated 400 meters" in r.output and "published" in r.output and "manifest:" in r.output
    assert (lake / "_simulator").is_dir() and (lake / "meters").is_dir()
    r = CliRunner().invoke(cli, ["simulate", "--broker-dir", str(broker.dir), "--meters", "10",
                                 "--start", "2026-11-20", "--days", "1", "--faults", "lost=9"])
    assert r.exit_code == 1 and "between 0 and 1" in r.output
    r = CliRunner().invoke(cli, ["simulate", "--broker-dir", str(tmp_path / "nobroker"), "--meters", "10",
                                 "--start", "2026-11-20", "--days", "1"])
    assert r.exit_code == 1 and "no managed broker is running" in r.output


def test_mqtt_311_senders(broker, tmp_path):
    sub = Counter(broker)
    try:
        s = simulate(600, START, 0.5, broker_dir=broker.dir, mqtt_version="3.1.1", seed=2, manifest=tmp_path / "m",
                     client_prefix="t311")
        sub.wait(s["readings"])
    finally:
        sub.close()
    assert s["mqtt"] == "3.1.1" and sub.received == s["readings"] == 600 * 49
    with pytest.raises(MetersError, match="--mqtt"):
        simulate(10, START, 1, broker_dir=broker.dir, mqtt_version="4")


def test_two_processes_publish_the_same_readings(broker, tmp_path):
    sub = Counter(broker)
    try:
        s = simulate(900, START, 0.5, broker_dir=broker.dir, processes=2, seed=6, manifest=tmp_path / "m",
                     faults="lost=0.01,late=0.02")
        sub.wait(s["readings"])
    finally:
        sub.close()
    assert s["processes"] == 2
    man = _manifest(tmp_path / "m")["meters"]
    assert dict(sub.per_meter) == {m: p for m, p in zip(man.meter_id, man.published) if p}
    assert sub.received == s["readings"] == man.published.sum()


def test_publisher_library_formats_and_senders(broker):
    pw = broker.add_senders(["dcu-a", "dcu-b"])
    sub = Counter(broker)
    m = np.array([110100000001, 110100000002], np.int64)
    t = np.array([1_795_000_000, 1_795_000_900], np.int64)
    r = np.array([1532417, 7])
    try:
        with Publisher(broker.url("sender"), passwords=pw, window=20) as pub:
            assert pub.publish_batch("dcu-a", m, t, r) == 1
            assert pub.publish_batch("dcu-b", m, t, r + 1, "json-array") == 1
            assert pub.publish_batch("dcu-b", m, t, r + 2, "json") == 2
            with pytest.raises(MetersError, match="no credentials"):
                pub.publish("dcu-zzz", b"x")
            pub.flush(timeout=10)
            assert pub.acked == pub.messages == 4
        sub.wait(6)
    finally:
        sub.close()
    assert sub.readings == {(110100000001, 1_795_000_000, 1532417), (110100000002, 1_795_000_900, 7),
                            (110100000001, 1_795_000_000, 1532418), (110100000002, 1_795_000_900, 8),
                            (110100000001, 1_795_000_000, 1532419), (110100000002, 1_795_000_900, 9)}
    assert dict(sub.topics) == {"meters/v1/dcu-a/readings": 1, "meters/v1/dcu-b/readings": 3}


def test_two_runs_same_seed_receive_identical_readings(broker, tmp_path):
    got = []
    for k, (batch, speed) in enumerate(((4, "max"), (3, "200000x"))):
        sub = Counter(broker)
        try:
            s = simulate(500, START, 0.5, broker_dir=broker.dir, seed=21, batch_intervals=batch, speed=speed,
                         faults="lost=0.02,duplicate=0.02,late=0.02,spike=0.01,skew=0.05")
            sub.wait(s["readings"])
        finally:
            sub.close()
        assert sub.received == s["readings"]
        got.append((sub.readings, dict(sub.per_meter)))
    assert got[0] == got[1]
