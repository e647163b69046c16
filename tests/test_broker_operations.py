"""The managed broker for a pilot city: TLS for senders, a bind address, a foreground service, log
rotation, and passwords that stay in a 0600 file. Real Mosquitto on free loopback ports."""
from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from meters.broker import ManagedBroker, _port_open, free_port
from meters.cli import cli
from meters.mqtt import make_client, parse_broker_url, readings_topic

from test_ingest_service import ROOT, _wait


def received_by_admin(broker: ManagedBroker):
    """Subscribe as admin to the readings; returns the list the payloads land in and a closer."""
    got, ready = [], threading.Event()
    client, kw = make_client(parse_broker_url(broker.url("admin")), "test-admin-sub")
    client.on_subscribe = lambda *a: ready.set()
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.connect(**kw)
    client.loop_start()
    client.subscribe("meters/v1/+/readings", qos=1)
    assert ready.wait(5)

    def close():
        client.disconnect()
        client.loop_stop()
    return got, close


def publish(url: str, payload: bytes) -> bool:
    u = parse_broker_url(url)
    client, kw = make_client(u, u.username)
    try:
        client.connect(**kw)
    except (OSError, ssl.SSLError):
        return False
    client.loop_start()
    try:
        info = client.publish(readings_topic(u.username), payload, qos=1)
        info.wait_for_publish(5)
        return info.is_published()
    except (RuntimeError, ValueError):
        return False
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def stop_after():
    started = []
    yield started.append
    for b in started:
        b.stop()


def test_tls_listener_with_a_generated_ca(tmp_path, stop_after):
    broker = ManagedBroker(tmp_path / "b")
    stop_after(broker)
    info = broker.start(tls=True)
    url = broker.url("sender")
    assert url.startswith("mqtts://sender:") and "cafile=" in url
    tls = info["tls"]
    for key in ("keyfile",):
        assert stat.S_IMODE(os.stat(tls[key]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "b" / "tls" / "ca.key").st_mode) == 0o600
    got, close = received_by_admin(broker)
    try:
        assert publish(url, b'{"meter_id": 1, "ts": 0, "register": 1}')
        assert _wait(lambda: got == [b'{"meter_id": 1, "ts": 0, "register": 1}'], 5)
        # plain TCP to the TLS port: the MQTT CONNECT is never answered
        plain = url.replace("mqtts://", "mqtt://").split("?")[0]
        assert not publish(plain, b"x")
        # and a client that does not trust the generated CA cannot connect
        with pytest.raises(ssl.SSLError):
            ctx = ssl.create_default_context()
            with socket.create_connection(("127.0.0.1", broker.port), timeout=3) as s:
                ctx.wrap_socket(s, server_hostname="127.0.0.1")
        assert got == [b'{"meter_id": 1, "ts": 0, "register": 1}']
    finally:
        close()
    # a restart keeps TLS and the CA the senders trust
    ca = Path(tls["cafile"]).read_bytes()
    broker.restart()
    assert broker.url("sender").startswith("mqtts://") and Path(tls["cafile"]).read_bytes() == ca
    assert publish(broker.url("sender"), b"again")


def test_given_certificate_files_and_no_tls(tmp_path, stop_after):
    from meters.tls import generate

    files = generate(tmp_path / "pki", ["127.0.0.1"])
    runner = CliRunner()
    d = str(tmp_path / "b")
    r = runner.invoke(cli, ["broker", "start", "--dir", d, "--tls-cert", files["certfile"], "--tls-key",
                            files["keyfile"], "--tls-ca", files["cafile"], "--json"])
    broker = ManagedBroker(d)
    stop_after(broker)
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["tls"]["certfile"] == files["certfile"] and publish(broker.url("sender"), b"x")
    broker.stop()
    r = runner.invoke(cli, ["broker", "start", "--dir", d, "--no-tls"])
    assert r.exit_code == 0 and broker.url("sender").startswith("mqtt://") and publish(broker.url("sender"), b"y")
    r = runner.invoke(cli, ["broker", "start", "--dir", str(tmp_path / "c"), "--tls-cert", files["certfile"]])
    assert r.exit_code == 1 and r.output.strip() == "error: --tls-cert and --tls-key go together"


