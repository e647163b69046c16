"""Accumulating decoded messages into Arrow tables, partitioned by lake-local day (pure, no I/O)."""
from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from meters.schemas import DEADLETTER, HEAT_READINGS, READINGS
from meters.wire import NULL_TEMP, NULL_VOLUME

from .decode import Decoded, safe_text

BUCKET_S = 900
# READINGS with the sender dictionary-encoded: a batch's few senders are written as codes, not hashed
# row by row (readers get strings: the lake's schema casts it back)
READINGS_DICT = READINGS.set(READINGS.get_field_index("sender"),
                             pa.field("sender", pa.dictionary(pa.int32(), pa.string())))  # every UTC-offset change of every zone falls on a multiple of 15 minutes


@lru_cache(maxsize=65536)
def _offset(tz: ZoneInfo, bucket: int) -> int:
    return int(dt.datetime.fromtimestamp(bucket * BUCKET_S, tz).utcoffset().total_seconds())


def local_day_numbers(ts: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """Lake-local calendar day of each Unix-second ``ts`` as days since 1970-01-01 (int64)."""
    ts = np.asarray(ts, np.int64)
    if len(ts) == 0:
        return ts.copy()
    b = ts // BUCKET_S
    lo, hi = int(b.min()), int(b.max())
    if hi - lo <= 20000:
        off = np.array([_offset(tz, x) for x in range(lo, hi + 1)], np.int64)
        if np.all(off == off[0]):  # no offset change in this range: one addition
            return (ts + int(off[0])) // 86400
        o = off[b - lo]
    else:
        u, inv = np.unique(b, return_inverse=True)
        o = np.array([_offset(tz, int(x)) for x in u], np.int64)[inv]
    return (ts + o) // 86400


def day_name(day_number: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day_number))).isoformat()


def split_by_day(table: pa.Table, day_numbers: np.ndarray) -> list[tuple[str, pa.Table]]:
    """Split rows into ``(YYYY-MM-DD, rows)`` groups, keeping arrival order within a day."""
    if table.num_rows == 0:
        return []
    first = day_numbers[0]
    if np.all(day_numbers == first):
        return [(day_name(first), table)]
    order = np.argsort(day_numbers, kind="stable")
    sorted_days = day_numbers[order]
    cuts = np.flatnonzero(np.diff(sorted_days)) + 1
    out = []
    for idx in np.split(order, cuts):
        out.append((day_name(day_numbers[idx[0]]), table.take(pa.array(idx))))
    return out


