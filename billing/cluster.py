"""Billing a day over a Dask cluster, beside the single-process path: the night's blocks (contiguous
meter ranges of at most ``--block-size`` accounts) are the tasks; each computes its block's day
(:func:`billing.day.compute`) and writes its intervals file (staged: invisible until the driver's
switch); the driver appends the rest to the day's files block by block, in meter order, and commits as
for one process (:mod:`billing.batch`, :mod:`billing.night`)."""
from __future__ import annotations

import datetime as dt
import time

import numpy as np

from meters.errors import MetersError
from meters.lake import Lake

from . import day as day_mod, outputs
from .accounts import Accounts, no_accounts
from .config import Config
from .inputs import DayReads, read_day
from .night import BLOCK_SIZE

SHARD_RETRIES = 3   # a shard task that raises (e.g. a transient read error) is run again by Dask


def client(spec: str):
    """``local:N`` (a local cluster of N worker processes) or ``tcp://HOST:PORT`` (a running scheduler
    whose workers see the lake at the same path) → (client, local cluster or None)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise MetersError("--cluster needs dask.distributed (pip install 'meters[cluster]')") from None
    if spec.startswith("local:"):
        n = spec[len("local:"):]
        if not n.isdigit() or not 1 <= int(n) <= 256:
            raise MetersError(f"--cluster {spec!r}: use local:N with N workers (1..256)")
        local = LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(local), local
    if spec.startswith("tcp://"):
        try:
            return Client(spec, timeout="10s"), None
        except OSError as e:
            raise MetersError(f"--cluster {spec}: cannot reach the Dask scheduler ({e})") from None
    raise MetersError(f"--cluster {spec!r}: use local:N or tcp://HOST:PORT")


def shards(lake: Lake, client, accounts=None, block_size: int = BLOCK_SIZE) -> list[tuple[int, int]]:
    """Contiguous meter ranges (lo, hi) of ``accounts`` (default the lake's): the night's blocks of at
    most ``block_size`` accounts, and at least two per worker."""
    accounts = lake.read("accounts", columns=["meter_id"]) if accounts is None else accounts
    meters = np.sort(accounts.column("meter_id").to_numpy())
    if len(meters) == 0:
        raise no_accounts(lake)
    workers = max(1, len(client.scheduler_info()["workers"]))
    n = max(min(len(meters), 2 * workers), -(-len(meters) // block_size))
    chunks = [c for c in np.array_split(meters, n) if len(c)]
    # contiguous, covering every meter id: each reading is read by one block (unknown meters counted once)
    his = [int(c[-1]) for c in chunks[:-1]] + [int(np.iinfo(np.int64).max)]
    los = [int(np.iinfo(np.int64).min)] + [h + 1 for h in his[:-1]]
    return list(zip(los, his))


def compute_day(lake: Lake, day: dt.date, cfg: Config, client, ranges: list[tuple[int, int]],
                run_id: str, stored, writer, timings: dict) -> None:
    """The day over the blocks ``ranges`` as Dask tasks (their intervals files written and staged),
    each block's output handed to ``writer`` (:class:`billing.night.DayWriter`) in meter order as
    it arrives; ``stored``: the day as the account store gave it (shipped to every task)."""
    outputs.stage_intervals(lake, day)      # shards write their intervals files
    futures = client.map(shard_day, [str(lake.root)] * len(ranges), [day] * len(ranges), [cfg] * len(ranges),
                         [lo for lo, _ in ranges], [hi for _, hi in ranges], [run_id] * len(ranges),
                         [stored] * len(ranges), pure=False, retries=SHARD_RETRIES)
    got = 0
    for f in futures:
        p = f.result()
        f.release()           # the driver keeps no block once written
        if p is None:
            continue
        got += 1
        for k, v in p.timings.items():
            timings[f"{k} (shards)"] = timings.get(f"{k} (shards)", 0.0) + v
        writer.add(p)
    if not got:
        raise no_accounts(lake)


def shard_day(lake_root: str, day: dt.date, cfg: Config, lo: int, hi: int, run_id: str, stored=None):
    """A Dask task: compute one day for the accounts whose meter is in ``lo..hi`` (None when empty).

    Pure: it only reads the lake (state of D−1, readings, payments, registry) and returns tables, so a
    retry — after an exception, or on another worker when its worker dies — gives the same output;
    only the driver writes and commits."""
    lake = Lake(lake_root)
    acc = Accounts(lake, cfg, (lo, hi), required=False, table=None if stored is None else stored.accounts)
    if acc.n == 0:
        return None
    timings: dict[str, float] = {}

    def lap(name, t0):
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        return time.perf_counter()
    t0 = time.perf_counter()
    reads = DayReads(lake, day, acc, stored)
    inputs = read_day(lake, day, acc, cfg.interval_s, stored, reads)
    lap("read", t0)
    out = day_mod.compute(inputs, acc, cfg, run_id, reads.recipients(acc), lap)
    # the biggest output is written here, in parallel with the other shards, not shipped to the
    # driver: invisible until the driver's switch (a retried task's orphan files are removed then)
    t0 = time.perf_counter()
    out.intervals_files = outputs.write_interval_piece(lake, day, out.interval_rows.table(), int(acc.meter_ids[0]))
    out.interval_rows = None
    lap("write", t0)
    out.timings = timings
    return out
