"""The managed broker as an attacker sees it (issue 18, findings 2, 3 and 4): a sender cannot join the
ingest share group, cannot take over ingest's session, cannot retain; ingest cannot publish; one
sender cannot fill the broker's memory. Every test runs a real Mosquitto and a real lake."""
from __future__ import annotations

import datetime as dt
import json
import socket
import struct
import time

import pytest

from ingest.service import run_ingest
from meters.broker import BrokerLimits, ManagedBroker
from meters.mqtt import make_client, parse_broker_url
from meters.readings import read_readings

UTC = dt.timezone.utc
NOW = int(time.time()) // 900 * 900
ALL = (dt.datetime.fromtimestamp(NOW - 3 * 86400, UTC), dt.datetime.fromtimestamp(NOW + 86400, UTC))


def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class Client:
    """A paho client that records CONNACK, SUBACK, PUBACK reason codes, messages and disconnects."""

    def __init__(self, url: str, client_id: str, *, clean_start: bool = True, session_expiry: int | None = None):
        u = parse_broker_url(url)
        v5 = u.version == "5"
        self.c, kw = make_client(u, client_id, clean_start=clean_start,
                                 session_expiry=session_expiry if v5 else None)
        self.connack, self.suback, self.puback, self.messages, self.disconnects = [], [], {}, [], []
        self.c.on_connect = lambda c, u_, f, rc, p: self.connack.append(rc)
        self.c.on_subscribe = lambda c, u_, mid, rcs, p: self.suback.append(rcs)
        self.c.on_publish = lambda c, u_, mid, rc, p: self.puback.__setitem__(mid, rc)
        self.c.on_message = lambda c, u_, m: self.messages.append((m.topic, m.payload, m.retain))
        self.c.on_disconnect = lambda c, u_, f, rc, p: self.disconnects.append(rc)
        self.c.connect(**kw)
        self.c.loop_start()
        assert _wait(lambda: self.connack, 5), "no CONNACK"

    @property
    def accepted(self) -> bool:
        return not self.connack[0].is_failure

    def subscribe(self, topic: str) -> list:
        n = len(self.suback)
        self.c.subscribe(topic, qos=1)
        assert _wait(lambda: len(self.suback) > n, 5), "no SUBACK"
        return self.suback[-1]

    def publish(self, topic: str, payload: bytes, retain: bool = False):
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        _wait(lambda: info.mid in self.puback or self.disconnects, 5)
        return self.puback.get(info.mid)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def _reading(k: int) -> bytes:
    return json.dumps({"meter_id": 110100000001 + k, "ts": NOW - 86400, "register": 1000.0 + k}).encode()


def _lake_meters(lake) -> set[int]:
    return set(read_readings(lake, *ALL).column("meter_id").to_pylist())


def _session(broker, lake, **kw):
    """Create ingest's persistent session (and its subscription), then leave it offline."""
    return run_ingest(parse_broker_url(broker.url("ingest")), lake, until_idle=0.1, **kw)


def test_sender_cannot_subscribe_or_join_the_ingest_share_group(broker, lake):
    """Finding 2: a sender subscribed to $share/ingest/meters/v1/+/readings and the broker handed it
    half of the readings (10 of 20 acknowledged readings never reached the lake)."""
    broker.add_senders(["conc-0001"])
    _session(broker, lake, shared=True)
    attacker = Client(broker.url("sender"), "thief")
    for topic in ["$share/ingest/meters/v1/+/readings", "meters/v1/+/readings", "#",
                  "meters/v1/sender/readings", "$SYS/#", "$CONTROL/dynamic-security/v1/response"]:
        codes = attacker.subscribe(topic)
        assert all(c.is_failure for c in codes), (topic, codes)
    pub = Client(broker.url("conc-0001"), "c1")
    for k in range(20):
        assert not pub.publish("meters/v1/conc-0001/readings", _reading(k)).is_failure
    pub.close()
    out = run_ingest(parse_broker_url(broker.url("ingest")), lake, until_idle=1.0, shared=True)
    assert attacker.messages == []
    attacker.close()
    assert out["received"] == 20
    assert _lake_meters(lake) == {110100000001 + k for k in range(20)}


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_sender_cannot_take_over_ingest_session(broker, lake, version):
    """Finding 3: a sender connected with ingest's client id and a clean session; the subscription
    and every reading queued while ingest was down were gone (0 of 10 arrived)."""
    _session(broker, lake)
    q = "" if version == "5" else "?version=3.1.1"
    pub = Client(broker.url("sender") + q, "pub")
    for k in range(10):
        assert pub.publish("meters/v1/sender/readings", _reading(k)) is not None
    pub.close()
    sender = parse_broker_url(broker.url("sender") + q)
    on_operator_port = str(sender).replace(f":{broker.port}", f":{broker.operator_port}")
    for url in (str(sender), on_operator_port):
        attacker = Client(url, "meters-ingest-0", clean_start=True, session_expiry=0)
        time.sleep(0.3)
        attacker.close()
        # on the operators' port a sender's client id must be its own name: refused
        assert attacker.accepted is (url == str(sender))
    assert "as sender" in broker.log_file.read_text(errors="replace")  # the broker renamed it
    out = run_ingest(parse_broker_url(broker.url("ingest") + q), lake, until_idle=1.0)
    assert out["connects"] == 1 and out["received"] == 10
    assert _lake_meters(lake) == {110100000001 + k for k in range(10)}


