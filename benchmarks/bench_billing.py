"""One billing day end to end: read Parquet → VEE → tariff engine → settlement → write.

Default: 1M meters × 96 intervals (97 register readings each, 97M rows), target ≤ 10 s wall;
``--quick``: 50k meters. Prints where the time goes, and the VEE kernel against the obvious
alternatives measured in the same run (pandas groupby-diff, which does only the differencing; and the
plain-Python reference on a sample).

``--cluster``: the same day billed single-process and over a local Dask cluster of 1 and 2 worker
processes (default 200k meters, ``--quick`` 20k): speed-up against single-process, and where it stops.

``--sizes 250k,1M,4M``: each size's lake built GEN_BLOCK meters at a time, then its two nights billed in a
child process: wall, CPU time, the process's peak RSS and the load average per size, and the time per
meter at the largest size against the smallest (linearity). Targets: 1M ≤ 6 s wall, peak RSS ≤ 1.5 GB
at 1M and 4M, linear within 10 %.

Then the heating comparison: the month-end night (two-part heating bills issued, season heat from
the carried state) of the fleet, and of the same fleet with ``--heat`` (default 0.1) of it added as
heat meters: wall and CPU time must grow by less than that share (and, for reference, the same fleet
with as many ordinary meters added).

``python -m benchmarks billing [--quick] [--meters N] [--heat SHARE] [--cluster] [--sizes LIST] [--block-size N]``
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import billing  # noqa: F401  (before pyarrow: Arrow's allocator as `meters bill` has it, meters/memory.py)
import numpy as np
import pyarrow as pa

DAY = dt.date(2026, 11, 23)
TARIFFS = ["cn-bj-res-elec", "cn-gd-res-elec", "cn-sh-res-elec-tou", "cn-bj-res-water", "cn-bj-res-gas"]


GEN_BLOCK = 50_000   # meters generated and written at a time: the lake's generation is memory-bounded


def _readings_block(ids, ts, regs, received_ms):
    from meters.schemas import UTC_MS, UTC_S

    n, k = regs.shape
    return pa.table({"meter_id": np.repeat(ids, k), "ts": pa.array(np.tile(ts, n)).cast(UTC_S),
                     "register_milli": regs.ravel(),
                     "quantity_milli": pa.nulls(n * k, pa.int64()), "interval_s": pa.nulls(n * k, pa.int32()),
                     "quality": pa.nulls(n * k, pa.string()), "sender": pa.nulls(n * k, pa.string()),
                     "received_at": pa.array(np.full(n * k, received_ms)).cast(UTC_MS)})


HEAT_TARIFFS = ["cn-bj-res-heat-area", "cn-bj-res-heat-metered"]


def build_lake(root: Path, n: int, seed: int = 1, days: int = 1, heat: int = 0, first: dt.date = DAY,
               more: int = 0):
    """A lake with ``n`` prepaid/postpaid accounts (plus ``more`` such accounts and ``heat`` heat
    accounts on Beijing's heating tariffs) and ``days`` compacted readings partitions from ``first``
    (sorted by meter and time, as `meters compact` writes them), generated and written GEN_BLOCK meters
    at a time (staged writers: one file per day). The ``n`` accounts and their readings are the same
    whatever ``more`` and ``heat`` add (those draw from their own generators): a comparison bills the
    same fleet with and without them."""
    from meters.lake import init_lake
    from meters.schemas import ACCOUNTS, CONTACTS, METERS

    lake = init_lake(root)
    rng = np.random.default_rng(seed)
    groups = [(n, rng, np.array(TARIFFS, dtype=object)), (more, np.random.default_rng([seed, 1]), np.array(TARIFFS, dtype=object)),
              (heat, np.random.default_rng([seed, 2]), np.array(HEAT_TARIFFS, dtype=object))]
    ids = np.concatenate([110100000000 + np.arange(n + more, dtype=np.int64), 500000000000 + np.arange(heat, dtype=np.int64)])
    tariff, area, prepaid, balance, topup = [], [], [], [], []
    for k, (count, g, names) in enumerate(groups):
        tariff.append(names[g.integers(0, len(names), count)])
        a = g.integers(4000, 14000, count)
        area.append(a if k == 2 else np.zeros(count, np.int64))
        prepaid.append(g.random(count) < 0.7)
        b = g.integers(0, 20000, count)
        balance.append(a * 40 if k == 2 else b)     # heat accounts hold the season paid ahead (40 CNY/m²)
        topup.append(g.random(count) >= 0.2)
    tariff, area, prepaid, balance, topup = map(np.concatenate, (tariff, area, prepaid, balance, topup))
    n = n + more + heat
    kinds = np.array(["electricity", "water", "gas", "heat"], dtype=object)
    code = np.select([np.char.find(tariff.astype(str), w) >= 0 for w in ("water", "gas", "heat")], [1, 2, 3], 0)
    utility = kinds[code]
    acc_ids = pa.array(ids.astype(str))
    lake.replace_partition("meters", None, pa.table({
        "meter_id": ids, "external_id": pa.nulls(n, pa.string()), "utility": utility,
        "unit": np.where((code == 0) | (code == 3), "kWh", "m3"), "concentrator": pa.nulls(n, pa.string()),
        "region": pa.nulls(n, pa.string()), "register_max": np.full(n, 1e6)}, schema=METERS))
    from billing.money_io import money
    lake.replace_partition("accounts", None, pa.table({
        "account_id": acc_ids, "meter_id": ids, "tariff_id": tariff,
        "mode": np.where(prepaid, "prepaid", "postpaid"),
        "billing_day": np.ones(n, np.int8),
        "balance": money(balance),
        "warn_1": money(np.full(n, 3000)), "warn_2": money(np.full(n, 2000)),
        "topup_below": pa.array(money(np.full(n, 2000)), mask=topup),
        "topup_amount": money(np.full(n, 10000)),
        "premise_area": pa.array(money(area), mask=area == 0).cast(ACCOUNTS.field("premise_area").type)},
        schema=ACCOUNTS))
    lake.replace_partition("contacts", None, pa.table({"account_id": acc_ids, "recipient": acc_ids,
                                                       "relation": pa.array(["self"]).take(np.zeros(n, np.int64)),
                                                       "language": pa.nulls(n, pa.string())}, schema=CONTACTS))
    per_slot = np.array([150, 8, 8, 400], np.int64)[code]
    from ingest.compact import COMPACT_PARQUET
    from meters.readings import EDGE_ROW_GROUP, edge_name, edge_rows

    writers, edge_writers = [], []     # each day's compacted file and its edge (as `meters compact` writes them)
    for d in range(days + 1):      # the days, and the next day's opening reading
        day = first + dt.timedelta(days=d)
        # written as `meters compact` writes (its encodings and level, statistics on every column: a
        # night skips the interval columns they show all null)
        w = lake.staged_writer("readings", day.isoformat(), file_name="compact-bench.parquet", **COMPACT_PARQUET)
        edge_writers.append(lake.staged_writer("readings", day.isoformat(), file_name=edge_name("compact-bench.parquet"),
                                        row_group_size=EDGE_ROW_GROUP))
        start = int(lake.day_bounds_utc(day)[0].timestamp())
        k = 96 if d < days else 1
        # readings k = 0..95 of the day (k = 0 at local midnight closes the previous day)
        writers.append((w, start + 900 * np.arange(k, dtype=np.int64), (start + 900 * k + 3600) * 1000))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(writers)) as pool:   # each day's file encoded in its own thread
        pending = []
        edges = np.cumsum([0] + [count for count, _, _ in groups])   # each group's meters in blocks of their own
        for b0, b1 in [(b, min(e1, b + GEN_BLOCK)) for e0, e1 in zip(edges[:-1], edges[1:])
                       for b in range(int(e0), int(e1), GEN_BLOCK)]:
            g = np.random.default_rng([seed, b0])
            reg = g.integers(0, 10**8, b1 - b0).astype(np.int64)
            mean = per_slot[b0:b1, None]
            tables = []
            for w, ts, received in writers:
                k = len(ts)
                regs = np.empty((b1 - b0, k), np.int64)
                regs[:, 0] = reg
                if k > 1:   # uniform steps around the utility's mean (fast; the values only need to be plausible)
                    np.cumsum(g.integers(0, 2 * mean + 1, (b1 - b0, k - 1)), axis=1, out=regs[:, 1:])
                    regs[:, 1:] += reg[:, None]
                reg = regs[:, -1] + g.integers(0, 2 * mean[:, 0] + 1)
                tables.append(_readings_block(ids[b0:b1], ts, regs, received))
            for f in pending:     # the previous block written (one block in flight: memory-bounded)
                f.result()
            pending = [pool.submit(w.write, t) for (w, _, _), t in zip(writers, tables)]
            for (w, _, _), e, t in zip(writers, edge_writers, tables):
                e.write(edge_rows(lake, w.dir.name.split("=")[1], t))
            del tables
        for f in pending:
            f.result()
    for w, _, _ in writers:
        w.finish()
    for e in edge_writers:
        e.finish()
    return lake


def vee_comparison(lake, n_sample: int):
    """VEE numba vs pandas groupby-diff (differencing only) vs the plain-Python reference."""
    import pandas as pd

    from billing import vee
    from billing.inputs import READ_COLUMNS, vee_inputs
    from meters.readings import read_window
    from reference.vee import vee_reference

    start, end = lake.day_bounds_utc(DAY)
    parts = read_window(lake, start, end + dt.timedelta(seconds=1), READ_COLUMNS)
    ids = np.unique(np.concatenate([t.column("meter_id").to_numpy() for t in parts]))
    n = len(ids)
    main, extra, _ = vee_inputs(parts, ids, int(start.timestamp()), 900)
    offsets, pos, reg, qty, qlen, est = main
    state = (np.full(n, vee.NO_BASE), np.zeros(n, np.int64), np.full(n, -1.0), np.zeros(n),
             np.full(n, 10**9, np.int64), np.full(n, 6250.0), np.zeros(n, np.int64))
    vee.vee_kernel_parts(*main, *extra, *state, 96)
    t0 = time.perf_counter()
    vee.vee_kernel_parts(*main, *extra, *state, 96)
    t_numba = time.perf_counter() - t0
    df = pd.DataFrame({"meter_id": np.repeat(ids, np.diff(offsets)), "reg": reg})
    t0 = time.perf_counter()
    df.groupby("meter_id", sort=False)["reg"].diff()
    t_pandas = time.perf_counter() - t0
    k = min(n_sample, n)
    merged = vee.merge_parts(*(a[: k + 1] if i == 0 else a for i, a in enumerate(main)),
                             *(a[: k + 1] if i == 0 else a for i, a in enumerate(extra)))
    t0 = time.perf_counter()
    vee_reference(*merged, *(a[:k] for a in state), 96)
    t_ref = (time.perf_counter() - t0) * n / k
    print(f"VEE over {n:,} meters ({len(pos):,} readings): numba {t_numba:.2f} s; pandas groupby-diff "
          f"(differencing only) {t_pandas:.2f} s ({t_pandas / t_numba:.1f}× numba); plain-Python reference "
          f"{t_ref:.0f} s extrapolated from {k:,} meters ({t_ref / t_numba:.0f}× numba)")


def cluster_comparison(root: Path, n: int, workers=(1, 2)):
    """Bill one day single-process, then over LocalClusters of 1, 2 … workers (started before the
    clock runs: the scheduler's startup is not billing). Every run re-runs the same settled day, so
    each does the same work; the money must be identical."""
    import os

    from dask.distributed import LocalCluster

    from billing.batch import bill_day

    lake = build_lake(root / "cluster", n, days=1)
    bill_day(lake, DAY)                                   # first run (and numba caches warm)
    rows = []

    def best(cluster=None, runs=2):
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            [res] = bill_day(lake, DAY, cluster=cluster)
            out.append((time.perf_counter() - t0, res))
        return min(out, key=lambda x: x[0])
    wall, ref = best()
    rows.append(("single process", wall, ref))
    for w in workers:
        with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None) as c:
            bill_day(lake, DAY, cluster=c.scheduler_address)       # workers import and load the kernels
            wall, res = best(c.scheduler_address)
            rows.append((f"Dask, {w} worker process{'es' if w > 1 else ''}", wall, res))
    base = rows[0][1]
    print(f"one billing day of {n:,} meters on {os.cpu_count()} cores, best of 2 runs (load average "
          f"{os.getloadavg()[0]:.1f}):")
    for name, wall, res in rows:
        if res.money_cents != ref.money_cents:
            raise SystemExit(f"{name}: money {res.money_cents} != single process {ref.money_cents}")
        shards = {k: round(v, 2) for k, v in res.timings.items() if " (shards)" not in k}
        cpu = sum(v for k, v in res.timings.items() if " (shards)" in k)
        if cpu:
            shards["shard tasks' own time, summed"] = round(cpu, 2)
        print(f"  {name:<26} {wall:6.2f} s  speed-up {base / wall:4.2f}×  {shards}")
    print("  (money identical in every run. The single process already uses both cores (numba prange, "
          "Arrow threads): on one machine the cluster adds task start-up, pickling the shards' smaller "
          "tables to the driver, and worker processes competing for the same cores)")


HEAT_NIGHT = dt.date(2026, 11, 30)   # a month end in Beijing's heating season: the two-part bills


def _timed_heating() -> dict:
    """Wrap billing/heating.py's nightly functions to add up their CPU and wall seconds."""
    from billing import heating

    spent = {"cpu": 0.0, "wall": 0.0}

    def timed(f):
        def g(*a, **k):
            c0, t0 = time.process_time(), time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                spent["cpu"] += time.process_time() - c0
                spent["wall"] += time.perf_counter() - t0
        return g
    for name in ("split", "stand_ins", "carried_heat", "day_heating", "carry", "line_rows", "add_bills"):
        setattr(heating, name, timed(getattr(heating, name)))
    heating.HeatAccounts.of = classmethod(timed(heating.HeatAccounts.of.__func__))
    return spent


def heat_comparison(root: Path, n: int, share: float, rounds: int = 5):
    """The month-end night (two-part heating bills issued) of ``n`` meters, and of the same fleet with
    ``share`` × n heat meters added (area and two-part Beijing heating), each with carried state,
    re-run alternately (order rotated every round), best of ``rounds``: wall and CPU time must grow by
    less than the added share of the fleet. Also the CPU of the heating code itself (billing/heating.py),
    and, for reference, the same fleet with as many ordinary (electricity, water, gas) meters added:
    what a bigger fleet costs whatever its meters."""
    import os

    from billing.batch import bill_day

    heat = int(n * share)
    first = HEAT_NIGHT - dt.timedelta(days=1)
    lakes = {"base": build_lake(root / "heat-base", n, days=2, first=first),
             "heat": build_lake(root / "heat", n, days=2, heat=heat, first=first),
             "more": build_lake(root / "heat-more", n, days=2, more=heat, first=first)}
    for lk in lakes.values():
        bill_day(lk, HEAT_NIGHT - dt.timedelta(days=1))
    spent = _timed_heating()
    names = list(lakes)
    walls: dict = {k: [] for k in names}
    cpus: dict = {k: [] for k in names}
    own = []
    for r in range(rounds):
        for name in names[r % 3:] + names[:r % 3]:
            spent.update(cpu=0.0, wall=0.0)
            t0, c0 = time.perf_counter(), time.process_time()
            bill_day(lakes[name], HEAT_NIGHT)
            walls[name].append(time.perf_counter() - t0)
            cpus[name].append(time.process_time() - c0)
            if name == "heat":
                own.append(spent["cpu"])
    b, h = min(walls["base"]), min(walls["heat"])
    cb, ch, cm = min(cpus["base"]), min(cpus["heat"]), min(cpus["more"])
    ok = "less" if ch / cb - 1 < heat / n else "NOT less"
    print(f"heat meters: {heat:,} added (+{heat / n:.0%} of the fleet), the month-end night {HEAT_NIGHT} "
          f"(two-part bills) with carried state, best of {rounds} rotated:")
    print(f"  CPU {ch:.2f} s vs {cb:.2f} s without (+{ch / cb - 1:.1%}): {ok} than their share of the fleet "
          f"({heat / n:.0%}); wall {h:.2f} s vs {b:.2f} s (+{h / b - 1:.1%}); load average {os.getloadavg()[0]:.1f}")
    print(f"  of which the heating code (billing/heating.py): {min(own):.3f} s CPU ({min(own) / ch:.2%} of the night)")
    print(f"  for reference, {heat:,} ordinary meters added instead: CPU {cm:.2f} s (+{cm / cb - 1:.1%}); "
          f"CPU of every run: " + "; ".join(f"{k} " + " ".join(f"{c:.2f}" for c in cpus[k]) for k in names))


def _size(text: str) -> int:
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        raise SystemExit(f"--sizes: {text!r} is not a number of meters (e.g. 250k, 1M, 4M)") from None


def measure(lake_root: str, block_size: int | None):
    """In a fresh process: bill the lake's two nights (first, then with carried state) after warming
    the numba caches on a tiny lake; print one JSON line: wall, CPU time (and its kernel part, page faults), the stages, load average
    per night, and the process's peak RSS (:func:`peak_rss`)."""
    import json
    import os
    import resource

    from billing.batch import bill_day
    from meters.lake import Lake

    kw = {} if block_size is None else {"block_size": block_size}
    with tempfile.TemporaryDirectory() as tmp:
        warm = build_lake(Path(tmp) / "warm", 200, days=2)
        bill_day(warm, DAY, **kw)
        bill_day(warm, DAY + dt.timedelta(days=1), **kw)
    lake = Lake(lake_root)
    nights = []
    for day in (DAY, DAY + dt.timedelta(days=1)):
        load = os.getloadavg()[0]
        c0, t0, r0 = time.process_time(), time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        res = bill_day(lake, day, **kw)[0]
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        nights.append({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                       "sys": r1.ru_stime - r0.ru_stime, "faults": r1.ru_minflt - r0.ru_minflt, "load": load,
                       "load_after": os.getloadavg()[0], "accounts": res.accounts, "money": res.money_cents,
                       "timings": {k: round(v, 2) for k, v in res.timings.items()}})
    print(json.dumps({"nights": nights, "rss_peak": peak_rss()}))


def peak_rss() -> int:
    """This process's peak resident memory in bytes: ``VmHWM`` where Linux has it. Not ``ru_maxrss``:
    Linux carries it across ``execve``, so a child spawned by a big process (the lake's builder, 1.7 GB
    after building 4M meters) reports at least its parent's resident memory at the spawn."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def scaling(sizes: list[int], block_size: int | None, keep: str | None):
    """Each size: a lake built (memory-bounded), then billed in a child process (its own peak RSS);
    wall, CPU, peak RSS and load average per size, and how linear the time is."""
    import json
    import os
    import subprocess
    import sys

    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench-billing-sizes-"))
    rows = []
    try:
        for n in sizes:
            root = base / f"lake-{n}"
            t0 = time.perf_counter()
            build_lake(root, n, days=2)
            print(f"{n:,} meters: lake of 2 days × 96 readings built in {time.perf_counter() - t0:.1f} s", flush=True)
            cmd = [sys.executable, "-m", "benchmarks.bench_billing", "--measure", str(root)]
            if block_size is not None:
                cmd += ["--block-size", str(block_size)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(f"billing {n:,} meters failed:\n{r.stderr[-2000:]}")
            got = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append((n, got))
            for name, night in zip(("first night", "carried state"), got["nights"]):
                print(f"  {name:<14} wall {night['wall']:6.2f} s  CPU {night['cpu']:6.2f} s  "
                      f"({night['cpu'] / n * 1e6:.1f} CPU µs/meter)  load average {night['load']:.1f}→"
                      f"{night['load_after']:.1f}  {night['timings']}", flush=True)
            print(f"  peak RSS {got['rss_peak'] / 2**30:.2f} GiB (the billing process, both nights)", flush=True)
            if not keep:
                import shutil
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if not keep:
            import shutil
            shutil.rmtree(base, ignore_errors=True)
    (n0, a), (n1, b) = rows[0], rows[-1]
    print(f"\nlinearity {n0:,} → {n1:,} meters (time per meter at {n1:,} ÷ at {n0:,}; 1.00 = linear, "
          f"target within 10 %):")
    for i, name in enumerate(("first night", "carried state")):
        wa, wb = a["nights"][i]["wall"] / n0, b["nights"][i]["wall"] / n1
        ca, cb = a["nights"][i]["cpu"] / n0, b["nights"][i]["cpu"] / n1
        print(f"  {name:<14} wall {wb / wa:.2f}×  CPU {cb / ca:.2f}×")
    print(f"  peak RSS {a['rss_peak'] / 2**30:.2f} → {b['rss_peak'] / 2**30:.2f} GiB "
          f"(target ≤ 1.5 GB at 1M and 4M); load average now {os.getloadavg()[0]:.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench_billing")
    ap.add_argument("--quick", action="store_true", help="50k meters instead of 1M")
    ap.add_argument("--meters", type=int, help="number of meters")
    ap.add_argument("--keep", help="build the lake here and keep it")
    ap.add_argument("--heat", type=float, default=0.1, metavar="SHARE",
                    help="the month-end night with heat meters added (SHARE of the fleet, default 0.1; 0: skip), "
                         "compared with the same fleet without")
    ap.add_argument("--cluster", action="store_true",
                    help="single process vs Dask LocalCluster of 1 and 2 workers (200k meters, --quick 20k)")
    ap.add_argument("--sizes", help="bill cities of these sizes, each in its own process (e.g. 250k,1M,4M): "
                                    "wall, CPU, peak RSS, load average, linearity")
    ap.add_argument("--block-size", type=int, help="accounts billed at a time (default: meters bill's)")
    ap.add_argument("--measure", help=argparse.SUPPRESS)   # the child process of --sizes
    a = ap.parse_args(argv)
    if a.measure:
        measure(a.measure, a.block_size)
        return
    if a.sizes:
        scaling([_size(x) for x in a.sizes.split(",")], a.block_size, a.keep)
        return
    if a.cluster:
        root = Path(tempfile.mkdtemp(prefix="bench-billing-cluster-"))
        try:
            cluster_comparison(root, a.meters or (20_000 if a.quick else 200_000))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    n = a.meters or (50_000 if a.quick else 1_000_000)
    from billing.batch import bill_day
    from billing.money_io import fmt

    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench-billing-"))
    try:
        t0 = time.perf_counter()
        lake = build_lake(root / "lake", n, days=2)
        print(f"built a lake of {n:,} meters × 2 days of 96 readings in {time.perf_counter() - t0:.1f} s")
        # warm the numba caches on a tiny lake so compile time is not counted
        warm = build_lake(root / "warm", 200, days=2)
        bill_day(warm, DAY)
        bill_day(warm, DAY + dt.timedelta(days=1))
        for day, what in ((DAY, "first night (no carried state)"),
                          (DAY + dt.timedelta(days=1), "a night with carried state")):
            t0 = time.perf_counter()
            [res] = bill_day(lake, day, **({} if a.block_size is None else {"block_size": a.block_size}))
            wall = time.perf_counter() - t0
            print(f"billing day {day}, {what}: {n:,} accounts, {res.readings:,} readings, "
                  f"{res.intervals:,} intervals, money {fmt(res.money_cents)}, alerts {dict(res.alerts)}")
            print(f"  wall {wall:.2f} s (target ≤ 10 s at 1M meters): "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in res.timings.items()))
            print(f"  throughput {res.intervals / wall / 1e6:.1f} M intervals/s")
        if a.heat > 0:
            heat_comparison(root, n, a.heat)
        vee_comparison(lake, 2000)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
