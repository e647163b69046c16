"""The account service's CLI (`meters channels add`, `balance`, `accounts set|migrate`, `serve` over
TLS) on SQLite and PostgreSQL: thin wrappers over the library functions the API calls."""
from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time

import httpx
import pytest
from accounts_support import ROOT, db_url, make_lake  # noqa: F401  (db_url: fixture)
from click.testing import CliRunner

from accounts.channels import authenticate
from accounts.store import open_store
from meters.broker import free_port
from meters.cli import cli


@pytest.fixture
def run(tmp_path, db_url):
    make_lake(tmp_path / "lake")
    extra = ["--lake", str(tmp_path / "lake")] + (["--db", db_url] if db_url else [])

    def invoke(*args, ok=True):
        r = CliRunner().invoke(cli, [*args, *extra], prog_name="meters")
        assert (r.exit_code == 0) == ok, r.output
        return r

    invoke.lake, invoke.db = tmp_path / "lake", db_url
    return invoke


def test_migrate_then_set_and_balance(run):
    first = json.loads(run("accounts", "migrate", "--json").output)
    assert (first["accounts_new"], first["settings_rows"], first["contact_rows"]) == (3, 3, 3)
    again = json.loads(run("accounts", "migrate", "--json").output)
    assert (again["accounts_new"], again["settings_rows"], again["contact_rows"]) == (0, 0, 0)
    out = json.loads(run("accounts", "set", "1001", "--auto-topup", "20,100", "--warnings", "40,25",
                         "--add-contact", "daughter:+8613700000000", "--name", "张三明", "--json").output)
    assert out["settings"]["auto_topup"] == {"below": "20.00", "amount": "100.00"} and out["name"] == "张*明"
    assert out["settings"]["warnings"] == ["40.00", "25.00"] and out["changed"] is True
    assert {"recipient": "+8613700000000", "relation": "daughter", "language": "zh-CN"} in out["contacts"]
    assert "(unchanged)" in run("accounts", "set", "1001", "--auto-topup", "20,100").output
    assert "auto top-up off" in run("accounts", "set", "1001", "--auto-topup", "off").output
    r = run("accounts", "set", "1001", "--auto-topup", "20", ok=False)
    assert "BELOW" not in r.output and "two numbers" in r.output
    assert "3 decimal" not in run("accounts", "set", "1001", "--warnings", "30,20.005", ok=False).output
    b = json.loads(run("balance", "1001", "--json").output)
    assert (b["balance"], b["status"]) == ("50.00", "ok")
    assert "unknown user number" in run("balance", "nope", ok=False).output


def test_channels_add_prints_the_key_once_and_stores_its_hash(run):
    out = json.loads(run("channels", "add", "wechat", "--json").output)
    assert set(out) == {"name", "role", "key"} and out["role"] == "channel" and out["key"].startswith("mk_")
    op = json.loads(run("channels", "add", "ops", "--role", "operator", "--sign", "--json").output)
    assert op["role"] == "operator" and len(op["signing_secret"]) == 64
    assert "exists already" in run("channels", "add", "wechat", ok=False).output
    assert "letters, digits" in run("channels", "add", "bad name", ok=False).output
    store = open_store(run.lake, run.db)
    with store.read() as conn:
        stored = conn.exec_driver_sql("SELECT key_sha256 FROM channels").scalars().all()
    assert out["key"] not in stored and len(stored) == 2
    assert authenticate(store, out["key"]).role == "channel" and authenticate(store, out["key"] + "x") is None
    store.close()


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_serve_https(tmp_path):
    make_lake(tmp_path / "lake")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    r = CliRunner().invoke(cli, ["serve", "--lake", str(tmp_path / "lake"), "--tls-cert", str(cert)])
    assert r.exit_code == 1 and "go together" in r.output
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "meters", "serve", "--lake", str(tmp_path / "lake"), "--port", str(port),
                          "--tls-cert", str(cert), "--tls-key", str(key)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        deadline = time.time() + 60
        while True:
            try:
                ok = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ctx, timeout=1)
                break
            except httpx.TransportError:
                assert p.poll() is None and time.time() < deadline, "meters serve --tls-cert did not start"
                time.sleep(0.1)
        assert ok.status_code == 200 and ok.json()["database"] == "sqlite"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
    finally:
        p.terminate()
        p.wait(10)
