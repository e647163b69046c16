"""The billing night after pricing: CPU seconds per stage of a first night and of a month-end night
(bills, most alerts), and the night's alerts built column by column against the row-by-row original
(reference/alerts.py) on the same blocks in the same run (equal output checked).

Each stage's figure is the CPU time of the thread that ran it (the main thread; the block writer's
own threads for the writes); the process's CPU (every thread: Arrow's, numba's) is printed beside it,
with the load average. Default 1M meters; ``--quick`` 200k.

``python -m benchmarks night_outputs [--quick] [--meters N]``
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

FIRST = dt.date(2026, 11, 29)          # the first night; the next is a month end (postpaid bills)


def _timed(spent, mod, name, key=None):
    f = getattr(mod, name)

    def g(*a, **k):
        c0 = time.thread_time()
        try:
            return f(*a, **k)
        finally:
            spent[key or name] += time.thread_time() - c0
    setattr(mod, name, g)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench_night_outputs")
    ap.add_argument("--quick", action="store_true", help="200k meters instead of 1M")
    ap.add_argument("--meters", type=int, help="number of meters")
    a = ap.parse_args(argv)
    n = a.meters or (200_000 if a.quick else 1_000_000)

    from benchmarks.bench_billing import build_lake
    from billing import alerts, batch, day, ledger, night, outputs, state
    from reference.alerts import day_sections_rowwise

    spent: collections.Counter = collections.Counter()
    for mod, name, key in ((batch, "read_day", "read"), (day, "price_grid", "price"), (day, "_settle", "settle"),
                           (outputs, "bill_lines", None),
                           (night.DayWriter, "_write_intervals", "intervals (built and written, their thread)"),
                           (outputs, "charges_table", None), (outputs, "charge_lines", None),
                           (outputs, "bills_table", None), (ledger, "day_table", "ledger"),
                           (state, "to_table", "state table"), (night.DayWriter, "_write", "write (writer thread)"),
                           (night.DayWriter, "finish", "finish (alerts file, switch)"),
                           (night.DayWriter, "commit", "commit"), (alerts, "queue_day", "queue")):
        _timed(spent, mod, name, key)
    built = alerts.day_sections
    rowwise = {"cpu": 0.0, "wall": 0.0}

    def day_sections(acc, d, ts_end, s, quality, flag, recipients):
        c0 = time.thread_time()
        out = built(acc, d, ts_end, s, quality, flag, recipients)
        spent["alerts"] += time.thread_time() - c0
        c0, t0 = time.thread_time(), time.perf_counter()
        ref = day_sections_rowwise(acc, d, ts_end, s, quality, flag, recipients)
        rowwise["cpu"] += time.thread_time() - c0
        rowwise["wall"] += time.perf_counter() - t0
        if not (out[0].equals(ref[0]) and out[1].tolist() == ref[1].tolist()):
            raise SystemExit(f"{d}: the alerts differ from the row-by-row original")
        return out
    alerts.day_sections = day_sections

    root = Path(tempfile.mkdtemp(prefix="bench-night-outputs-"))
    try:
        t0 = time.perf_counter()
        lake = build_lake(root / "lake", n, days=2, first=FIRST)
        print(f"built a lake of {n:,} meters × 2 days in {time.perf_counter() - t0:.1f} s")
        warm = build_lake(root / "warm", 200, days=2, first=FIRST)
        for d in (FIRST, FIRST + dt.timedelta(days=1)):
            batch.bill_day(warm, d)
        for d, what in ((FIRST, "first night"), (FIRST + dt.timedelta(days=1), "month end (bills)")):
            spent.clear()
            rowwise.update(cpu=0.0, wall=0.0)
            load = os.getloadavg()[0]
            c0, t0 = time.process_time(), time.perf_counter()
            [res] = batch.bill_day(lake, d)
            wall, cpu = time.perf_counter() - t0 - rowwise["wall"], time.process_time() - c0 - rowwise["cpu"]
            print(f"{d} {what}: {n:,} accounts, {sum(res.alerts.values()):,} alerts, {res.bills:,} bills; "
                  f"wall {wall:.2f} s (the reference's time taken out), process CPU {cpu:.2f} s, "
                  f"load average {load:.1f}→{os.getloadavg()[0]:.1f}")
            print("  CPU s per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in spent.items()))
            print(f"  alerts: column by column {spent['alerts']:.2f} s CPU, row by row (reference/alerts.py, same "
                  f"blocks, equal output) {rowwise['cpu']:.2f} s: {rowwise['cpu'] / max(spent['alerts'], 1e-9):.1f}×")
    finally:
        alerts.day_sections = built
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
