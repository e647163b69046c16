"""The night in blocks of accounts (billing/night.py) bills exactly what the whole city in one block
bills: every output table row for row and to the cent — ledger, bills, bill lines, alerts, charges,
charge lines, intervals, the carried state with its settled balances, and the run summaries — for
block sizes down to one account per block."""
from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import billing.accounts as accounts_module
import test_billing_batch as batch_tests
from billing.batch import bill_day, bill_range
from meters.registry import import_accounts
from test_billing_heat import HEADER, ROWS, feed, make

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("make_golden", HERE / "data" / "make_golden.py")
make_golden = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_golden)

OUTPUTS = make_golden.TABLES + ("intervals", "runs")
WHOLE = 1_000_000   # one block: the whole city at once


def outputs(lake, results) -> dict[str, str]:
    """Every billing output of the lake as CSV (the runs' times, ids and durations left out)."""
    out = {t: make_golden.to_csv(lake.read(t)) for t in OUTPUTS if t != "runs"}
    runs = lake.read("runs").drop_columns(["run_id", "started_at", "finished_at", "duration_s", "who"])
    out["runs"] = make_golden.to_csv(runs)
    out["results"] = make_golden.results_csv(results)
    return out


def golden_city(path, block_size):
    lake, late = make_golden.build_lake(path)
    return outputs(lake, make_golden.bill(lake, late, block_size=block_size))


@pytest.fixture(scope="module")
def whole_city(tmp_path_factory):
    return golden_city(tmp_path_factory.mktemp("whole"), WHOLE)


@pytest.mark.parametrize("block_size", [1, 7, 32])
def test_blocks_bill_the_golden_city_as_the_whole_city(tmp_path, whole_city, block_size):
    """60 accounts over a month end (postpaid bills), a payment, VEE estimates, late readings and a
    re-run with adjustments: 60, 9 and 2 blocks give the whole city's outputs, and the golden files."""
    got = golden_city(tmp_path, block_size)
    assert whole_city["ledger"].count("\n") > 100 and whole_city["intervals"].count("\n") > 20_000
    for name, want in whole_city.items():
        assert got[name] == want, f"{name} differs with blocks of {block_size}"
    for name in make_golden.TABLES:
        assert got[name] == (make_golden.GOLDEN / f"{name}.csv").read_text(), name


def heat_city(path, block_size):
    """Heat accounts (area and two-part bills: rows after every engine row), an electricity account,
    and a meter replaced by one in another block's range."""
    lake = make(path, ROWS + "900000004,100000000004,cn-bj-res-elec,prepaid,500,\n"
                            "900000005,100000000005,cn-bj-res-elec,postpaid,,\n")
    meters = (500000000001, 500000000002, 500000000003, 100000000004, 100000000005)
    regs = feed(lake, dt.date(2026, 11, 13), 4, meters=meters)
    results = bill_range(lake, dt.date(2026, 11, 13), dt.date(2026, 11, 16), block_size=block_size)
    # account 900000004 gets a new meter, whose id sorts after the heat meters (another block)
    (path / "b.csv").write_text(HEADER.replace("premise_area\n", "premise_area\n").rstrip("\n") + "\n"
                                "900000004,600000000004,cn-bj-res-elec,prepaid,500,\n")
    import_accounts(lake, path / "b.csv")
    regs[600000000004] = 5_000_000
    feed(lake, dt.date(2026, 11, 17), 14, regs=regs,
         meters=(500000000001, 500000000002, 500000000003, 600000000004, 100000000005))
    results += bill_range(lake, dt.date(2026, 11, 17), dt.date(2026, 11, 30), block_size=block_size)
    results += bill_day(lake, dt.date(2026, 11, 29), block_size=block_size)     # a re-run
    return outputs(lake, results)


