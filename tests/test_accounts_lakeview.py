"""Per-account lake reads (accounts.lakeview): one account's rows come from the row group whose
statistics hold it, in files sorted by account, by meter (billing_state) or not sorted at all, and
equal what a whole-partition read finds; the console's city figures are computed in the background
when a partition is big, the page saying so meanwhile."""
from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from accounts import lakeview
from meters.lake import init_lake

DAY = "2026-11-23"
N = 1000


def _state(order: list[int]) -> pa.Table:
    ids = [f"u{i:05d}" for i in order]
    return pa.table({"account_id": ids, "meter_id": pa.array([10_000 + i for i in order], pa.int64()),
                     "balance": pa.array([Decimal(i * 7 - 3000).scaleb(-2) for i in order], pa.decimal128(18, 2)),
                     "level": pa.array([i % 3 for i in order], pa.int8()),
                     "arrears_since": pa.array([dt.date(2026, 11, 1) if i % 50 == 0 else None for i in order]),
                     "disconnected": [i % 100 == 0 for i in order]})


@pytest.mark.parametrize("layout", ["sorted", "shuffled"])
def test_one_account_read_from_its_row_group_equals_the_whole_partition(tmp_path, layout):
    lake = init_lake(tmp_path / "lake")
    order = list(range(N))
    if layout == "shuffled":   # a file not sorted by account: every row group spans every id
        random.Random(1).shuffle(order)
    lake.replace_partition("billing_state", DAY, _state(order), row_group_size=64)
    assert pq.read_metadata(lake.current_files("billing_state", DAY)[0]).num_row_groups == N // 64 + 1
    whole = lake.read("billing_state", DAY, columns=lakeview.SETTLED_COLUMNS)
    for i in (0, 1, 63, 64, 500, N - 1):
        u = f"u{i:05d}"
        want = whole.filter(pc.equal(whole.column("account_id"), u)).to_pylist()[0]
        got = lakeview.settled(lake, u)
        assert got == lakeview.Settled(dt.date.fromisoformat(DAY), int(want["balance"] * 100), want["level"],
                                       want["arrears_since"], want["disconnected"])
    assert lakeview.settled(lake, "u99999") is None and lakeview.settled(lake, "") is None


def test_a_replaced_partition_is_read_again_and_an_older_file_lacks_a_column(tmp_path):
    lake = init_lake(tmp_path / "lake")
    lake.replace_partition("billing_state", DAY, _state(list(range(N))).drop(["level"]), row_group_size=100)
    assert lakeview.settled(lake, "u00007").level == 0              # a column the file lacks: null → 0
    lake.replace_partition("billing_state", DAY, _state(list(range(N))), row_group_size=100)
    assert lakeview.settled(lake, "u00007").level == 1              # the new file, not the cached footer
    rows = lakeview.account_rows(lake, "billing_state", DAY, "u00007", ["account_id", "level", "balance"])
    assert rows.to_pylist() == [{"account_id": "u00007", "level": 1, "balance": Decimal("-29.51")}]


def test_the_console_computes_a_big_city_figure_in_the_background(tmp_path, monkeypatch):
    from accounts.store import open_store
    from accounts.web import data

    lake = init_lake(tmp_path / "lake")
    lake.replace_partition("billing_state", DAY, _state(list(range(N))))
    store = open_store(lake)
    try:
        with lakeview.LakeReader(lake) as lr:
            assert data.in_arrears(store, lr) == data.in_arrears(store, lr)        # small: in the request
            n, shown = data.in_arrears(store, lr)
            assert n == 20 and shown[0]["account_id"] == "u00000"             # i % 50 == 0: 20 of 1,000
            store.cache.clear()
            monkeypatch.setattr(data, "INLINE_ROWS", N - 1)
            assert data.in_arrears(store, lr) is None                         # big: being computed
            for th in list(data._COMPUTING.values()):
                th.join()
            assert data.in_arrears(store, lr) == (n, shown)                   # then kept
    finally:
        store.close()
