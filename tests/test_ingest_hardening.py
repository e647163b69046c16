"""No message stops ingest (through a real broker), and a dead network thread ends the process."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
from click.testing import CliRunner

from meters import wire
from meters.cli import cli
from test_ingest_service import ROOT, T0, Publisher, create_session, lake_dict

REPORTED = [  # the payloads of the hardening report, exactly as written there
    b'{"meter_id": 1, "ts": %d, "register": 1e308}' % T0,
    b'[{"meter_id": 1, "ts": %d, "register": 1e308}, {"meter_id": 2, "ts": %d, "register": 5}]' % (T0, T0),
    b'{"meter_id": 3, "ts": %d, "register": 5, "\\ud800": 1}' % T0,
]


def test_hostile_messages_are_dead_lettered_and_ingest_goes_on(broker, lake):
    create_session(broker.url("ingest"), lake)
    pub = Publisher(broker.url("sender"))
    for p in REPORTED:
        pub.send(p)
    pub.send(wire.encode_batch(np.array([7, 8]), np.array([T0, T0]), np.array([7000, 8000])))
    pub.wait()
    pub.close()
    r = CliRunner().invoke(cli, ["ingest", "--broker", broker.url("ingest"), "--lake", str(lake.root),
                                 "--until-idle", "1", "-q", "--json"])
    assert r.exit_code == 0, r.output
    assert '"received": 4' in r.output and '"acked": 4' in r.output
    assert lake_dict(lake) == {(2, T0): 5000, (7, T0): 7000, (8, T0): 8000}
    dead = lake.read("deadletter")
    assert sorted(dead.column("reason").to_pylist()) == ["register_too_large", "register_too_large",
                                                          "unknown_field"]
    assert "\\ud800" in " ".join(dead.column("detail").to_pylist())   # stored escaped
    # everything was acknowledged: the next run has nothing to redo (no crash loop)
    again = CliRunner().invoke(cli, ["ingest", "--broker", broker.url("ingest"), "--lake", str(lake.root),
                                     "--until-idle", "0.5", "-q", "--json"])
    assert again.exit_code == 0 and '"received": 0' in again.output


KILL_NETWORK_THREAD = textwrap.dedent("""
    import ctypes, sys, threading, time
    from meters.cli import cli

    class Killed(BaseException):  # paho catches Exception in its loop, not this
        pass

    def kill():  # raise an exception inside paho's network thread once ingest runs
        while True:
            for t in threading.enumerate():
                if t.name.startswith("paho-mqtt-client-meters-ingest"):
                    time.sleep(0.5)
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident),
                                                               ctypes.py_object(Killed))
                    return
            time.sleep(0.02)

    threading.Thread(target=kill, daemon=True).start()
    cli(sys.argv[1:], prog_name="meters")
""")


def test_watchdog_exits_non_zero_when_the_network_thread_dies(broker, lake):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", KILL_NETWORK_THREAD, "ingest", "--broker", broker.url("ingest"),
                        "--lake", str(lake.root), "--until-idle", "60", "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert time.monotonic() - t0 < 30                       # it did not idle until --until-idle
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "MQTT network thread died: Killed" in lines[0], r.stderr