def test_blocks_bill_heat_and_a_replaced_meter_as_the_whole_city(tmp_path):
    whole = heat_city(tmp_path / "whole", WHOLE)
    assert "bill_issued" in whole["alerts"] and ",0,fixed," not in whole["charge_lines"]
    assert whole["bills"].count("\n") >= 4
    # the account with the new meter kept its carried state (one opening entry, billed from the 13th)
    mine = [line for line in whole["ledger"].splitlines() if line.startswith("900000004,")]
    assert len(mine) > 10 and sum(",opening," in line for line in mine) == 1
    assert "900000004,600000000004," in whole["billing_state"]
    for block_size in (1, 2):
        got = heat_city(tmp_path / f"b{block_size}", block_size)
        for name, want in whole.items():
            assert got[name] == want, f"{name} differs with blocks of {block_size}"


def test_a_block_size_below_one_is_refused(tmp_path):
    from meters.errors import MetersError

    lake = make(tmp_path)
    with pytest.raises(MetersError, match="block size 0"):
        bill_day(lake, dt.date(2026, 11, 13), block_size=0)


@pytest.mark.parametrize("edges", [True, False])
def test_blocks_bill_a_compacted_city_as_the_whole_city(tmp_path, whole_city, edges):
    """The readings compacted (`meters compact`: each day one sorted file and its edge; or without the
    edges, as a lake compacted before they existed): blocks of 7 read only the neighbouring days' edges
    (or their whole partitions) and bill the whole city's outputs."""
    from ingest.compact import compact
    from meters.readings import EDGE_PREFIX, READINGS, Window

    lake, late = make_golden.build_lake(tmp_path)
    compact(lake)
    days = lake.partitions("readings")
    found = [p for k in days for p in lake.partition_dir("readings", k).iterdir() if p.name.startswith(EDGE_PREFIX)]
    assert len(found) == len(days) >= 2
    # an analyst's glob of the table's files (DuckDB matches hidden files too) sees each reading once
    import duckdb
    glob = str(lake.partition_dir("readings", days[0]).parent / "*" / "*.parquet")
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0] == \
        sum(lake.read("readings", k).num_rows for k in days)
    day = dt.date.fromisoformat(days[0])
    start, end = lake.day_bounds_utc(day)
    window = Window(lake, start, end + dt.timedelta(seconds=450), READINGS.names)
    if not edges:
        for p in found:
            p.unlink()
    parts = window.read((0, 2**62))
    used = window._compacted[days[1]].path
    assert used.name.startswith(EDGE_PREFIX) == edges
    assert parts[1].num_rows == lake.read("readings", days[1], filter=pc_before(end + dt.timedelta(seconds=450))).num_rows > 0
    got = outputs(lake, make_golden.bill(lake, late, block_size=7))
    for name, want in whole_city.items():       # (the runs count the re-sent readings compaction dropped)
        if name not in ("runs", "results"):
            assert got[name] == want, f"{name} differs (compacted, edges {edges})"


def pc_before(t):
    import pyarrow as pa
    import pyarrow.compute as pc

    from meters.schemas import UTC_S
    return pc.field("ts") < pa.scalar(t, UTC_S)


def contact_city(path, block_size):
    """Six prepaid accounts whose meters sort against their ids (the contacts, kept sorted by account,
    are not in the accounts' meter order), two contacts, one or none each; low balances alert them;
    then a re-run (an earlier run's first charges looked up)."""
    rows = "".join(f"{1001 + i},{19 - i},cn-bj-res-elec,prepaid,{31 + i},,,,,{c}\n" for i, c in enumerate(
        ["self:138;daughter:139", "", "self:140", "son:141;self:142", "", "self:143"]))
    lake = batch_tests.make_lake(path, rows)
    for i in range(6):
        batch_tests.feed(lake, 19 - i, batch_tests.D0, 3)
    results = bill_range(lake, batch_tests.D0, batch_tests.D0 + dt.timedelta(days=2), block_size=block_size)
    results += bill_day(lake, batch_tests.D0 + dt.timedelta(days=1), block_size=block_size)
    return outputs(lake, results)


