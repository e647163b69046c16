"""Broker portability (issue 8): nothing outside ``meters broker`` depends on Mosquitto or on the
configuration that ``meters broker`` generates.

(a) a static rule over the product's source, (b) the simulator and the ingest service run against a
Mosquitto configured by this test the way another operator would (other port, user names, ACL, no
persistence, default in-flight window, MQTT 3.1.1 clients or MQTT 5 shared subscriptions), in a
fresh interpreter that must never import ``meters.broker``.
"""
from __future__ import annotations

import ast
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("meters", "ingest", "billing", "simulator")
# modules whose job is to run the managed Mosquitto (`meters broker`, and `meters demo`, which starts it)
MANAGED = {"meters/broker.py", "meters/cli_broker.py", "meters/demo.py"}
# the only places outside MANAGED that may reach the managed broker: the fallback taken when no
# broker URL (--broker / $METERS_BROKER) is given, or when the user names a managed broker dir
FALLBACKS = {("ingest/cli.py", "ingest"), ("simulator/cli.py", "replay"), ("simulator/run.py", "simulate")}
# Mosquitto-specific words: the program, its $SYS tree, its config keys (the paho client methods
# max_inflight_messages_set / max_queued_messages_set are client-side and do not match: \b)
MOSQUITTO = re.compile(r"mosquitto|\$SYS\b|\b(max_queued_messages|max_queued_bytes|persistence_location|"
                       r"acl_file|password_file|allow_anonymous|autosave_interval|max_inflight_messages)\b",
                       re.IGNORECASE)
MANAGED_NAMES = {"ManagedBroker", "managed_broker", "find_mosquitto", "DEFAULT_STATE_DIR"}


def _sources():
    for pkg in PRODUCT:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            yield p.relative_to(ROOT).as_posix(), ast.parse(p.read_text(), str(p))


def _docstring_ids(tree) -> set[int]:
    ids = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body:
            first = n.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def mosquitto_mentions(rel: str, tree) -> list[tuple[str, int, str]]:
    """Executable mentions of Mosquitto in one module: string literals (not docstrings: prose may
    say that Mosquitto is the default), names, attributes, imports. Comments are not code."""
    doc = _docstring_ids(tree)
    hits = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in doc:
            texts = [n.value]
        elif isinstance(n, ast.Name):
            texts = [n.id]
        elif isinstance(n, ast.Attribute):
            texts = [n.attr]
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            texts = [a.name for a in n.names] + [getattr(n, "module", None) or ""]
        else:
            continue
        hits += [(rel, n.lineno, t[:60]) for t in texts if MOSQUITTO.search(t) or t in MANAGED_NAMES]
    return hits


def broker_imports(tree) -> list[tuple[int, str | None]]:
    """(line, enclosing top-level function or None) of every import of ``meters.broker``."""
    out = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            f = func
            if func is None and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                f = child.name
            if isinstance(child, ast.ImportFrom):
                mod = "." * child.level + (child.module or "")
                if mod in ("meters.broker", ".broker") or (mod in ("meters", ".") and
                                                           any(a.name == "broker" for a in child.names)):
                    out.append((child.lineno, f))
            elif isinstance(child, ast.Import) and any(a.name == "meters.broker" for a in child.names):
                out.append((child.lineno, f))
            visit(child, f)

    visit(tree, None)
    return out


def test_rule_flags_what_it_should():
    """The rule itself can fail: it sees the managed broker's own module and ignores prose."""
    src = ast.parse(textwrap.dedent('''
        """Works with Mosquitto or EMQX."""            # docstring: allowed
        import paho.mqtt.client as mqtt
        from meters.broker import ManagedBroker       # flagged (name), an import at module level
        TOPIC = "$SYS/broker/uptime"                  # flagged
        def f(c):
            c.max_inflight_messages_set(10)           # paho client API: allowed
            from .broker import free_port             # lazy import, inside f
            return "max_queued_messages 0"            # flagged
    '''))
    hits = {t for _, _, t in mosquitto_mentions("x.py", src)}
    assert hits == {"ManagedBroker", "$SYS/broker/uptime", "max_queued_messages 0"}
    assert broker_imports(src) == [(4, None), (8, "f")]
    own = dict(_sources())["meters/broker.py"]
    assert len(mosquitto_mentions("meters/broker.py", own)) > 10