def local_day(t: int, tz: ZoneInfo) -> int:
    """Lake-local day number of one Unix second."""
    return (t + _offset(tz, t // BUCKET_S)) // 86400


def _ts_array(ts: np.ndarray, type_: pa.DataType) -> pa.Array:
    """int64 seconds/milliseconds → Arrow timestamp without a copy."""
    ts = np.ascontiguousarray(ts, np.int64)
    return pa.Array.from_buffers(type_, len(ts), [None, pa.py_buffer(ts)])


class _Day:
    """The rows of one lake-local day in preallocated column buffers (grown by doubling, reused from
    a :class:`BufferPool` batch after batch): a message's readings are copied in as it arrives, and
    the flush wraps the filled part as Arrow arrays without a copy."""

    def __init__(self, capacity: int = 4096):
        self.n = 0
        self.cols = np.empty((4, capacity), np.int64)    # meter_id, ts, register_milli, received_ms
        self.code = np.empty(capacity, np.int32)         # sender: index into Batch.senders
        self.heat: list = []                             # (meter_id, ts, HeatColumns, received_ms) pieces

    def append(self, m, t, r, code, received_ms: int) -> None:  # code: one sender code or one per row
        i, k = self.n, len(m)
        j = i + k
        if j > self.code.size:
            cap = max(2 * self.code.size, j)
            cols, codes = np.empty((4, cap), np.int64), np.empty(cap, np.int32)
            cols[:, :i] = self.cols[:, :i]
            codes[:i] = self.code[:i]
            self.cols, self.code = cols, codes
        c = self.cols
        c[0, i:j] = m
        c[1, i:j] = t
        c[2, i:j] = r
        c[3, i:j] = received_ms
        self.code[i:j] = code
        self.n = j


class BufferPool:
    """Day buffers of written batches, handed to later batches (thread-safe: a deque). A new buffer
    holds ``capacity`` rows (ingest: its batch size): the memory is reserved, not touched, until
    rows fill it, and a batch then never copies its rows to grow."""

    def __init__(self, capacity: int = 4096):
        self.free: deque = deque()
        self.capacity = capacity

    def take(self) -> _Day:
        try:
            return self.free.pop()
        except IndexError:
            return _Day(self.capacity)

    def give(self, d: _Day) -> None:
        d.n = 0
        d.heat = []
        self.free.append(d)


@dataclass
class Batch:
    """Messages received since the last flush: their readings (bucketed by lake-local day of ts as
    they arrive, so a flush needs no per-row sort), dead letters and what to acknowledge."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    days: dict = field(default_factory=dict)           # day number -> _Day
    senders: dict = field(default_factory=dict)
    dead: list = field(default_factory=list)          # (received_ms, topic, payload, reason, detail)
    acks: list = field(default_factory=list)          # (mid, qos, generation)
    rows: int = 0
    messages: int = 0
    first_monotonic: float | None = None
    pool: BufferPool | None = None                    # reuse day buffers (see release)

    def add(self, decoded: Decoded, topic: str, sender: str | None, received_ms: int,
            ack: tuple | None, monotonic: float) -> None:
        """Add one decoded message. What can fail (the days of its readings) is computed before the
        batch changes, so a message that makes ``add`` raise leaves the batch as it was."""
        n = decoded.n
        pieces = self._pieces(decoded) if n else []
        if self.first_monotonic is None:
            self.first_monotonic = monotonic
        self.messages += 1
        if ack is not None:
            self.acks.append(ack)
        if decoded.dead:
            topic = safe_text(topic, 1000)
            for payload, reason, detail in decoded.dead:
                self.dead.append((received_ms, topic, payload, reason, detail))
        if not n:
            return
        code = self.senders.setdefault(sender, len(self.senders))
        for day, m, t, r, heat in pieces:
            self._piece(day, m, t, r, code, received_ms, heat)
        self.rows += n

    def add_readings(self, rows: list[tuple[int, int, int]], senders: list[str], received_ms: int,
                     acks: list, monotonic: float) -> None:
        """Add messages of one reading each (``rows`` of ``(meter_id, ts, register_milli)``, their
        senders and acks (None: QoS 0) in arrival order): the batch :meth:`add` makes of them one at a
        time, in one step. Everything that can fail is computed first: on an exception the batch is
        as it was."""
        if not rows:
            return
        m, t, r = np.array(rows, np.int64).T
        index = dict(self.senders)
        codes = np.array([index.setdefault(s, len(index)) for s in senders], np.int32)
        days = local_day_numbers(t, self.tz)
        lo, hi = int(days.min()), int(days.max())
        pieces = ([(lo, slice(None))] if lo == hi else
                  [(int(d), days == d) for d in np.unique(days)])
        if self.first_monotonic is None:
            self.first_monotonic = monotonic
        self.senders = index
        self.messages += len(rows)
        self.acks += [a for a in acks if a is not None]
        for day, k in pieces:
            d = self.days.get(day)
            if d is None:
                d = self.days[day] = self.pool.take() if self.pool is not None else _Day()
            d.append(m[k], t[k], r[k], codes[k], received_ms)
        self.rows += len(rows)

    def _pieces(self, decoded: Decoded) -> list[tuple]:
        """``(day number, meter_id, ts, register_milli, heat columns or None)`` per lake-local day of the message."""
        ts = decoded.ts
        if decoded.n == 1:
            lo = hi = local_day(int(ts[0]), self.tz)
        else:
            lo, hi = local_day(int(ts.min()), self.tz), local_day(int(ts.max()), self.tz)
        if lo == hi:  # the usual case: the whole message is one day
            return [(lo, decoded.meter_id, ts, decoded.register_milli, decoded.heat)]
        days = local_day_numbers(ts, self.tz)
        out = []
        for d in np.unique(days):
            m = days == d
            out.append((int(d), decoded.meter_id[m], ts[m], decoded.register_milli[m],
                        None if decoded.heat is None else decoded.heat.take(m)))
        return out

    def _piece(self, day: int, m, t, r, code: int, received_ms: int, heat=None) -> None:
        d = self.days.get(day)
        if d is None:
            d = self.days[day] = self.pool.take() if self.pool is not None else _Day()
        if heat is not None:
            d.heat.append((m, t, heat, received_ms))
        d.append(m, t, r, code, received_ms)

    def release(self) -> None:
        """Give the day buffers back to the pool: only once no table built from them is used again
        (ingest: after they are written)."""
        if self.pool is not None:
            for d in self.days.values():
                self.pool.give(d)
            self.days = {}

    def _table(self, d: _Day) -> pa.Table:
        n = d.n
        senders = pa.array(list(self.senders), pa.string())
        return pa.Table.from_arrays([
            pa.array(d.cols[0, :n], pa.int64()),
            _ts_array(d.cols[1, :n], READINGS.field("ts").type),
            pa.array(d.cols[2, :n], pa.int64()),
            pa.nulls(n, pa.int64()),
            pa.nulls(n, pa.int32()),
            pa.nulls(n, pa.string()),
            pa.DictionaryArray.from_arrays(pa.array(d.code[:n]), senders),   # written as Parquet dictionary pages
            _ts_array(d.cols[3, :n], READINGS.field("received_at").type),
        ], schema=READINGS_DICT)

    @staticmethod
    def warm_up() -> None:
        """Build one empty readings table: pyarrow initialises itself on the first table built
        (0.3-1 s), which would otherwise stall the first batch while its messages wait unacknowledged."""
        Batch()._table(_Day(1))

    def readings_by_day(self, tz: ZoneInfo | None = None) -> list[tuple[str, pa.Table]]:
        """The batch's readings per lake-local day of ts (arrival order within a day)."""
        if tz is not None and tz != self.tz:
            raise ValueError(f"batch was bucketed in {self.tz}, not {tz}")
        return [(day_name(day), self._table(d)) for day, d in sorted(self.days.items())]

    def heat_by_day(self) -> list[tuple[str, pa.Table]]:
        """Heat meters' optional columns (``heat_readings``) per lake-local day of ts."""
        out = []
        for day, d in sorted(self.days.items()):
            if not d.heat:
                continue
            m, t, h, recv = zip(*d.heat)
            counts = [len(x) for x in m]
            cols = [np.concatenate([c[k] for c in h]) for k in range(3)]
            nulls = [cols[0] == NULL_TEMP, cols[1] == NULL_TEMP, cols[2] == NULL_VOLUME]
            out.append((day_name(day), pa.Table.from_arrays([
                pa.array(np.concatenate(m), pa.int64()),
                _ts_array(np.concatenate(t), HEAT_READINGS.field("ts").type),
                pa.array(cols[0], pa.int16(), mask=nulls[0]), pa.array(cols[1], pa.int16(), mask=nulls[1]),
                pa.array(cols[2], pa.int64(), mask=nulls[2]),
                _ts_array(np.repeat(np.array(recv, np.int64), counts), HEAT_READINGS.field("received_at").type),
            ], schema=HEAT_READINGS)))
        return out

    def readings(self) -> pa.Table:
        """All readings of the batch as one READINGS table."""
        parts = [t.cast(READINGS) for _, t in self.readings_by_day()]
        return pa.concat_tables(parts) if parts else READINGS.empty_table()

    def deadletters_by_day(self, tz: ZoneInfo) -> list[tuple[str, pa.Table]]:
        """Dead letters partitioned by the lake-local day they were received."""
        if not self.dead:
            return []
        recv, topic, payload, reason, detail = zip(*self.dead)
        table = pa.Table.from_arrays([
            pa.array(recv, pa.int64()).cast(DEADLETTER.field("received_at").type),
            pa.array(topic, pa.string()), pa.array(payload, pa.binary()),
            pa.array(reason, pa.string()), pa.array(detail, pa.string()),
        ], schema=DEADLETTER)
        days = local_day_numbers(np.array(recv, np.int64) // 1000, tz)
        return split_by_day(table, days)
