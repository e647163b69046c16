"""The billing night in blocks of accounts: each block goes read → VEE → price → settle → tables
(:func:`billing.day.compute`; the next block read meanwhile, :func:`read_ahead`), and its tables
are appended to the day's output files at once (:class:`DayWriter`), so the night's memory is bounded
by the block size, not the city.

The files are staged: written under names no reader sees until :meth:`DayWriter.finish` switches the
outputs in and :meth:`DayWriter.commit` switches the carried state in last (the commit, as for a
whole-city run: a crash before it leaves the previous state intact). Rows come out in the whole
city's order: blocks are contiguous in meter order; the alerts, grouped by kind, are spilled to disk
section by section as the blocks produce them (:class:`billing.alerts.DaySpill`) and streamed into
the day's file at the end; heating's rows, which follow everyone's engine rows, are kept for the
end (they are few).
"""
from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meters.lake import Lake

from . import alerts, ledger, outputs, state
from .config import BLOCK_SIZE, check_block_size  # noqa: F401 (the night's setting)
from .day import DayOutput

STATE_ROW_GROUP = 16_384   # the carried state's row groups: a block reads only its own next night


def read_ahead(read, blocks):
    """``(block, read(block))`` for block after block, the next block taken from ``blocks`` and read in
    a background thread while the caller works on this one (at most one read ahead: Parquet decoding
    releases the GIL). An error taking or reading a block is raised where that block is taken, as if
    read there; closing early (an error of the caller: close it, e.g. with :func:`contextlib.closing`)
    waits for the read in flight and drops it."""
    def take(it):
        block = next(it, None)
        return None if block is None else (block, read(block))
    pool = ThreadPoolExecutor(1, thread_name_prefix="billing-reader")
    try:
        it = iter(blocks)
        pending = pool.submit(take, it)
        while (got := pending.result()) is not None:
            pending = pool.submit(take, it)
            yield got
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class DayWriter:
    """The day's output files, appended to block by block in two background threads — the intervals
    (96 rows an account, half the night's encoding) in one, every other table in the other — while
    the next block is computed (at most one block waits in each), then switched in."""

    def __init__(self, lake: Lake, day: dt.date):
        self.lake, self.day = lake, day
        d, m = day.isoformat(), ledger.month(day)
        stats = outputs.STATS
        self._staged = {name: lake.staged_writer(name, d, stats=stats[name], **opts) for name, opts in (
            ("charges", {}), ("charge_lines", {}),
            ("billing_state", {"row_group_size": STATE_ROW_GROUP}))}
        self._named = {"ledger": lake.staged_writer("ledger", m, file_name=ledger.billing_file_name(day),
                                                    stats=stats["ledger"]),
                       "bills": lake.staged_writer("bills", m, file_name=f"bills-{d}.parquet", stats=stats["bills"]),
                       "bill_lines": lake.staged_writer("bill_lines", m, file_name=f"bills-{d}.parquet",
                                                        stats=stats["bill_lines"])}
        self._intervals = None          # this process's intervals file (blocks computed here)
        self.interval_files: list[str] = []   # … and those Dask shards wrote
        self._alerts = alerts.DaySpill(lake, day)   # (on disk until the end, in section order)
        self._tails: dict[str, list[pa.Table]] = {k: [] for k in DayOutput.TAILS}
        self.summary = DayOutput()
        self.kinds: dict[str, int] = {}
        self.rows = {"charges": 0, "ledger": 0, "alerts": 0}
        self.waited = 0.0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="billing-writer")
        self._ipool = ThreadPoolExecutor(1, thread_name_prefix="billing-intervals")
        self._pending: list[Future] = []

    # -- blocks ---------------------------------------------------------------------------------
    def add(self, part: DayOutput) -> None:
        """Take one block's output (in meter order): counts now, tables written in the background."""
        self.summary.counts_of(part)
        self.interval_files += part.intervals_files
        self._count_kinds(part.alerts)
        for head, tail in DayOutput.TAILS.items():
            if getattr(part, tail) is not None:
                self._tails[head].append(getattr(part, tail))
        self._wait()
        self._pending = [self._pool.submit(self._write, part)]
        if part.interval_rows is not None:
            self._pending.append(self._ipool.submit(self._write_intervals, part.interval_rows))

    def _wait(self) -> None:
        """Until both writers are done with the block before (both: an abort then removes files no
        thread still writes); the first one's error raised."""
        t0 = time.perf_counter()
        pending, self._pending = self._pending, []
        errors = []
        for f in pending:
            try:
                f.result()
            except BaseException as e:
                errors.append(e)
        self.waited += time.perf_counter() - t0
        if errors:
            raise errors[0]

    def _write_intervals(self, rows: outputs.IntervalRows) -> None:
        if self._intervals is None:
            self._intervals = self.lake.staged_writer("intervals", self.day.isoformat(), encoded=True,
                                                      stats=outputs.INTERVAL_STATS, **outputs.INTERVAL_OPTIONS)
        self._intervals.write(rows.table())

    def _write(self, part: DayOutput) -> None:
        for name in ("charges", "charge_lines"):
            self._staged[name].write(getattr(part, name))
        self._staged["billing_state"].write(part.state)
        for name in ("ledger", "bills", "bill_lines"):
            self._named[name].write(getattr(part, name))
        self._alerts.add(part.alerts, part.alert_section)
        self.rows["charges"] += part.charges.num_rows
        self.rows["ledger"] += part.ledger.num_rows

    # -- the end --------------------------------------------------------------------------------
    def add_alerts(self, table: pa.Table) -> None:
        """Alerts of the whole day (after every block's: e.g. the estimated day's)."""
        self._count_kinds(table)
        self._wait()
        self._alerts.add(table, np.full(table.num_rows, len(alerts.SECTIONS), np.int8))

    def _count_kinds(self, table: pa.Table) -> None:
        if table.num_rows:
            for vc in pc.value_counts(table.column("kind")).to_pylist():
                self.kinds[vc["values"]] = self.kinds.get(vc["values"], 0) + vc["counts"]

    def finish(self) -> None:
        """Write what is kept for the end, close the files and switch every output but the state in."""
        self._wait()
        for head, tails in self._tails.items():
            w = self._staged.get(head) or self._named[head]
            for t in tails:
                w.write(t)
        d = self.day.isoformat()
        if self._intervals is None and not self.interval_files:
            self._intervals = self.lake.staged_writer("intervals", d, encoded=True, stats=outputs.INTERVAL_STATS,
                                                      **outputs.INTERVAL_OPTIONS)
        for name in ("intervals", "charges", "charge_lines", "billing_state"):
            self.lake.stage(name, d)     # the current files pinned: the new ones stay invisible until switched
        names = self.interval_files + ([self._intervals.finish()] if self._intervals is not None else [])
        self._intervals = None
        self.lake.switch("intervals", d, names)
        for name in ("charges", "charge_lines"):
            self.lake.switch(name, d, [self._staged.pop(name).finish()])
        for w in self._named.values():
            w.finish()
        self._named = {}
        # the day's alerts streamed from the spill in the whole city's order (by section, then block),
        # counted in the order the kinds first appear, as one block counts them
        self.kinds = self._alerts.write()
        self.rows["alerts"] = sum(self.kinds.values())

    def commit(self) -> None:
        """Switch the carried state in: the commit."""
        state.commit(self.lake, self.day, staged=self._staged["billing_state"])
        self._staged.pop("billing_state")
        self._pool.shutdown()
        self._ipool.shutdown()

    def abort(self) -> None:
        """Drop every file not switched in (a night refused or failed before its commit)."""
        try:
            self._wait()
        except BaseException:
            pass
        self._pool.shutdown()
        self._ipool.shutdown()
        for w in [*self._staged.values(), *self._named.values(), *([self._intervals] if self._intervals else [])]:
            w.abort()
        self._alerts.abort()
        self._staged, self._named, self._intervals = {}, {}, None