def test_nothing_mosquitto_specific_outside_meters_broker():
    hits, imports = [], []
    for rel, tree in _sources():
        if rel in MANAGED:
            continue
        hits += [h for h in mosquitto_mentions(rel, tree) if h[2] not in MANAGED_NAMES]
        imports += [(rel, line, func) for line, func in broker_imports(tree)]
    assert hits == [], f"Mosquitto-specific code outside meters broker: {hits}"
    # the managed broker is only ever a lazy fallback, never imported at module level
    assert all(func is not None for _, _, func in imports), imports
    assert {(rel, func) for rel, _, func in imports} <= FALLBACKS, imports


# -- (b) a broker that `meters broker` did not configure ----------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ForeignMosquitto:
    """A Mosquitto as another operator would set it up: its own port and user names, an ACL of
    explicit users (no pattern), no persistence, the default in-flight window (20). The one thing
    any broker needs for lossless QoS 1 to an offline persistent session is a queue big enough for
    the outage (Mosquitto's default max_queued_messages is 1000)."""

    USERS = {"collector": "c0llect!", "dc-north-7": "s3nd#er", "ops": "0ps"}

    def __init__(self, d: Path):
        exe = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")
        pw = shutil.which("mosquitto_passwd", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if not exe or not pw:
            pytest.skip("mosquitto not installed")
        self.port = _free_port()
        (d / "passwd").write_text("".join(f"{u}:{p}\n" for u, p in self.USERS.items()))
        subprocess.run([pw, "-U", str(d / "passwd")], check=True)
        (d / "acl").write_text("user ops\ntopic readwrite #\n\nuser collector\ntopic read meters/v1/+/readings\n\n"
                               "user dc-north-7\ntopic write meters/v1/dc-north-7/readings\n")
        conf = [f"listener {self.port} 127.0.0.1", "allow_anonymous false", f"password_file {d / 'passwd'}",
                f"acl_file {d / 'acl'}", "persistence false", "max_queued_messages 100000",
                "log_dest stderr"]
        if os.geteuid() == 0:
            conf.insert(0, "user root")
        (d / "foreign.conf").write_text("\n".join(conf) + "\n")
        self.log = open(d / "foreign.log", "wb")
        self.proc = subprocess.Popen([exe, "-c", str(d / "foreign.conf")], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert self.proc.poll() is None, (d / "foreign.log").read_text()
            time.sleep(0.05)
        raise AssertionError("foreign mosquitto did not start")

    def url(self, user: str, version: str = "5") -> str:
        from urllib.parse import quote
        q = "" if version == "5" else "?version=3.1.1"
        return f"mqtt://{user}:{quote(self.USERS[user], safe='')}@127.0.0.1:{self.port}{q}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def foreign(tmp_path):
    b = ForeignMosquitto(tmp_path)
    yield b
    b.stop()


# Runs in a fresh interpreter: simulate a day through the foreign broker, ingest it, compare the lake
# with the simulator's manifest, and report whether meters.broker was ever imported.
DRIVER = r'''
import json, sys, threading
import pyarrow.parquet as pq
from pathlib import Path
from meters.lake import init_lake
from meters.mqtt import parse_broker_url
from meters.readings import read_readings
from ingest.service import run_ingest, run_workers
from simulator.run import simulate

a = json.loads(sys.argv[1])
lake = init_lake(a["lake"])
ingest_url = parse_broker_url(a["ingest_url"])
ids = [f"collector-{i}" for i in range(a["workers"])]
kw = dict(receive_maximum=20, handle_signals=False, log_every=1e9)   # the broker's in-flight window
for cid in ids:                         # create the persistent sessions and their subscriptions
    run_ingest(ingest_url, lake, client_id=cid, until_idle=0.1, shared=a["workers"] > 1, **kw)
out = {}
live = []
if a["workers"] == 1:                   # live ingest while the simulator publishes
    t = threading.Thread(target=lambda: out.update(run_ingest(ingest_url, lake, client_id=ids[0],
                                                             until_idle=3.0, **kw)))
    t.start(); live.append(t)
summary = simulate(a["meters"], a["start"], 1, broker=a["sender_url"], lake=lake.root, faults="none",
                   seed=11, window=20)
for t in live:
    t.join(60)
if a["workers"] == 1:                   # whatever arrived after the live run went idle
    rest = run_ingest(ingest_url, lake, client_id=ids[0], until_idle=1.0, **kw)
    workers = [{"worker": ids[0], "received": out.get("received", 0) + rest["received"]}]
else:                                   # N processes on the shared subscription
    res = run_workers(a["workers"], ingest_url, lake, client_id="collector", until_idle=1.5,
                      receive_maximum=20, log_every=1e9)
    workers = [{"worker": w["worker"], "received": w["received"]} for w in res["workers"]]
import datetime as dt
t = read_readings(lake, *(dt.datetime.fromisoformat(w) for w in a["window"]))
m = pq.read_table(Path(summary["manifest"]) / "meters.parquet")
got = t.group_by("meter_id").aggregate([("register_milli", "max"), ("ts", "count")])
print(json.dumps({
    "readings": summary["readings"], "lake_rows": t.num_rows,
    "raw_rows": lake.read("readings", columns=["meter_id"]).num_rows,
    "got": sorted(zip(got.column("meter_id").to_pylist(), got.column("register_milli_max").to_pylist(),
                      got.column("ts_count").to_pylist())),
    "want": sorted(zip(m.column("meter_id").to_pylist(), m.column("end_milli").to_pylist(),
                       m.column("published").to_pylist())),
    "senders": sorted(set(t.column("sender").to_pylist())),
    "files": sorted(p.name for p in lake.files("readings")),
    "workers": workers,
    "managed_broker_imported": "meters.broker" in sys.modules,
}))
'''


def _drive(foreign, tmp_path, version: str, workers: int) -> dict:
    now = int(time.time())
    t0 = (now - 2 * 86400) // 3600 * 3600
    utc = dt.timezone.utc
    args = {"lake": str(tmp_path / "lake"), "ingest_url": foreign.url("collector", version),
            "sender_url": foreign.url("dc-north-7", version), "workers": workers, "meters": 300,
            "start": dt.datetime.fromtimestamp(t0, utc).isoformat(),
            "window": [dt.datetime.fromtimestamp(t0 - 86400, utc).isoformat(),
                       dt.datetime.fromtimestamp(now + 86400, utc).isoformat()]}
    env = {k: v for k, v in os.environ.items() if k != "METERS_BROKER"}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(args)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _check(out: dict, workers: int):
    assert out["managed_broker_imported"] is False
    assert len(out["want"]) == 300 and out["readings"] == sum(w[2] for w in out["want"]) >= 300 * 96
    assert out["lake_rows"] == out["readings"] and out["got"] == [list(x) for x in out["want"]]
    assert out["raw_rows"] == out["readings"]            # clean run: not even raw duplicates
    assert out["senders"] == ["dc-north-7"]
    assert sorted(w["worker"] for w in out["workers"]) == [f"collector-{i}" for i in range(workers)]
    assert all(w["received"] > 0 for w in out["workers"])
    assert {n.split("-")[1] for n in out["files"]} == {"collector"}   # file names carry the client id


def test_foreign_mosquitto_mqtt311_plain_subscription(foreign, tmp_path):
    _check(_drive(foreign, tmp_path, "3.1.1", 1), 1)


def test_foreign_mosquitto_mqtt5_two_workers_shared_subscription(foreign, tmp_path):
    out = _drive(foreign, tmp_path, "5", 2)
    _check(out, 2)
    assert {n.split("-")[2] for n in out["files"]} == {"0", "1"}   # each worker wrote its own files