@pytest.mark.parametrize("block_size,chunk", [(2, 4), (1, 1), (WHOLE, 2)])
def test_account_lookups_in_pieces_bill_as_one_lookup(tmp_path, monkeypatch, block_size, chunk):
    """The run's account ids looked up ``chunk`` at a time (a city's in pieces: contacts, the first
    charges of a re-run, carried states) bill what one lookup of them all bills."""
    whole = contact_city(tmp_path / "whole", WHOLE)
    assert ",141," in whole["alerts"] and ",account:1002," in whole["alerts"]
    monkeypatch.setattr(accounts_module, "LOOKUP_CHUNK", chunk)
    got = contact_city(tmp_path / "pieces", block_size)
    for name, want in whole.items():
        assert got[name] == want, f"{name} differs with blocks of {block_size}, lookups of {chunk}"


@pytest.mark.parametrize("ordered", [True, False])
def test_a_blocks_contacts_are_its_accounts_contacts(tmp_path, ordered):
    """Each block gets exactly its accounts' contacts in their order, whether the contacts come one per
    account in the accounts' order (taken as they are) or not (looked up)."""
    from billing.accounts import Accounts
    from billing.config import Config
    from billing.inputs import DayReads

    contacts = ["self:138", "self:139", "self:140", "self:141", "self:142", "self:143"] if ordered else \
        ["self:138;daughter:139", "", "self:140", "son:141;self:142", "", "self:143"]
    rows = "".join(f"{1001 + i},{11 + i if ordered else 19 - i},cn-bj-res-elec,prepaid,31,,,,,{c}\n"
                   for i, c in enumerate(contacts))
    lake = batch_tests.make_lake(tmp_path, rows)
    acc = Accounts(lake, Config.load(lake), whole=False)
    reads = DayReads(lake, batch_tests.D0, acc)
    everyone = lake.read("contacts").select(["account_id", "recipient", "language"])
    got = []
    for block in acc.blocks(4):
        mine, rows = reads.contacts_at(block)
        assert block.account_arrow.take(pa.array(rows)).equals(mine.column("account_id").combine_chunks())
        want = everyone.filter(pc.is_in(everyone.column("account_id"), value_set=block.account_arrow))
        want = want.take(pc.sort_indices(pc.index_in(want.column("account_id"), value_set=block.account_arrow)))
        assert mine.to_pylist() == want.to_pylist()
        got += mine.column("recipient").to_pylist()
    assert sorted(got) == sorted(r.split(":")[1] for c in contacts for r in c.split(";") if r)


def test_a_blocks_reading_limits_follow_its_meters_utilities(tmp_path):
    """Each account's per-interval limit is its meter's utility's per-hour limit (a utility the
    configuration lacks: 25), and a meter missing from the registry takes its tariff's utility."""
    import dataclasses

    import numpy as np

    from billing.accounts import Accounts
    from billing.config import Config
    from meters.schemas import METERS

    rows = "".join(f"{1001 + i},{11 + i},cn-bj-res-elec,prepaid,31,,,,,\n" for i in range(5))
    lake = batch_tests.make_lake(tmp_path, rows)
    utility = {11: "electricity", 12: "water", 13: "steam", 15: "water"}     # meter 14: not in the registry
    n = len(utility)
    lake.replace_partition("meters", None, pa.table({
        "meter_id": list(utility), "external_id": [None] * n, "utility": list(utility.values()),
        "unit": ["kWh"] * n, "concentrator": [None] * n, "region": [None] * n, "register_max": [1e6] * n},
        schema=METERS))
    cfg = Config.load(lake)
    cfg = dataclasses.replace(cfg, limit_per_hour={**cfg.limit_per_hour, "electricity": 30.0})
    acc = Accounts(lake, cfg, whole=False)
    got_limit, got_utility, ids = [], [], []
    for block in acc.blocks(2):
        got_limit += block.limit.tolist()
        got_utility += block.utility.tolist()
        ids += block.account_ids.tolist()
    want_utility = [utility.get(m, "electricity") for m in range(11, 16)]   # (the tariff's: electricity)
    assert got_utility == want_utility
    per_hour = [cfg.limit_per_hour.get(u, 25.0) for u in want_utility]
    assert per_hour == [30.0, 5.0, 25.0, 30.0, 5.0]
    assert np.array_equal(got_limit, np.array(per_hour) * 1000.0 * cfg.interval_s / 3600.0)
    assert ids == [str(1001 + i) for i in range(5)]


