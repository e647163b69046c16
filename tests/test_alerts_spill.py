"""The night's alerts spilled to disk block by block (:class:`billing.alerts.DaySpill`): the day's file
is the whole city's order (by section, then block) and byte for byte the file one whole-table write
makes, row groups included; nothing of the spill is left behind, written or aborted."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from billing.alerts import ALERTS, BILLING_FILE, DAY_STATS, SECTIONS, DaySpill
from meters.lake import init_lake

DAY = dt.date(2026, 11, 23)


def _block(rng, n: int, first: int) -> tuple[pa.Table, np.ndarray]:
    kinds = np.array(SECTIONS + ("estimated_day",))
    section = rng.integers(0, len(SECTIONS) + 1, n).astype(np.int8)
    ids = [f"a{first + i:07d}" for i in range(n)]
    return pa.table({"account_id": ids, "ts": pa.array(np.full(n, 1_700_000_000_000), pa.int64()).cast(ALERTS.field("ts").type),
                     "kind": kinds[section].tolist(), "recipient": ids, "message": [f"m{i}" * 5 for i in range(n)],
                     "alert_id": [f"id{first + i}" for i in range(n)], "language": ["en"] * n,
                     "data": ["{}"] * n}, schema=ALERTS), section


def test_spilled_alerts_are_the_whole_citys_file(tmp_path):
    rng = np.random.default_rng(7)
    blocks = [_block(rng, n, first) for n, first in ((50_000, 0), (0, 50_000), (1, 50_000), (40_000, 50_001))]
    spill_lake, whole_lake = init_lake(tmp_path / "spill"), init_lake(tmp_path / "whole")
    spill = DaySpill(spill_lake, DAY)
    for table, section in blocks:
        spill.add(table, section)
    kinds = spill.write()

    table = pa.concat_tables([t for t, _ in blocks])
    order = np.argsort(np.concatenate([s for _, s in blocks]), kind="stable")
    whole = table.take(pa.array(order))
    whole_lake.write("alerts", whole, DAY.isoformat(), file_name=BILLING_FILE, write_statistics=DAY_STATS)
    got = spill_lake.partition_dir("alerts", DAY.isoformat())
    assert [p.name for p in got.iterdir()] == [BILLING_FILE]          # the spill files gone
    assert pq.ParquetFile(got / BILLING_FILE).metadata.num_row_groups == 2
    assert (got / BILLING_FILE).read_bytes() == (whole_lake.partition_dir("alerts", DAY.isoformat())
                                                 / BILLING_FILE).read_bytes()
    first_seen = list(dict.fromkeys(whole.column("kind").to_pylist()))
    assert list(kinds) == first_seen and sum(kinds.values()) == table.num_rows


def test_an_empty_night_writes_an_empty_file_and_an_aborted_one_leaves_nothing(tmp_path):
    lake = init_lake(tmp_path / "lake")
    assert DaySpill(lake, DAY).write() == {}
    d = lake.partition_dir("alerts", DAY.isoformat())
    assert pq.read_table(d / BILLING_FILE).num_rows == 0
    spill = DaySpill(lake, DAY + dt.timedelta(days=1))
    spill.add(*_block(np.random.default_rng(1), 100, 0))
    spill.abort()
    d = lake.partition_dir("alerts", (DAY + dt.timedelta(days=1)).isoformat())
    assert not d.exists() or not any(d.iterdir())