def test_a_sender_is_bound_to_its_own_topic_and_cannot_retain(broker, lake):
    """Finding 4: senders could publish retained messages; a sender publishes its own topic only."""
    watcher = Client(broker.url("admin"), "ops-watch")
    assert not any(c.is_failure for c in watcher.subscribe("meters/#"))
    s = Client(broker.url("sender"), "s")
    assert s.publish("meters/v1/other/readings", b'{"forged":1}').is_failure
    assert not s.publish("meters/v1/sender/readings", b'{"ok":1}').is_failure
    s.publish("meters/v1/sender/readings", b'{"retained":1}', retain=True)
    assert _wait(lambda: s.disconnects, 5)            # retain_available false: disconnected
    s.close()
    assert _wait(lambda: watcher.messages, 5)
    time.sleep(0.3)
    assert watcher.messages == [("meters/v1/sender/readings", b'{"ok":1}', False)]
    watcher.close()
    late = Client(broker.url("admin"), "ops-late")     # nothing retained for a new subscriber
    late.subscribe("meters/#")
    time.sleep(0.5)
    assert late.messages == []
    late.close()


def test_ingest_cannot_publish_readings(broker, lake):
    """Finding 4: the ingest role could publish readings (stored with sender ``ingest``)."""
    _session(broker, lake)
    ing = Client(broker.url("ingest"), "meters-ingest-9")
    for topic in ["meters/v1/ingest/readings", "meters/v1/sender/readings"]:
        rc = ing.publish(topic, _reading(1))
        assert rc is not None and rc.is_failure, (topic, rc)
    ing.close()
    out = run_ingest(parse_broker_url(broker.url("ingest")), lake, until_idle=0.5)
    assert out["received"] == 0 and _lake_meters(lake) == set()


