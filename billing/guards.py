"""What a billing run checks before it moves money: the day has ended, its readings cover enough
meters, the chain of carried states is whole, the registry has no duplicates.

Every refusal is a :mod:`meters.errors` error with its exit code: :class:`DataNotReady` (4) for a day
not over or too few readings, :class:`LakeDamaged` (6, the file named) for a broken chain or a
registry with duplicate ids. Nothing is written before these checks pass.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meters.errors import DataNotReady, LakeDamaged, MetersError
from meters.lake import Lake, atomic_write_bytes

from .ledger import billing_file_name
from .state import settled_days

START_FILE = "billing-start.json"
INFLIGHT = ".billing-inflight"     # names the day whose run wrote outputs but did not commit


def interrupted(lake: Lake) -> dt.date | None:
    """The day whose run was interrupted before its commit, if any."""
    p = lake.root / INFLIGHT
    return dt.date.fromisoformat(p.read_text().strip()) if p.exists() else None


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def yesterday(lake: Lake, now: dt.datetime | None = None) -> dt.date:
    """The last lake-local day that has ended."""
    return (now or now_utc()).astimezone(lake.tz).date() - dt.timedelta(days=1)


@contextlib.contextmanager
def damage_refused(lake: Lake):
    """A Parquet file of the lake that cannot be read becomes :class:`LakeDamaged` naming it (one line,
    no traceback) instead of an unexpected error."""
    try:
        yield
    except pa.ArrowInvalid as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if str(lake.root) not in msg:
            raise
        raise LakeDamaged(f"a lake file cannot be read: {msg} (`meters check` verifies the lake)") from None


def check_ended(lake: Lake, days: list[dt.date], now: dt.datetime | None = None) -> None:
    """Refuse (DataNotReady) when any of ``days`` has not ended in the lake's time zone."""
    last = yesterday(lake, now)
    late = [d for d in days if d > last]
    if late:
        raise DataNotReady(f"day {late[0]} has not ended in {lake.timezone_name} (last ended day {last}); "
                           f"nothing billed")


def coverage_error(day: dt.date, covered: int, accounts: int, minimum: float) -> DataNotReady:
    share = covered / accounts if accounts else 1.0
    return DataNotReady(f"readings of {day} cover {covered} of {accounts} meters ({share:.1%}, minimum "
                        f"{minimum:.0%}); day not billed (wait for the data, or bill on estimates with "
                        f"--allow-estimates)")


# -- the billing start and the chain of carried states ---------------------------------------------
def billed_days(lake: Lake) -> list[dt.date]:
    """Days a billing run has written (their ``billing-D`` ledger file), committed or not."""
    out = set()
    for f in lake.table_dir("ledger").glob("month=*/billing-*.parquet"):
        try:
            out.add(dt.date.fromisoformat(f.stem[len("billing-"):]))
        except ValueError:
            continue
    return sorted(out)


def stored_start(lake: Lake) -> dt.date | None:
    """The billing start set by ``meters bill reset`` (None: not set)."""
    p = lake.root / START_FILE
    if not p.exists():
        return None
    try:
        return dt.date.fromisoformat(json.loads(p.read_text())["start"])
    except (ValueError, KeyError, TypeError):
        raise LakeDamaged(f"{p} is damaged (expected {{\"start\": \"YYYY-MM-DD\"}})") from None


def billing_start(lake: Lake) -> dt.date | None:
    """The lake's first billing day: the one ``meters bill reset`` set, else the first day billed."""
    s = stored_start(lake)
    if s is not None:
        return s
    days = settled_days(lake) + billed_days(lake)
    return min(days) if days else None


def set_start(lake: Lake, day: dt.date, who: str) -> None:
    atomic_write_bytes(lake.root / START_FILE, json.dumps(
        {"start": day.isoformat(), "set_by": who, "set_at": now_utc().isoformat(timespec="seconds")}).encode())


def check_chain(lake: Lake, first: dt.date, crashed: dt.date | None) -> None:
    """Day ``first`` needs the carried state of the day before, unless it is the billing start.
    A state that should be there (a later day, or that day's ledger file, was written) and is not:
    :class:`LakeDamaged`; a day never billed: a plain error suggesting the range to bill."""
    settled = settled_days(lake)
    start = billing_start(lake)
    if start is None:
        return
    if first < start:
        raise MetersError(f"billing of this lake starts on {start}; cannot bill {first} "
                          f"(`meters bill reset --before D` moves the start while no bill was issued)")
    prev = first - dt.timedelta(days=1)
    if first == start or prev in settled:
        return
    written = set(billed_days(lake)) | set(settled)
    later = [d for d in written if d > prev]
    if prev != crashed and (prev in written or later):
        path = lake.partition_dir("billing_state", prev.isoformat())
        raise LakeDamaged(f"{path}: the carried state of {prev} is missing, but the lake was billed "
                          f"{'on that day' if prev in written else 'after it'}; restore it from a backup "
                          f"(billing {first} would start its accounts afresh)")
    last = max(settled) if settled else None
    suggest = last + dt.timedelta(days=1) if last else start
    raise MetersError(f"day {prev} is not settled (last settled day {last}); bill it first, "
                      f"or use --from {suggest} --to {first}")


# -- the registry -------------------------------------------------------------------------------------
def check_registry(lake: Lake, acc: pa.Table) -> None:
    """Refuse (LakeDamaged, the files named) accounts whose ids or meters appear twice."""
    for col, what in (("account_id", "account id"), ("meter_id", "meter")):
        c = acc.column(col)
        if increasing(c) or pc.count_distinct(c).as_py() == acc.num_rows:
            continue
        vc = pc.value_counts(c)
        dup = vc.filter(pc.greater(vc.field("counts"), 1))[0]["values"].as_py()
        files = [f.name for f in lake.current_files("accounts", None)
                 if pc.any(pc.equal(pq.read_table(f, columns=[col]).column(col), dup)).as_py()]
        raise LakeDamaged(f"{lake.table_dir('accounts')}: {what} {dup} appears more than once "
                          f"(in {', '.join(files)}); remove the stray file or restore the registry")


def increasing(c) -> bool:
    """Whether ``c`` is strictly increasing, so without a value twice (no nulls): a registry kept in
    id or meter order is checked in one pass instead of hashing every id — 3 ms against 0.2–0.8 s for
    a million account ids, on the night's main thread before its first block."""
    n = len(c)
    return n < 2 or bool(pc.all(pc.less(c.slice(0, n - 1), c.slice(1)), skip_nulls=False).as_py())


def covered_meters(parts, n: int) -> np.ndarray:
    """Accounts with at least one reading inside the day (on a grid slot ≥ 1, i.e. not only the
    previous day's closing reading), from the VEE kernel's CSR parts ``(offsets, pos, …)``."""
    out = np.zeros(n, bool)
    for offsets, pos, *_ in parts:
        has = offsets[1:] > offsets[:-1]
        last = np.where(has, offsets[1:] - 1, 0)
        out |= has & (pos[last] >= 0.5 if len(pos) else False)
    return out
