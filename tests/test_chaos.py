"""Chaos at load (benchmarks/bench_chaos.py, bounded for CI): the simulator with faults publishes through
the managed broker while ingest is SIGKILLed every few seconds, the broker restarts twice and one ingest
meets a full disk; nothing is lost or doubled and the billing night equals a clean run's."""
from __future__ import annotations

from benchmarks.bench_chaos import run_chaos


def test_chaos_loses_nothing_doubles_nothing_and_bills_as_a_clean_run(tmp_path):
    fig = run_chaos(tmp_path, meters=1000, days=2, speed="8640x", kill_every=2.5, echo=lambda *_: None)
    assert fig["kills"] >= 3 and fig["broker_restarts"] == 2
    # the full disk: that ingest stopped by itself, exit 1, one line naming the lake, no traceback
    assert fig["disk_full_exit"] == 1
    assert fig["disk_full_error"].startswith("error: cannot write to the lake") and "\n" not in fig["disk_full_error"]
    assert fig["expected"] > 0 and fig["raw_rows"] >= fig["expected"]
    assert (fig["lost"], fig["extra"], fig["doubled"]) == (0, 0, 0)
    assert fig["readings_equal_clean"] and fig["billing_equal_clean"] and fig["charges"] > 0