def _raw_publish(port: int, user: str, password: str, payload_size: int) -> None:
    """An MQTT 3.1.1 client that ignores every limit: CONNECT, then one QoS 1 PUBLISH of
    ``payload_size`` bytes sent as fast as the socket takes it (the broker may cut it off)."""
    def field(b: bytes) -> bytes:
        return struct.pack("!H", len(b)) + b

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            n, d = divmod(n, 128)
            out.append(d | (0x80 if n else 0))
            if not n:
                return bytes(out)

    body = field(b"MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60) + field(b"raw") + \
        field(user.encode()) + field(password.encode())
    topic = f"meters/v1/{user}/readings".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x10" + varint(len(body)) + body)
        assert s.recv(4) == b"\x20\x02\x00\x00"     # CONNACK: accepted
        head = field(topic) + struct.pack("!H", 1)
        chunk = b"x" * (1 << 20)
        try:
            s.sendall(b"\x32" + varint(len(head) + payload_size) + head)
            for _ in range(payload_size // len(chunk)):
                s.sendall(chunk)
            s.recv(4)
        except OSError:  # the broker closed the connection
            pass


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _du_mb(path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def test_one_sender_cannot_fill_the_broker(broker, lake):
    """Finding 4: 10 × 50 MB from one sender took the broker to 528 MB of memory and 507 MB on disk."""
    _session(broker, lake)
    pw = broker.credentials["users"]["sender"]
    before = _rss_mb(broker.pid())
    for _ in range(10):
        _raw_publish(broker.port, "sender", pw, 50 << 20)
    time.sleep(1.5)  # autosave_interval 1
    assert _rss_mb(broker.pid()) - before < 32
    assert _du_mb(broker.data_dir) < 4
    # the limits are the documented defaults, and a reading of normal size still gets through
    assert broker.info()["limits"] == {"max_queued_messages": 4_000_000, "max_queued_bytes": 1 << 30,
                                       "message_size_limit": 16 << 20, "max_inflight_messages": 1000}
    pub = Client(broker.url("sender"), "ok")
    assert not pub.publish("meters/v1/sender/readings", _reading(3)).is_failure
    big = pub.publish("meters/v1/sender/readings", b"[" + b" " * (17 << 20) + b"]")
    assert big is None or big.is_failure     # over message_size_limit: refused, or cut off
    pub.close()
    out = run_ingest(parse_broker_url(broker.url("ingest")), lake, until_idle=1.0)
    assert out["received"] == 1 and _lake_meters(lake) == {110100000004}


def test_queue_limits_bound_an_offline_session(tmp_path, lake):
    """max_queued_messages / max_queued_bytes bound what the broker holds for an offline session."""
    b = ManagedBroker(tmp_path / "small", BrokerLimits(max_queued_messages=5, max_inflight_messages=1))
    b.start()
    try:
        _session(b, lake)
        pub = Client(b.url("sender"), "p")
        for k in range(20):
            pub.publish("meters/v1/sender/readings", _reading(k))
        pub.close()
        out = run_ingest(parse_broker_url(b.url("ingest")), lake, until_idle=1.0)
        assert 5 <= out["received"] <= 6            # the queue, plus the one in flight
        assert b.info()["limits"]["max_queued_messages"] == 5
        b.restart()                                 # the limits are kept by a restart
        assert "max_queued_messages 5" in b.conf.read_text()
    finally:
        b.stop()


def test_senders_provisioned_while_running_are_confined_too(broker):
    """add_senders on a running broker: the new sender publishes its own topic, nothing else."""
    watcher = Client(broker.url("admin"), "ops-watch2")
    watcher.subscribe("meters/#")
    pw = broker.add_senders(["conc-0100", "conc-0101"])
    assert set(pw) == {"conc-0100", "conc-0101"}
    assert broker.add_senders(["conc-0100"]) == {"conc-0100": pw["conc-0100"]}
    c = Client(broker.url("conc-0100"), "anything")
    assert c.accepted
    assert not c.publish("meters/v1/conc-0100/readings", b"1").is_failure
    assert c.publish("meters/v1/conc-0101/readings", b"2").is_failure
    assert all(x.is_failure for x in c.subscribe("meters/v1/+/readings"))
    c.close()
    assert _wait(lambda: watcher.messages, 5)
    time.sleep(0.3)
    assert [m[:2] for m in watcher.messages] == [("meters/v1/conc-0100/readings", b"1")]
    watcher.close()
    for bad in ["admin", "ingest", "meters-ingest-0", "a/b", "x+", "", "$share"]:
        with pytest.raises(Exception, match="invalid sender id"):
            broker.add_senders([bad])


def test_cli_limits_and_the_shared_subscription_note(tmp_path, lake, monkeypatch):
    """`meters broker start` takes the limits (kept across starts); `meters ingest` on the embedded
    broker states its shared-subscription limit when (and only when) workers share a subscription."""
    from click.testing import CliRunner

    from meters.cli import cli

    runner = CliRunner()
    d = str(tmp_path / "b")
    r = runner.invoke(cli, ["broker", "start", "--dir", d, "--max-queued-messages", "7", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["limits"]["max_queued_messages"] == 7 and info["operator_port"] != info["port"]
    try:
        monkeypatch.delenv("METERS_BROKER", raising=False)
        base = ["ingest", "--broker-dir", d, "--lake", str(lake.root), "--until-idle", "0.3", "-q"]
        one = runner.invoke(cli, base)
        assert one.exit_code == 0, one.output
        assert "note:" not in one.output
        two = runner.invoke(cli, [*base, "--workers", "2"])
        assert two.exit_code == 0, two.output
        assert "note: the embedded Mosquitto 2.0 routes no new message to a shared subscription" in two.output
        assert runner.invoke(cli, ["broker", "stop", "--dir", d]).exit_code == 0
        r = runner.invoke(cli, ["broker", "start", "--dir", d, "--json"])
        assert json.loads(r.output)["limits"]["max_queued_messages"] == 7
    finally:
        runner.invoke(cli, ["broker", "stop", "--dir", d])


def test_ingest_with_a_senders_credentials_stops_with_one_line(broker, lake):
    """A refused subscription (a sender's login given to ingest) ends ingest with exit 1 and one line
    instead of an idle process."""
    from click.testing import CliRunner

    from meters.cli import cli

    sender_on_operator_port = broker.url("sender").replace(f":{broker.port}", f":{broker.operator_port}")
    for url in (broker.url("sender"), sender_on_operator_port):
        r = CliRunner().invoke(cli, ["ingest", "--broker", url, "--lake", str(lake.root), "-q"])
        assert r.exit_code == 1
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: broker mqtt://sender:***@127.0.0.1:"), lines
        assert ("refused the subscription to meters/v1/+/readings" in lines[0]
                or "refused the connection" in lines[0]), lines
