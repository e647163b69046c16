"""Ingest as a service: started before its broker it waits and connects when the broker comes up;
it logs on change (one JSON object per line with --log-format json), never every few seconds when
idle; metrics follow the Prometheus conventions."""
from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from ingest.service import METRICS, Counters, run_ingest
from meters.broker import free_port
from meters.errors import MetersError
from meters.mqtt import parse_broker_url

from test_ingest_service import ROOT, Publisher, _wait, batches, lake_dict


def metrics(port: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except OSError:
        return {}
    return {line.split("{")[0]: float(line.split()[-1]) for line in text.splitlines() if not line.startswith("#")}


@pytest.mark.parametrize("given", ["url", "broker-dir"])
def test_ingest_started_before_the_broker_connects_when_it_comes_up(broker, lake, given, monkeypatch):
    """Given its URL, or the state dir of a managed broker that is not up (a systemd boot)."""
    monkeypatch.delenv("METERS_BROKER", raising=False)
    url = broker.url("ingest")
    port, operator_port = broker.port, broker.operator_port
    broker.stop()
    mport = free_port()
    where = ["--broker", url] if given == "url" else ["--broker-dir", str(broker.dir)]
    proc = subprocess.Popen([sys.executable, "-m", "meters", "ingest", *where, "--lake", str(lake.root),
                             "--metrics-port", str(mport), "--log-format", "json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the broker is down: ingest keeps retrying (with back-off) instead of exiting
        assert _wait(lambda: metrics(mport).get("meters_ingest_connect_failures_total", 0) >= 3, 30)
        assert proc.poll() is None and metrics(mport)["meters_ingest_connected"] == 0
        broker.start(port=port, operator_port=operator_port)
        assert _wait(lambda: metrics(mport).get("meters_ingest_connected") == 1, 40)
        payloads, expected = batches(5, 10)
        pub = Publisher(broker.url("sender"))
        for p in payloads:
            pub.send(p)
        pub.wait()
        pub.close()
        assert _wait(lambda: metrics(mport).get("meters_ingest_messages_acked_total") == 5, 10)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lake_dict(lake) == expected
    records = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    events = [r.get("event") for r in records]
    # logged on change: unreachable once however many attempts failed, then reachable, then connected
    assert events.count("broker_unreachable") == 1 and events.count("broker_reachable") == 1
    assert events.index("broker_unreachable") < events.index("broker_reachable") < events.index("connected")
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert broker.credentials["users"]["ingest"] not in err + out


def test_sigterm_while_waiting_for_the_broker_exits_0(lake):
    proc = subprocess.Popen([sys.executable, "-m", "meters", "ingest", "--broker",
                             f"mqtt://ingest:pw@127.0.0.1:{free_port()}", "--lake", str(lake.root), "--json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait(lambda: "retrying with back-off" in (proc.stderr.readline() or ""), 30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert json.loads(out)["connects"] == 0 and json.loads(out)["connect_failures"] >= 1


def test_a_batch_run_gives_up_after_connect_timeout(lake):
    url = parse_broker_url(f"mqtt://ingest:pw@127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    with pytest.raises(MetersError, match=r"cannot connect to broker mqtt://ingest:\*\*\*@127.0.0.1:\d+: .*retried for 1.5 s"):
        run_ingest(url, lake, connect_timeout=1.5, handle_signals=False)
    assert 1.4 <= time.monotonic() - t0 < 6


def test_idle_ingest_logs_nothing(broker, lake, caplog):
    """A progress line only when something happened since the last one."""
    caplog.set_level(logging.INFO, logger="meters.ingest")
    run_ingest(parse_broker_url(broker.url("ingest")), lake, until_idle=1.2, log_every=0.2, handle_signals=False)
    progress = [r for r in caplog.records if getattr(r, "event", None) == "progress"]
    assert progress == []
    assert [getattr(r, "event", None) for r in caplog.records] == ["connected"]


def test_metrics_follow_prometheus_conventions():
    text = Counters(worker="w-0", written=7).prometheus()
    names = [m for _, m, _, _ in METRICS]
    for name, kind in [(m, k) for _, m, k, _ in METRICS]:
        assert f"# HELP {name} " in text and f"# TYPE {name} {kind}\n" in text
        assert name.endswith("_total") == (kind == "counter")
    assert 'meters_ingest_readings_written_total{worker="w-0"} 7' in text
    assert {"meters_ingest_connected", "meters_ingest_lag_seconds"} <= set(names)


def test_warns_about_a_share_group_session_without_a_worker(broker, lake):
    """After `--workers 2`, a run of one worker warns (log + metric) that session meters-ingest-1
    still takes a share of the messages; once it is drained, the warning is gone."""
    url = broker.url("ingest")

    def run(*extra):
        r = subprocess.run([sys.executable, "-m", "meters", "ingest", "--broker", url, "--lake", str(lake.root),
                            "--until-idle", "0.5", "--json", *extra], cwd=ROOT, capture_output=True, text=True,
                           timeout=90)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout), r.stderr

    out, err = run("--workers", "2")
    assert out["workers"] and "have no running worker" not in err
    out, err = run()
    assert out["stale_sessions"] == 1
    warning = [line for line in err.splitlines() if "have no running worker" in line]
    assert len(warning) == 1 and "meters-ingest-1" in warning[0] and "--first-worker N` (N = 1)" in warning[0]
    run("--drain", "--workers", "1", "--first-worker", "1")
    out, err = run()
    assert out["stale_sessions"] == 0 and "have no running worker" not in err
