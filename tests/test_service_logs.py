"""`--log-format json` on the long-running services: `meters serve` and `meters notify` write one JSON
object per line on stderr (start, stop, errors), nothing else."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from meters.broker import free_port

ROOT = Path(__file__).resolve().parents[1]


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "no log line at all"
    return [json.loads(line) for line in lines]   # fails on any line that is not one JSON object


def test_serve_logs_json(lake):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "meters", "serve", "--lake", str(lake.root), "--port", str(port),
                             "--log-format", "json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    records = json_lines(err)
    assert any(r.get("event") == "serving" and r["logger"] == "meters.serve" for r in records)
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert out == ""


def test_notify_logs_json(lake):
    subprocess.run([sys.executable, "-m", "meters", "accounts", "migrate", "--lake", str(lake.root)], cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    r = subprocess.run([sys.executable, "-m", "meters", "notify", "--lake", str(lake.root), "--until-idle", "0.5",
                        "--log-format", "json", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sent"] == 0
    events = [x.get("event") for x in json_lines(r.stderr)]
    assert events[0] == "started" and events[-1] == "stopped"
