"""Operating billing for a city (issue 14) and integrity before money (issue 18, finding 6): days not
over and days with too few readings are refused with nothing written, ``--allow-estimates`` bills and
marks, no disconnection on estimates, catch-up equals single runs, one run at a time, ``bill status``,
``bill reset``, metrics, and refusals of a damaged lake (exit 6, the file named)."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from billing.batch import bill_day, bill_due, bill_range, settled_days
from billing.config import Config
from billing.settle import Policy
from meters.cli import cli
from meters.errors import DataNotReady, LakeDamaged, NothingToDo
from test_billing_batch import D0, alerts, balance, days, feed, ledger, make_lake, write_registers

ROOT = Path(__file__).resolve().parents[1]
TWO = "1001,11,cn-bj-res-elec,prepaid,100,,,,,self:138\n1002,12,cn-bj-res-elec,prepaid,100,,,,,self:139\n"
D1, D2, D3 = (D0 + dt.timedelta(days=i) for i in (1, 2, 3))


def files(lake) -> dict[str, tuple[int, int]]:
    """Every file of the lake (but locks) with its size and modification time."""
    return {str(p.relative_to(lake.root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(lake.root.rglob("*")) if p.is_file() and ".locks" not in p.parts}


def invoke(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.output


def one_line_error(out: str) -> str:
    assert out.startswith("error: ") and out.count("\n") == 1 and "Traceback" not in out, out
    return out


# -- guards -----------------------------------------------------------------------------------------
def test_a_day_not_over_is_refused_with_nothing_written(tmp_path):
    lake = make_lake(tmp_path, TWO)
    for m in (11, 12):
        feed(lake, m, D0, 2)
    before = files(lake)
    evening = dt.datetime.combine(D1, dt.time(23, 30), lake.tz)     # 30 minutes before D1 ends
    with pytest.raises(DataNotReady, match="2026-11-02 has not ended in Asia/Shanghai"):
        bill_range(lake, D0, D1, now=evening)                           # the whole range: nothing billed
    assert files(lake) == before and settled_days(lake) == []
    bill_range(lake, D0, D1, now=evening + dt.timedelta(minutes=31))
    assert settled_days(lake) == [D0, D1]
    code, out = invoke("bill", "--lake", lake.root, "--date", "2099-12-31")   # the tests' clock: 2099-12-31
    assert code == 4 and "has not ended" in one_line_error(out)


def test_a_day_without_readings_is_refused_with_nothing_written(tmp_path):
    lake = make_lake(tmp_path, TWO)
    for m in (11, 12):
        feed(lake, m, D0, 1)        # (its closing readings at 00:00 of D1 are not readings of D1)
    bill_day(lake, D0)
    before = files(lake)
    code, out = invoke("bill", "--lake", lake.root, "--date", D1)
    assert code == 4 and "readings of 2026-11-02 cover 0 of 2 meters (0.0%, minimum 95%)" in one_line_error(out)
    assert files(lake) == before and settled_days(lake) == [D0]


def test_half_coverage_is_refused_then_billed_on_estimates_and_marked(tmp_path):
    lake = make_lake(tmp_path, TWO)
    feed(lake, 11, D0, 1)
    before = files(lake)
    code, out = invoke("bill", "--lake", lake.root, "--date", D0)
    assert code == 4 and "cover 1 of 2 meters (50.0%" in one_line_error(out)
    assert files(lake) == before
    code, out = invoke("bill", "--lake", lake.root, "--date", D0, "--allow-estimates", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["estimated_days"] == ["2026-11-01"] and summary["coverage"] == {"2026-11-01": 0.5}
    [run] = lake.read("runs").to_pylist()
    assert (run["outcome"], run["coverage"]) == ("estimated", 0.5)
    [note] = alerts(lake, "estimated_day")
    assert note["recipient"] == "operator" and "cover 1 of 2 meters (50.0%, minimum 95%)" in note["message"]
    est = {r["account_id"]: r["estimated"] for r in lake.read("charges").to_pylist()}
    assert est == {"1001": False, "1002": True}
    # a smaller minimum in billing.json: the same coverage is enough
    (lake.root / "billing.json").write_text(json.dumps({"min_coverage": 0.5}))
    feed(lake, 11, D1, 1, reg0=1000 + 96 * 100)
    assert [r.estimated for r in bill_day(lake, D1)] == [False]


def test_no_disconnection_on_a_day_mostly_estimated(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,6,,,,,self:138\n")
    cfg = Config(policy=Policy(grace_days=0))
    r = write_registers(lake, 11, D0, 1000, 100)
    r = write_registers(lake, 11, D1, r, 100, skip=range(9, 97))     # 8 readings, then silence: 88 estimated
    write_registers(lake, 11, D2, r, 100)
    bill_range(lake, D0, D1, config=cfg)
    assert balance(lake, "1001", D1) < 0 and [a["day"] for a in alerts(lake, "arrears")] == ["2026-11-02"]
    assert alerts(lake, "disconnect") == []
    [held] = alerts(lake, "disconnect_held")
    assert held["recipient"] == "operator" and "most of the day's intervals are estimated" in held["message"]
    customer = [a for a in alerts(lake, "arrears")]
    assert all("(Estimated: most of this day's readings are missing.)" in a["message"] for a in customer)
    bill_day(lake, D2, config=cfg)                                    # an actual day: ordered now
    assert [a["day"] for a in alerts(lake, "disconnect")] == ["2026-11-03"]
    # the setting: 1.0 never holds
    lake2 = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,6,,,,,self:138\n", "b")
    r = write_registers(lake2, 11, D0, 1000, 100)
    write_registers(lake2, 11, D1, r, 100, skip=range(9, 97))
    bill_range(lake2, D0, D1, config=Config(policy=Policy(grace_days=0, disconnect_max_estimated=1.0)))
    assert [a["day"] for a in alerts(lake2, "disconnect")] == ["2026-11-02"]


# -- catch-up, status, reset --------------------------------------------------------------------------
def _strip(t):
    return t.drop_columns([c for c in ("run_id",) if c in t.column_names]).to_pylist()


def test_catch_up_over_three_missed_days_equals_three_single_runs(tmp_path):
    rows = ("1001,11,cn-bj-res-elec,prepaid,12,,,,,self:138\n"
            "1002,12,cn-sh-res-elec-tou,prepaid,60,,,40,50,self:139\n"
            "1003,13,cn-bj-res-water,postpaid,,,,,,self:140\n")
    a, b = make_lake(tmp_path, rows, "a"), make_lake(tmp_path, rows, "b")
    for lake in (a, b):
        feed(lake, 11, D0 - dt.timedelta(days=2), 6, step=lambda k: 50 + (k % 7) * 30)
        feed(lake, 12, D0 - dt.timedelta(days=2), 6, step=lambda k: 80 + (k % 5) * 20)
        feed(lake, 13, D0 - dt.timedelta(days=2), 6, step=lambda k: 10 + k % 3)
        bill_range(lake, D0 - dt.timedelta(days=2), D0 - dt.timedelta(days=1))   # settled through 31 Oct
    morning = dt.datetime.combine(D3, dt.time(2), a.tz)                # the nightly run on 4 Nov missed 3 nights
    res = bill_due(a, now=morning)
    assert [r.day for r in res] == [D0, D1, D2]
    for d in (D0, D1, D2):
        bill_day(b, d)
    for name in ("ledger", "billing_state", "alerts", "charges", "charge_lines", "bills", "intervals"):
        assert _strip(a.read(name)) == _strip(b.read(name)), name
    with pytest.raises(NothingToDo, match="every day up to 2026-11-03 is settled"):
        bill_due(a, now=morning)
    # the CLI: --through stops earlier; nothing left: exit 3
    code, out = invoke("bill", "--lake", b.root, "--through", D2)
    assert code == 3 and "nothing to bill" in one_line_error(out)
    assert invoke("bill", "--lake", b.root, "--through", "2099-12-31")[0] == 4


def test_bill_without_a_date_starts_at_the_first_readings_and_status_tells(tmp_path):
    lake = make_lake(tmp_path, TWO)
    for m in (11, 12):
        feed(lake, m, D0, 3)
    code, out = invoke("bill", "status", "--lake", lake.root, "--json")
    st = json.loads(out)
    assert code == 0 and st["last_settled"] is None and st["next_day"] == "2026-11-01"
    assert st["next_day_coverage"] == {"day": "2026-11-01", "meters": 2, "with_readings": 2, "share": 1.0}
    code, out = invoke("bill", "--lake", lake.root, "--through", D1, "--json")
    assert code == 0 and json.loads(out)["days"] == ["2026-11-01", "2026-11-02"]
    st = json.loads(invoke("bill", "status", "--lake", lake.root, "--json")[1])
    assert (st["billing_start"], st["last_settled"], st["next_day"]) == ("2026-11-01", "2026-11-02", "2026-11-03")
    assert st["in_flight"] is None and st["last_run"]["outcome"] == "settled"
    assert st["next_day_coverage"]["with_readings"] == 2
    code, out = invoke("bill", "status", "--lake", lake.root)
    assert code == 0 and "last settled day   2026-11-02" in out


def test_reset_moves_the_start_of_a_lake_without_bills_and_is_refused_after_one(tmp_path):
    lake = make_lake(tmp_path, TWO + "1003,13,cn-bj-res-water,postpaid,,,,,,self:140\n")
    for m in (11, 12, 13):
        feed(lake, m, D0 - dt.timedelta(days=1), 3)
    bill_day(lake, D1)                       # by mistake: the billing start would be 2 Nov forever
    with pytest.raises(Exception, match="billing of this lake starts on 2026-11-02"):
        bill_day(lake, D0)
    code, out = invoke("bill", "reset", "--lake", lake.root, "--before", D0)      # asks; no answer: aborted
    assert code == 1 and settled_days(lake) == [D1]
    code, out = invoke("bill", "reset", "--lake", lake.root, "--before", D0, "--yes")
    assert code == 0 and "billing start is now 2026-11-01 (was 2026-11-02); 1 billed day(s) removed" in out
    assert settled_days(lake) == [] and ledger(lake) == [] and lake.read("charges").num_rows == 0
    assert sorted(r["outcome"][:5] for r in lake.read("runs").to_pylist()) == ["reset", "settl"]
    code, out = invoke("bill", "--lake", lake.root, "--through", D1, "--json")
    assert code == 0 and json.loads(out)["days"] == ["2026-11-01", "2026-11-02"]
    assert [r["ts"].date() for r in ledger(lake, "1001") if r["kind"] == "opening"] == [dt.date(2026, 10, 31)]
    # once a bill was issued (a postpaid month end), the start can no longer move
    lake2 = make_lake(tmp_path, "1003,13,cn-bj-res-water,postpaid,,,,,,self:140\n", "b")
    feed(lake2, 13, dt.date(2026, 10, 30), 2)
    bill_range(lake2, dt.date(2026, 10, 30), dt.date(2026, 10, 31))
    assert lake2.read("bills").num_rows == 1
    code, out = invoke("bill", "reset", "--lake", lake2.root, "--before", D0, "--yes")
    assert code == 1 and "has issued 1 bill(s)" in one_line_error(out)


# -- one run at a time, audit, metrics ------------------------------------------------------------------
HOLDER = """
import sys, time, datetime as dt
from billing.batch import bill_day
from meters.lake import open_lake
def progress(day, phase):
    if phase == "read":
        print("running", flush=True)
        sys.stdin.readline()    # holds the lock until the test says go on