def test_the_next_block_is_read_while_this_one_is_computed_and_no_further():
    import threading

    from billing.night import read_ahead

    events, main = [], threading.get_ident()

    def read(b):
        events.append(("read", b, threading.get_ident() != main))
        return b * 10
    got = []
    for b, inputs in read_ahead(read, range(5)):
        got.append((b, inputs))
        read_so_far = [e[1] for e in events if e[0] == "read"]
        assert max(read_so_far) <= b + 1          # at most one block read ahead
        events.append(("use", b, False))
    assert got == [(b, b * 10) for b in range(5)]
    assert all(e[2] for e in events if e[0] == "read")   # read in the background


def test_a_read_error_is_raised_where_its_block_is_taken_and_closing_waits_for_the_read_in_flight():
    import contextlib
    import time

    from billing.night import read_ahead
    from meters.errors import LakeDamaged

    def read(b):
        if b == 2:
            raise LakeDamaged("readings/2026-11-23/part-0.parquet is damaged")
        return b
    taken = []
    with pytest.raises(LakeDamaged, match="part-0.parquet is damaged"):
        for b, _ in read_ahead(read, range(5)):
            taken.append(b)
    assert taken == [0, 1]

    running = []

    def slow(b):
        running.append(b)
        time.sleep(0.2)
        running.remove(b)
        return b
    with pytest.raises(RuntimeError, match="compute failed"):
        with contextlib.closing(read_ahead(slow, range(5))) as blocks:
            for b, _ in blocks:
                time.sleep(0.05)                  # block 1's read under way
                raise RuntimeError("compute failed")
    assert running == []                          # no read left running once the error goes on


def test_intervals_files_store_required_columns_and_meter_ids_and_times_plain(tmp_path):
    """The intervals' layout (meters/lake.py DICTIONARY): no definition levels where the schema has no
    nulls, meter ids and times plain (no dictionary), the rest dictionary-encoded; what readers get is
    unchanged."""
    import pyarrow.parquet as pq

    from meters.schemas import INTERVALS

    lake, late = make_golden.build_lake(tmp_path)
    make_golden.bill(lake, late, block_size=7)
    files = [f for k in lake.partitions("intervals") for f in lake.files("intervals", k)]
    assert files
    for f in files:
        meta = pq.ParquetFile(f)
        assert [fl.nullable for fl in meta.schema_arrow] == [fl.nullable for fl in INTERVALS]
        group = meta.metadata.row_group(0)
        encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
        assert "RLE_DICTIONARY" not in encodings["meter_id"] + encodings["ts"]
        assert all("RLE_DICTIONARY" in encodings[c] for c in ("quantity", "quality", "flag"))
    assert lake.read("intervals").schema.field("quality").type == INTERVALS.field("quality").type


def test_a_failing_intervals_writer_fails_the_night_and_leaves_no_file(tmp_path, monkeypatch):
    """The intervals' own writer thread: its error is the night's, raised once both writers are done,
    and the aborted night leaves no staged file and no output of the day."""
    import threading

    from billing import night
    from benchmarks.bench_billing import DAY, build_lake
    from meters.errors import LakeDamaged

    lake = build_lake(tmp_path / "lake", 30, days=1)
    real, calls = night.DayWriter._write_intervals, []
    others_done = threading.Event()
    real_write = night.DayWriter._write

    def write(self, part):
        real_write(self, part)
        others_done.set()

    def failing(self, rows):
        calls.append(rows.table().num_rows)
        if len(calls) == 2:
            others_done.wait(5)
            raise LakeDamaged("intervals: the disk is full")
        real(self, rows)
    monkeypatch.setattr(night.DayWriter, "_write", write)
    monkeypatch.setattr(night.DayWriter, "_write_intervals", failing)
    with pytest.raises(LakeDamaged, match="the disk is full"):
        bill_day(lake, DAY, block_size=10)
    assert calls[:2] == [10 * 96, 10 * 96]
    for name in ("intervals", "charges", "charge_lines", "billing_state"):
        assert DAY.isoformat() not in lake.partitions(name) or not lake.files(name, DAY.isoformat()), name
    assert list(tmp_path.rglob(".*.tmp")) == []
