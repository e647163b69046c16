"""``meters replay``: republish readings from the lake over MQTT, in their original order.

Readings (deduplicated, register reads only: the wire format carries registers) with ``from <= ts < to``
are ordered as ingest first saw them (``received_at``, then sender, ts, meter) and cut into batches of
consecutive readings of one sender. Each batch goes to that sender's topic ``meters/v1/<sender>/readings``
(or to ``--sender``'s) as a binary batch or a JSON array (``meters.wire.BATCH_FORMATS``), through the
simulator's QoS 1 publisher.
``--speed Nx`` keeps the original spacing divided by N (spacing of ``received_at``; of ``ts`` for rows
without it), ``max`` sends as fast as the broker acknowledges. Replayed data ingested again equals the
original.
"""
from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow as pa

from meters import wire
from meters.errors import MetersError
from meters.lake import Lake
from meters.readings import read_readings
from meters.schemas import UTC_S
from meters.times import parse_instant

from .publish import Publisher
from .run import parse_speed


def batches(sender: np.ndarray, clock: np.ndarray, size: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges: runs of one sender, at most ``size`` rows each (rows in send order)."""
    n = len(sender)
    if n == 0:
        return []
    change = np.flatnonzero(sender[1:] != sender[:-1]) + 1
    bounds = np.concatenate([[0], change, [n]])
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        for s in range(int(a), int(b), size):
            out.append((s, min(s + size, int(b))))
    return out


def load(lake: Lake, start: dt.datetime, end: dt.datetime) -> tuple[pa.Table, int]:
    """Register readings in [start, end) in send order; and the count of skipped interval rows."""
    t = read_readings(lake, start, end)
    has_reg = t.column("register_milli").is_valid()
    skipped = t.num_rows - int(np.sum(has_reg.to_numpy(zero_copy_only=False)))
    t = t.filter(has_reg)
    ts = t.column("ts").cast(pa.int64()).to_numpy()
    rec = t.column("received_at").cast(pa.int64()).fill_null(-1).to_numpy()
    clock = np.where(rec >= 0, rec, ts * 1000)
    sender = np.asarray(t.column("sender").fill_null("replay").to_pylist(), dtype=object)
    order = np.lexsort((t.column("meter_id").to_numpy(), ts, sender, clock))
    t = t.take(pa.array(order)).append_column("clock_ms", pa.array(clock[order], pa.int64()))
    return t, skipped


def replay(lake: Lake, broker: str, start, end, *, speed: str = "max", fmt: str = wire.DEFAULT,
           sender: str | None = None, batch_size: int = 1000, progress=None) -> dict:
    """Republish readings of ``[start, end)`` to ``broker`` (see module doc); returns counts. ``fmt``
    is a name of :data:`meters.wire.BATCH_FORMATS`."""
    codec = wire.lookup(fmt, wire.BATCH_FORMATS)
    factor = parse_speed(speed)
    start = parse_instant(start, lake.tz, "--from") if isinstance(start, str) else start
    end = parse_instant(end, lake.tz, "--to") if isinstance(end, str) else end
    if end <= start:
        raise MetersError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    table, skipped = load(lake, start, end)
    senders = np.asarray(table.column("sender").fill_null("replay").to_pylist(), dtype=object)
    if sender:
        senders[:] = sender
    clock = table.column("clock_ms").to_numpy()
    meter = table.column("meter_id").to_numpy()
    ts = table.column("ts").cast(UTC_S).cast(pa.int64()).to_numpy()
    reg = table.column("register_milli").to_numpy()
    ranges = batches(senders, clock, batch_size)
    t0 = time.monotonic()
    messages = 0
    with Publisher(broker, client_prefix="meters-replay", tz=lake.tz) as pub:
        for a, b in ranges:
            if factor is not None:
                due = t0 + (clock[a] - clock[0]) / 1000.0 / factor
                while (wait := due - time.monotonic()) > 0:
                    pub.poll()
                    time.sleep(min(wait, 0.05))
            messages += pub.publish_batch(senders[a], meter[a:b], ts[a:b], reg[a:b], codec)
            if progress:
                progress(b - a)
        pub.flush()
    seconds = time.monotonic() - t0
    return {"readings": int(table.num_rows), "messages": messages, "senders": len(set(senders.tolist())),
            "skipped_interval_rows": skipped, "seconds": round(seconds, 3),
            "from": start.isoformat(), "to": end.isoformat()}