bill_day(open_lake(sys.argv[1]), dt.date(2026, 11, 1), progress=progress)
"""


def test_two_runs_at_once_the_second_exits_5_at_once_naming_the_holder(tmp_path):
    lake = make_lake(tmp_path, TWO)
    for m in (11, 12):
        feed(lake, m, D0, 1)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lake.root)], cwd=ROOT, stdout=subprocess.PIPE,
                              stdin=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "running"
        r = subprocess.run([sys.executable, "-m", "meters", "bill", "--lake", str(lake.root), "--date", "2026-11-01"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 5, r.stderr            # at once: the holder still holds the lock
        assert f"pid {holder.pid}" in one_line_error(r.stderr) and "another billing run holds the lock" in r.stderr
        st = json.loads(invoke("bill", "status", "--lake", lake.root, "--json")[1])
        assert st["in_flight"]["pid"] == holder.pid
        # --wait: the second run waits for the first, then runs (a re-run of the day: same money)
        waiting = subprocess.Popen([sys.executable, "-m", "meters", "bill", "--lake", str(lake.root), "--date", "2026-11-01",
                            "--wait", "90", "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        time.sleep(1.0)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, err
    finally:
        if holder.poll() is None and not holder.stdin.closed:
            holder.stdin.write("go\n")
            holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    runs = lake.read("runs").to_pylist()      # the audit keeps both runs of the day
    assert len(runs) == 2 and all(x["outcome"] == "settled" and x["who"] and x["finished_at"] for x in runs)
    assert runs[0]["money"] == runs[1]["money"] == Decimal("9.38")


def test_metrics_file_for_the_textfile_collector(tmp_path):
    lake = make_lake(tmp_path, TWO)
    for m in (11, 12):
        feed(lake, m, D0, 2)
    prom = tmp_path / "textfile" / "meters_billing.prom"
    code, out = invoke("bill", "--lake", lake.root, "--from", D0, "--to", D1, "--metrics-file", prom)
    assert code == 0, out
    text = prom.read_text()
    values = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines() if not ln.startswith("#")}
    assert values["meters_billing_last_run_days_billed"] == 2 and values["meters_billing_last_run_exit_code"] == 0
    assert values["meters_billing_last_run_money"] == 18.76 and values["meters_billing_last_run_coverage_ratio"] == 1
    assert values["meters_billing_last_success_timestamp_seconds"] == values["meters_billing_last_run_timestamp_seconds"]
    assert values["meters_billing_last_settled_day_end_timestamp_seconds"] == lake.day_bounds_utc(D1)[1].timestamp()
    assert "# TYPE meters_billing_last_run_duration_seconds gauge" in text
    success = values["meters_billing_last_success_timestamp_seconds"]
    time.sleep(0.01)
    code, _ = invoke("bill", "--lake", lake.root, "--date", D2, "--metrics-file", prom)   # no readings: 4
    assert code == 4
    values = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in prom.read_text().splitlines() if ln[0] != "#"}
    assert values["meters_billing_last_run_exit_code"] == 4 and values["meters_billing_last_run_days_billed"] == 0
    assert values["meters_billing_last_success_timestamp_seconds"] == success      # kept from the last success
    assert not [p for p in prom.parent.iterdir() if p.name != prom.name]          # no temporary file left


def test_alerts_by_kind_in_metrics(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,33,,,,,self:138\n")
    feed(lake, 11, D0, 1)
    prom = tmp_path / "m.prom"
    assert invoke("bill", "--lake", lake.root, "--date", D0, "--metrics-file", prom)[0] == 0
    assert 'meters_billing_last_run_alerts{kind="low_balance"} 1' in prom.read_text()


# -- integrity before money (issue 18, finding 6) ------------------------------------------------------
def test_missing_carried_state_is_a_damaged_lake_not_a_first_day(tmp_path):
    lake = make_lake(tmp_path, TWO)
    for m in (11, 12):
        feed(lake, m, D0, 4)
    bill_range(lake, D0, D2)
    opening = [r for r in ledger(lake) if r["kind"] == "opening"]
    # the repro: billing_state of D−1 (the first day) gone; re-billing D made every account "new" again
    shutil.rmtree(lake.partition_dir("billing_state", D0.isoformat()))
    code, out = invoke("bill", "--lake", lake.root, "--date", D1)
    assert code == 6 and "billing_state/day=2026-11-01: the carried state of 2026-11-01 is missing" in one_line_error(out)
    assert [r for r in ledger(lake) if r["kind"] == "opening"] == opening
    # a hole in the middle, and the last settled day's state lost
    shutil.copytree(tmp_path / "lake" / "billing_state" / "day=2026-11-02", lake.partition_dir("billing_state", "x"))
    shutil.rmtree(lake.partition_dir("billing_state", "x"))
    shutil.rmtree(lake.partition_dir("billing_state", D1.isoformat()))
    with pytest.raises(LakeDamaged, match="day=2026-11-02"):
        bill_day(lake, D2)
    shutil.rmtree(lake.partition_dir("billing_state", D2.isoformat()))
    with pytest.raises(LakeDamaged, match="day=2026-11-03: .* billed on that day"):
        bill_day(lake, D3)


def test_duplicate_account_ids_are_refused(tmp_path):
    lake = make_lake(tmp_path, TWO)
    for m in (11, 12):
        feed(lake, m, D0, 1)
    [f] = lake.current_files("accounts", None)
    shutil.copy(f, f.with_name("stray.parquet"))               # a stray copy (a lake without a manifest reads it)
    (f.parent / "_current").unlink()
    before = files(lake)
    code, out = invoke("bill", "--lake", lake.root, "--date", D0)
    assert code == 6 and "account id 1001 appears more than once" in one_line_error(out) and "stray.parquet" in out
    assert files(lake) == before


def _tariff_file(tmp_path, **changes) -> Path:
    d = json.loads((ROOT / "meters" / "data" / "tariffs" / "cn-bj-res-elec.json").read_text())
    d.update(d.pop("versions")[0])          # one version: 2012-07-01, 0.4883 / 0.5383 / 0.7883
    d.update(changes)
    p = tmp_path / f"tariff-{len(list(tmp_path.glob('tariff-*')))}.json"
    p.write_text(json.dumps(d))
    return p


def test_a_tariff_price_of_1e308_never_lands(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,100,,,,,self:138\n")
    bad = _tariff_file(tmp_path, tariff_id="bad", prices=[[1e308, 1e308, 1e308]])
    code, out = invoke("tariffs", "import", bad, "--lake", lake.root)
    assert code == 1 and "tariff bad version 2012-07-01: a price of 1e+308 CNY/kWh is outside 0..1000" in \
        one_line_error(out) and bad.name in out
    assert "bad" not in set(lake.read("tariffs").column("tariff_id").to_pylist())
    fixed = _tariff_file(tmp_path, tariff_id="fixed", fixed_charge=250000)
    code, out = invoke("tariffs", "import", fixed, "--lake", lake.root)
    assert code == 1 and "fixed charge 250000 CNY is outside 0..100000" in out
    # the bounds are configurable
    (lake.root / "billing.json").write_text(json.dumps({"fixed_max": 500000}))
    assert invoke("tariffs", "import", fixed, "--lake", lake.root)[0] == 0


def test_a_bad_version_in_the_lake_stops_billing_and_can_be_removed(tmp_path):
    from meters.registry import save_tariffs
    from meters.tariffs import load_tariff_file

    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,100,,,,,self:138\n")
    feed(lake, 11, D0, 3)
    bill_day(lake, D0)
    [bad] = load_tariff_file(_tariff_file(tmp_path, effective_from="2026-11-02", prices=[[1e308, 1e308, 1e308]]))
    save_tariffs(lake, [bad])                         # written around the import's checks
    before = files(lake)
    code, out = invoke("bill", "--lake", lake.root, "--date", D1)
    assert code == 6 and "tariff cn-bj-res-elec version 2026-11-02: a price of 1e+308" in one_line_error(out)
    assert "meters tariffs remove cn-bj-res-elec --version 2026-11-02" in out and files(lake) == before
    code, out = invoke("tariffs", "remove", "cn-bj-res-elec", "--version", "2012-07-01", "--lake", lake.root)
    assert code == 1 and "in force on settled days" in one_line_error(out)
    code, out = invoke("tariffs", "remove", "cn-bj-res-elec", "--version", "2026-11-02", "--lake", lake.root)
    assert code == 0 and "removed tariff cn-bj-res-elec version 2026-11-02" in out
    assert invoke("bill", "--lake", lake.root, "--date", D1)[0] == 0
    code, out = invoke("tariffs", "remove", "cn-bj-res-elec", "--version", "2030-01-01", "--lake", lake.root)
    assert code == 1 and "has no version 2030-01-01" in out


def test_a_version_that_cannot_price_its_accounts_is_refused_at_import(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,100,,,,,self:138\n")
    feed(lake, 11, D0, 1)
    bill_day(lake, D0)
    # five tiers: more than any tariff before, so the carried state (3 tiers) could not be priced with it
    five = _tariff_file(tmp_path, tariff_id="five", prices=[[0.4, 0.5, 0.6, 0.7, 0.8]],
                        tier_bounds=[[100, 200, 300, 400]] * 12)
    code, out = invoke("tariffs", "import", five, "--lake", lake.root)
    assert code == 1 and "changes the shape of the tariff tables" in one_line_error(out)
    assert "five" not in set(lake.read("tariffs").column("tariff_id").to_pylist())
    assert bill_day(lake, D0)[0].money_cents == 469


def test_accounts_csv_with_an_unquoted_thousands_comma_is_an_error_by_line(tmp_path):
    from meters.lake import init_lake

    lake = init_lake(tmp_path / "lake")
    csv = tmp_path / "accounts.csv"
    csv.write_text("account_id,meter_id,tariff_id,mode,balance\n"
                   "A0,10,cn-bj-res-elec,prepaid,5.00\n"
                   "A1,11,cn-bj-res-elec,prepaid,1,000.00\n")
    code, out = invoke("accounts", "import", csv, "--lake", lake.root)
    assert code == 1 and "line 3: 6 fields, the header has 5" in one_line_error(out)
    assert lake.read("accounts").num_rows == 0
    csv.write_text('account_id,meter_id,tariff_id,mode,balance\nA1,11,cn-bj-res-elec,prepaid,"1,000.00"\n')
    code, out = invoke("accounts", "import", csv, "--lake", lake.root)
    assert code == 1 and "line 2: balance '1,000.00' is not a number" in out
    csv.write_text("account_id,meter_id,tariff_id,mode,balance\nA1,11,cn-bj-res-elec,prepaid,1000.00\n")
    assert invoke("accounts", "import", csv, "--lake", lake.root)[0] == 0
    assert lake.read("accounts").column("balance").to_pylist() == [Decimal("1000.00")]


@pytest.mark.parametrize("table", ["accounts", "readings", "billing_state", "tariffs"])
def test_a_corrupt_file_of_a_table_billing_reads_is_exit_6_naming_it(tmp_path, table):
    lake = make_lake(tmp_path, TWO)
    for m in (11, 12):
        feed(lake, m, D0, 2)
    bill_day(lake, D0)
    key = {"readings": D1.isoformat(), "billing_state": D0.isoformat()}.get(table)
    f = lake.current_files(table, key)[0]
    f.write_bytes(b"PAR1" + b"\0" * 64)
    code, out = invoke("bill", "--lake", lake.root, "--date", D1)
    assert code == 6 and str(f) in one_line_error(out)


@pytest.mark.parametrize("values, want", [
    ([], True), (["a"], True), (["a", "b", "c"], True), (["a", "b", "b", "c"], False), (["b", "a"], False),
    (["a", None, "c"], False), ([1, 2, 3], True), ([1, 3, 3], False), ([3, 2, 1], False)])
def test_the_registry_check_skips_hashing_only_strictly_increasing_columns(values, want):
    """The registry's duplicate check skips hashing a column that is strictly increasing (chunked as the
    lake reads it); a repeat, a step down or a null sends it to the full count."""
    import pyarrow as pa

    from billing.guards import increasing

    c = pa.chunked_array([values[:2], values[2:]]) if values else pa.chunked_array([], pa.string())
    assert increasing(c) is want
