"""The managed broker: auth, per-sender ACL, ingest role, shared subscription, status, restart."""
from __future__ import annotations

import json
import threading
import time

import pytest
from click.testing import CliRunner

from meters.broker import ManagedBroker
from meters.cli import cli
from meters.mqtt import make_client, parse_broker_url


def _connect(url, client_id):
    u = parse_broker_url(url) if isinstance(url, str) else url
    client, kw = make_client(u, client_id)
    result = {}
    ev = threading.Event()

    def on_connect(c, userdata, flags, reason_code, props):
        result["rc"] = reason_code
        ev.set()

    client.on_connect = on_connect
    client.connect(**kw)
    client.loop_start()
    assert ev.wait(5), "no CONNACK"
    return client, result["rc"]


def _subscriber(url, topic, client_id="sub"):
    received = []
    client, rc = _connect(url, client_id)
    assert not rc.is_failure
    client.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    done = threading.Event()
    granted = {}

    def on_subscribe(c, u, mid, reason_codes, props):
        granted["codes"] = reason_codes
        done.set()

    client.on_subscribe = on_subscribe
    client.subscribe(topic, qos=1)
    assert done.wait(5)
    return client, received, granted["codes"]


def _publish(url, topic, payload, client_id="pub"):
    client, rc = _connect(url, client_id)
    assert not rc.is_failure, rc
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(5)
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


def _wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_sender_acl_and_ingest_role(session_broker):
    b = session_broker
    b.add_senders(["conc-0001", "conc-0002"])
    sub, received, codes = _subscriber(b.url("ingest"), "$share/ingest/meters/v1/+/readings")
    assert all(not c.is_failure for c in codes), codes
    _publish(b.url("conc-0001"), "meters/v1/conc-0001/readings", b'{"ok":1}', "c1")
    # a sender publishing on another sender's topic is refused (silently dropped by the broker)
    _publish(b.url("conc-0001"), "meters/v1/conc-0002/readings", b'{"forged":1}', "c1b")
    _publish(b.url("conc-0002"), "meters/v1/conc-0002/readings", b'{"ok":2}', "c2")
    assert _wait(lambda: len(received) >= 2)
    time.sleep(0.3)
    assert sorted(received) == [("meters/v1/conc-0001/readings", b'{"ok":1}'),
                                ("meters/v1/conc-0002/readings", b'{"ok":2}')]
    sub.disconnect()
    sub.loop_stop()


def test_unauthenticated_and_wrong_password_refused(session_broker):
    u = parse_broker_url(session_broker.url("sender"))
    _, rc = _connect(u.with_credentials("sender", "wrong"), "bad1")
    assert rc.is_failure
    anon = parse_broker_url(f"mqtt://127.0.0.1:{u.port}")
    _, rc = _connect(anon, "anon")
    assert rc.is_failure


def test_sender_cannot_subscribe(session_broker):
    """Mosquitto may grant the SUBSCRIBE but its ACL never delivers another sender's readings."""
    b = session_broker
    sub, received, codes = _subscriber(b.url("sender"), "meters/v1/+/readings", "snoop")
    b.add_senders(["conc-0003"])
    _publish(b.url("conc-0003"), "meters/v1/conc-0003/readings", b'{"private":1}', "c3")
    time.sleep(0.5)
    assert received == []
    sub.disconnect()
    sub.loop_stop()


def test_qos1_survives_broker_restart(broker):
    """A persistent ingest session keeps queued QoS 1 messages across a broker restart."""
    url = parse_broker_url(broker.url("ingest"))
    client, kw = make_client(url, "ingest-persist", clean_start=False, session_expiry=3600)
    client.connect(**kw)
    client.loop_start()
    assert _wait(client.is_connected)
    r, _ = client.subscribe("meters/v1/+/readings", qos=1)
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()
    _publish(broker.url("sender"), "meters/v1/sender/readings", b"queued-while-away")
    time.sleep(1.5)  # autosave_interval 1
    broker.restart()
    got = []
    client, kw = make_client(url, "ingest-persist", clean_start=False, session_expiry=3600)
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.connect(**kw)
    client.loop_start()
    assert _wait(lambda: got, 5)
    assert got == [b"queued-while-away"]
    client.disconnect()
    client.loop_stop()


def test_cli_start_status_stop(tmp_path):
    runner = CliRunner()
    d = str(tmp_path / "b")
    r = runner.invoke(cli, ["broker", "start", "--dir", d, "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert set(info["urls"]) == {"admin", "ingest", "sender"}
    assert info["urls"]["sender"].startswith("mqtt://sender:")
    assert runner.invoke(cli, ["broker", "status", "--dir", d]).exit_code == 0
    # a second start is idempotent and keeps the port
    r2 = runner.invoke(cli, ["broker", "start", "--dir", d, "--json"])
    assert json.loads(r2.output)["port"] == info["port"]
    assert runner.invoke(cli, ["broker", "stop", "--dir", d]).exit_code == 0
    st = runner.invoke(cli, ["broker", "status", "--dir", d, "--json"])
    assert st.exit_code == 1 and json.loads(st.output)["running"] is False
    assert "no managed broker was running" in runner.invoke(cli, ["broker", "stop", "--dir", d]).output


def test_stop_never_kills_a_foreign_process(tmp_path):
    import subprocess
    import sys

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    b = ManagedBroker(tmp_path / "b")
    b.dir.mkdir(parents=True)
    b.pid_file.write_text(str(sleeper.pid))
    assert b.pid() is None and b.stop() is False
    assert sleeper.poll() is None
    sleeper.kill()


def test_port_in_use_is_a_clear_error(session_broker, tmp_path):
    from meters.errors import MetersError

    with pytest.raises(MetersError, match="already in use"):
        ManagedBroker(tmp_path / "b2").start(port=session_broker.port)
