"""Accumulating decoded messages into Arrow tables, partitioned by lake-local day (pure, no I/O)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from meters.schemas import DEADLETTER, READINGS

from .decode import Decoded

BUCKET_S = 900  # every UTC-offset change of every zone falls on a multiple of 15 minutes


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


@dataclass
class Batch:
    """Messages received since the last flush: their readings, dead letters and what to acknowledge."""

    meter_id: list = field(default_factory=list)
    ts: list = field(default_factory=list)
    register_milli: list = field(default_factory=list)
    sender_code: list = field(default_factory=list)   # per message: index into senders
    rows_per_msg: list = field(default_factory=list)
    received_ms: list = field(default_factory=list)   # per message
    senders: dict = field(default_factory=dict)
    dead: list = field(default_factory=list)          # (received_ms, topic, payload, reason, detail)
    acks: list = field(default_factory=list)          # (mid, qos, generation)
    rows: int = 0
    messages: int = 0
    first_monotonic: float | None = None

    def add(self, decoded: Decoded, topic: str, sender: str | None, received_ms: int,
            ack: tuple | None, monotonic: float) -> None:
        if self.first_monotonic is None:
            self.first_monotonic = monotonic
        self.messages += 1
        if ack is not None:
            self.acks.append(ack)
        for payload, reason, detail in decoded.dead:
            self.dead.append((received_ms, topic, payload, reason, detail))
        n = decoded.n
        if n:
            self.meter_id.append(decoded.meter_id)
            self.ts.append(decoded.ts)
            self.register_milli.append(decoded.register_milli)
            code = self.senders.setdefault(sender, len(self.senders))
            self.sender_code.append(code)
            self.rows_per_msg.append(n)
            self.received_ms.append(received_ms)
            self.rows += n

    def _columns(self) -> dict[str, np.ndarray]:
        counts = np.array(self.rows_per_msg, np.int64)
        return {"meter_id": np.concatenate(self.meter_id), "ts": np.concatenate(self.ts),
                "register_milli": np.concatenate(self.register_milli),
                "sender": np.repeat(np.array(self.sender_code, np.int32), counts),
                "received_at": np.repeat(np.array(self.received_ms, np.int64), counts)}

    def _table(self, cols: dict[str, np.ndarray]) -> pa.Table:
        n = len(cols["meter_id"])
        senders = pa.array(list(self.senders), pa.string())
        return pa.Table.from_arrays([
            pa.array(cols["meter_id"], pa.int64()),
            pa.array(cols["ts"], pa.int64()).cast(READINGS.field("ts").type),
            pa.array(cols["register_milli"], pa.int64()),
            pa.nulls(n, pa.int64()),
            pa.nulls(n, pa.int32()),
            pa.nulls(n, pa.string()),
            pa.DictionaryArray.from_arrays(pa.array(cols["sender"]), senders).cast(pa.string()),
            pa.array(cols["received_at"], pa.int64()).cast(READINGS.field("received_at").type),
        ], schema=READINGS)

    def readings(self) -> pa.Table:
        """All readings of the batch as a READINGS table (arrival order)."""
        if not self.rows:
            return READINGS.empty_table()
        return self._table(self._columns())

    def readings_by_day(self, tz: ZoneInfo) -> list[tuple[str, pa.Table]]:
        """The batch's readings split by lake-local day of ts (arrival order within a day)."""
        if not self.rows:
            return []
        cols = self._columns()
        days = local_day_numbers(cols["ts"], tz)
        first = days[0]
        if np.all(days == first):
            return [(day_name(first), self._table(cols))]
        order = np.argsort(days, kind="stable")
        cuts = np.flatnonzero(np.diff(days[order])) + 1
        return [(day_name(days[idx[0]]), self._table({k: v[idx] for k, v in cols.items()}))
                for idx in np.split(order, cuts)]

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