def test_bind_address(tmp_path, stop_after):
    """The senders' listener listens on the given address only; the operators' stays on 127.0.0.1."""
    broker = ManagedBroker(tmp_path / "b")
    stop_after(broker)
    broker.start(bind="127.0.0.2")
    assert "listener %d 127.0.0.2" % broker.port in broker.conf.read_text()
    assert broker.url("sender").startswith("mqtt://sender:") and "@127.0.0.2:" in broker.url("sender")
    assert _port_open(broker.port, "127.0.0.2") and not _port_open(broker.port, "127.0.0.1")
    assert broker.is_running() and publish(broker.url("sender"), b"x")
    with pytest.raises(Exception, match="already runs on 127.0.0.2"):
        broker.start(bind="0.0.0.0")


def test_credentials_never_on_stdout(tmp_path, stop_after):
    runner = CliRunner()
    d = tmp_path / "b"
    r = runner.invoke(cli, ["broker", "start", "--dir", str(d), "--json"])
    broker = ManagedBroker(d)
    stop_after(broker)
    assert r.exit_code == 0, r.output
    passwords = broker.credentials["users"].values()
    assert all(p not in r.output for p in passwords)
    info = json.loads(r.output)
    assert info["credentials_file"] == str((d / "credentials.json").resolve()) and "users" not in info
    assert stat.S_IMODE(os.stat(info["credentials_file"]).st_mode) == 0o600
    assert info["urls"]["sender"] == f"mqtt://sender:***@127.0.0.1:{broker.port}"
    text = runner.invoke(cli, ["broker", "start", "--dir", str(d)]).output
    assert all(p not in text for p in passwords) and "credentials:" in text
    shown = runner.invoke(cli, ["broker", "start", "--dir", str(d), "--json", "--show-secrets"]).output
    assert json.loads(shown)["users"] == broker.credentials["users"]


def test_foreground_service_and_log_rotation(tmp_path):
    """--foreground: the process becomes Mosquitto (what systemd's Type=simple supervises), logs to
    stderr, prints no password, and SIGTERM stops it. rotate-log rotates a background broker's log."""
    d = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "meters", "broker", "start", "--dir", str(d), "--foreground",
                             "--port", str(free_port())], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    broker = ManagedBroker(d)
    try:
        assert _wait(lambda: broker.cred_file.exists() and broker.is_running(), 15)
        assert broker.pid() == proc.pid  # exec'd: the service's main process is Mosquitto
        assert publish(broker.url("sender"), b"x")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    passwords = broker.credentials["users"].values()
    assert all(p.encode() not in out + err for p in passwords)
    assert b"mosquitto" in err.lower() and not broker.log_file.exists()

    broker.start()  # background: logs to its file
    try:
        assert _wait(lambda: broker.log_file.exists() and broker.log_file.stat().st_size > 0, 5)
        r = CliRunner().invoke(cli, ["broker", "rotate-log", "--dir", str(d)])
        assert r.exit_code == 0, r.output
        assert (d / "mosquitto.log.1").exists()
        publish(broker.url("sender"), b"y")  # a connection: logged to the reopened file
        assert _wait(lambda: broker.log_file.exists() and b"sender" in broker.log_file.read_bytes(), 5)
    finally:
        broker.stop()
    # a log larger than --log-max-bytes is rotated on start
    broker.log_file.write_bytes(b"x" * 2000)
    broker.start(log_max_bytes=1000)
    broker.stop()
    assert (d / "mosquitto.log.1").stat().st_size == 2000 and (d / "mosquitto.log.2").exists()
