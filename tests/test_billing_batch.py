"""Nightly billing batch: hand-checked money, alerts, ledger, bills, exactly-once re-runs.

Readings are built by hand with Lake.write (no broker). The Beijing electricity tariff
(0.4883 / 0.5383 / 0.7883 CNY/kWh, annual bounds 2880 / 4800 kWh) makes the money easy to check:
100 Wh per 15 minutes = 9.6 kWh a day = 4.68768 CNY. Daily charges are the rounded period-to-date
cost minus what was already charged, so they sum exactly to the period's cost: 4.69, 4.69, 4.68, 4.69 …
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from billing.batch import Config, bill_day, bill_range, settled_days
from billing.payments import pay
from billing.settle import Policy
from meters.errors import MetersError
from meters.lake import init_lake
from meters.registry import import_accounts
from meters.schemas import UTC_MS, UTC_S

D0 = dt.date(2026, 11, 1)
HEADER = "account_id,meter_id,tariff_id,mode,balance,warn_1,warn_2,topup_below,topup_amount,contacts\n"


def make_lake(tmp_path, rows: str, name="lake"):
    lake = init_lake(tmp_path / name)
    (tmp_path / f"{name}.csv").write_text(HEADER + rows)
    import_accounts(lake, tmp_path / f"{name}.csv")
    return lake


def write_registers(lake, meter: int, day: dt.date, reg0: int, step, skip=(), extra=None, received=None):
    """Register readings at every quarter hour of ``day`` (k = 1..96, ending at next midnight) plus
    the opening one at 00:00 (k = 0): register = reg0 + step × k (step may be a function of k)."""
    start, _ = lake.day_bounds_utc(day)
    regs, ts = [], []
    r = reg0
    for k in range(97):
        if k:
            r += step(k) if callable(step) else step
        if k in skip:
            continue
        regs.append(r if extra is None or k not in extra else extra[k])
        ts.append(start + dt.timedelta(minutes=15 * k))
    rec = received or start + dt.timedelta(days=1, hours=1)
    t = pa.table({"meter_id": [meter] * len(ts), "ts": pa.array(ts, UTC_S), "register_milli": regs,
                  "sender": ["test"] * len(ts), "received_at": pa.array([rec] * len(ts), UTC_MS)})
    for d in sorted({lake.local_day(x) for x in ts}):
        mask = pa.array([lake.local_day(x) == d for x in ts])
        lake.write("readings", t.filter(mask), d.isoformat())
    return r


def days(n, first=D0):
    return [first + dt.timedelta(days=i) for i in range(n)]


def feed(lake, meter, first, n, step=100, reg0=1000):
    r = reg0
    for d in days(n, first):
        r = write_registers(lake, meter, d, r, step)
    return r


def ledger(lake, account=None):
    rows = lake.read("ledger").sort_by([("ts", "ascending")]).to_pylist()
    return [r for r in rows if account is None or r["account_id"] == account]


def alerts(lake, kind=None):
    rows = lake.read("alerts").to_pylist()
    return [r for r in rows if kind is None or r["kind"] == kind]


def balance(lake, account, day):
    st = lake.read("billing_state", day.isoformat()).to_pylist()
    return next(r["balance"] for r in st if r["account_id"] == account)


def test_prepaid_day_charge_ledger_and_intervals(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,100,,,,,self:13800000001\n")
    feed(lake, 11, D0, 1)
    [res] = bill_day(lake, D0)
    assert res.money_cents == 469 and res.vee["ok"] == 96
    led = ledger(lake)
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in led] == [
        ("opening", Decimal("100.00"), Decimal("100.00")), ("charge", Decimal("-4.69"), Decimal("95.31"))]
    ch = lake.read("charges").to_pylist()
    assert ch[0]["amount"] == Decimal("4.69") and ch[0]["quantity"] == pytest.approx(9.6)
    iv = lake.read("intervals")
    assert iv.num_rows == 96 and set(iv.column("quality").to_pylist()) == {"actual"}
    assert alerts(lake) == []
    assert lake.read("runs").num_rows == 1


def test_low_balance_alerts_once_per_crossing_to_every_contact(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,35,,,,,self:138;daughter:139\n")
    feed(lake, 11, D0, 5)
    bill_range(lake, D0, D0 + dt.timedelta(days=4))
    # balances 30.31, 25.62, 20.94, 16.25, 11.56: warn_1 (30) crossed on day 2, warn_2 (20) on day 4
    assert balance(lake, "1001", D0 + dt.timedelta(days=4)) == Decimal("11.56")
    low = alerts(lake, "low_balance")
    assert sorted((r["day"], r["recipient"]) for r in low) == [
        ("2026-11-02", "138"), ("2026-11-02", "139"), ("2026-11-04", "138"), ("2026-11-04", "139")]
    assert "25.62" in low[0]["message"] and "30.00" in low[0]["message"]


def test_auto_topup(tmp_path):
    lake = make_lake(tmp_path, "1234,11,cn-bj-res-elec,prepaid,35,,,30,100,self:138;son:137\n")
    feed(lake, 11, D0, 2)
    bill_range(lake, D0, D0 + dt.timedelta(days=1))
    led = [(r["kind"], r["amount"], r["balance_after"]) for r in ledger(lake)]
    assert led[-2:] == [("charge", Decimal("-4.69"), Decimal("25.62")),
                        ("auto_topup", Decimal("100.00"), Decimal("125.62"))]
    top = alerts(lake, "auto_topup")
    assert {r["recipient"] for r in top} == {"138", "137"}
    assert top[0]["message"].startswith("Balance low, auto-paid 100.00 CNY for account 1234")
    assert alerts(lake, "low_balance") == []


def test_arrears_disconnect_payment_reconnect(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,5,,,,,self:138\n")
    feed(lake, 11, D0, 4)
    bill_range(lake, D0, D0 + dt.timedelta(days=2))
    # 0.31 (level 2 at once: one alert), -4.38 (arrears), -9.06 (disconnect after 1 day of grace)
    assert [r["day"] for r in alerts(lake, "low_balance")] == ["2026-11-01"]
    assert [r["day"] for r in alerts(lake, "arrears")] == ["2026-11-02"]
    assert [r["day"] for r in alerts(lake, "disconnect")] == ["2026-11-03"]
    d4 = D0 + dt.timedelta(days=3)
    noon = dt.datetime.combine(d4, dt.time(12), lake.tz)
    r = pay(lake, "1001", "5", "alipay-1", at=noon)              # −4.06: still in arrears
    assert r["status"] == "applied" and r["balance"] == "-4.06" and not r["reconnect"]
    r = pay(lake, "1001", "15", "alipay-2", at=noon + dt.timedelta(hours=1))
    assert r["balance"] == "10.94" and r["reconnect"]            # ordered at once, by the payment
    assert [x["day"] for x in alerts(lake, "reconnect")] == ["2026-11-04"]
    bill_day(lake, d4)
    rec = alerts(lake, "reconnect")                               # the nightly run does not repeat it
    assert [x["day"] for x in rec] == ["2026-11-04"] and "10.94" in rec[0]["message"]
    assert balance(lake, "1001", d4) == Decimal("6.25")
    st = lake.read("billing_state", d4.isoformat()).to_pylist()[0]
    assert st["disconnected"] is False and st["arrears_since"] is None


def test_payment_idempotent_and_errors(tmp_path):
    lake = make_lake(tmp_path, "M-7,11,cn-bj-res-elec,prepaid,50,,,,,self:138\n")
    feed(lake, 11, D0, 1)
    at = dt.datetime.combine(D0, dt.time(9), lake.tz)
    assert pay(lake, "M-7", "30.50", "wx-42", at=at)["status"] == "applied"
    assert pay(lake, "M-7", "30.50", "wx-42", at=at)["status"] == "duplicate"
    with pytest.raises(MetersError, match="already used"):
        pay(lake, "M-7", "31", "wx-42", at=at)
    with pytest.raises(MetersError, match="unknown account"):
        pay(lake, "nobody", "10", "x1", at=at)
    for bad in ("-5", "0", "abc", "1.234"):
        with pytest.raises(MetersError, match="amount"):
            pay(lake, "M-7", bad, "x2", at=at)
    bill_day(lake, D0)
    assert balance(lake, "M-7", D0) == Decimal("75.81")   # 50 + 30.50 once − 4.69
    assert len([r for r in ledger(lake) if r["kind"] == "topup"]) == 1
    assert [(r["recipient"], r["day"]) for r in alerts(lake, "payment")] == [("138", "2026-11-01")]
    with pytest.raises(MetersError, match="already settled"):
        pay(lake, "M-7", "1", "late", at=at)


def test_data_gap_alert_goes_to_operator_only(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,100,,,,,self:138\n")
    write_registers(lake, 11, D0, 1000, 100, skip=range(40, 50))
    [res] = bill_day(lake, D0)
    assert res.vee["gap"] == 11 and res.money_cents == 469      # 10 missing readings: 11 slots shared linearly
    gap = alerts(lake, "data_gap")
    assert [r["recipient"] for r in gap] == ["operator"] and "11 of 96" in gap[0]["message"]
    iv = lake.read("intervals").to_pylist()
    est = [r for r in iv if r["quality"] != "actual"]
    assert len(est) == 11 and all(r["flag"] == "gap" for r in est)


def test_rerun_same_day_is_identical(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,35,,,30,100,self:138\n"
                               "1002,12,cn-bj-res-elec,postpaid,,,,,,self:139\n")
    feed(lake, 11, D0, 3)
    feed(lake, 12, D0, 3, step=150)
    bill_range(lake, D0, D0 + dt.timedelta(days=2))
    money = lambda: [(r["account_id"], r["kind"], r["amount"], r["balance_after"], r["ref"]) for r in ledger(lake)]  # noqa: E731
    before = money(), lake.read("billing_state").drop_columns(["day"]).to_pylist(), alerts(lake)
    res = bill_day(lake, D0 + dt.timedelta(days=1))        # re-runs day 2 and the settled day 3
    assert [r.day for r in res] == days(2, D0 + dt.timedelta(days=1))
    after = money(), lake.read("billing_state").drop_columns(["day"]).to_pylist(), alerts(lake)
    assert before == after
    assert not any(r["kind"] == "adjustment" for r in ledger(lake))


def test_range_equals_day_by_day(tmp_path):
    rows = ("1001,11,cn-bj-res-elec,prepaid,12,,,,,self:138\n"
            "1002,12,cn-sh-res-elec-tou,prepaid,60,,,40,50,self:139\n"
            "1003,13,cn-bj-res-water,postpaid,,,,,,self:140\n")
    lakes = [make_lake(tmp_path, rows, "a"), make_lake(tmp_path, rows, "b")]
    for lake in lakes:
        feed(lake, 11, D0, 4, step=lambda k: 50 + (k % 7) * 30)
        feed(lake, 12, D0, 4, step=lambda k: 80 + (k % 5) * 20)
        feed(lake, 13, D0, 4, step=lambda k: 10 + k % 3)
        pay(lake, "1001", "10", "p1", at=dt.datetime.combine(D0 + dt.timedelta(days=2), dt.time(8), lake.tz))
    bill_range(lakes[0], D0, D0 + dt.timedelta(days=3))
    for d in days(4):
        bill_day(lakes[1], d)
    strip = lambda t: t.drop_columns([c for c in ("day", "month", "run_id") if c in t.column_names]).to_pylist()  # noqa: E731
    for name in ("ledger", "billing_state", "alerts", "charges", "charge_lines", "intervals"):
        a, b = (strip(lk.read(name)) for lk in lakes)
        assert a == b, name


def test_late_readings_rerun_gives_adjustment_not_second_charge(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,100,,,,,self:138\n")
    # the concentrator delivers the first 48 quarter hours only; the meter's profile is 100 Wh
    r = write_registers(lake, 11, D0, 1000, 100)                        # day 1 complete: profile 100
    d2 = D0 + dt.timedelta(days=1)
    write_registers(lake, 11, d2, r, 200, skip=range(49, 97))             # day 2: half, then silence
    bill_range(lake, D0, d2)
    # day 2 priced as 48 × 200 Wh actual + 48 × 100 Wh profile = 14.4 kWh → 7.03152 → 7.03
    first = [x for x in ledger(lake) if x["ref"] == "charge:2026-11-02"]
    assert first[0]["amount"] == Decimal("-7.03")
    # the rest arrives late (200 Wh per quarter hour all day): 19.2 kWh; to date 4.68768 + 9.37536
    # = 14.06304 → 14.06, so day 2 costs 9.37: the ledger keeps the 7.03 charge and adds −2.34
    write_registers(lake, 11, d2, r, 200, skip=range(0, 49), received=dt.datetime(2026, 11, 4, tzinfo=dt.timezone.utc))
    bill_day(lake, d2)
    day2 = [(x["kind"], x["amount"], x["balance_after"]) for x in ledger(lake) if x["ts"].date() == dt.date(2026, 11, 2)
            and x["kind"] != "opening"]
    assert day2 == [("charge", Decimal("-7.03"), Decimal("88.28")),
                    ("adjustment", Decimal("-2.34"), Decimal("85.94"))]
    assert balance(lake, "1001", d2) == Decimal("85.94")              # 100 − 14.06
    bill_day(lake, d2)                                                  # again: nothing new
    assert len([x for x in ledger(lake) if x["kind"] == "adjustment"]) == 1


def test_day_before_must_be_settled_and_interrupted_run(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,100,,,,,self:138\n")
    feed(lake, 11, D0, 3)
    bill_day(lake, D0)
    with pytest.raises(MetersError, match="2026-11-02 is not settled"):
        bill_day(lake, D0 + dt.timedelta(days=2))
    (lake.root / ".billing-inflight").write_text("2026-11-02")       # a crash during day 2's run
    with pytest.raises(MetersError, match="interrupted"):
        bill_range(lake, D0 + dt.timedelta(days=2), D0 + dt.timedelta(days=2))
    bill_range(lake, D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=2))
    assert settled_days(lake) == days(3)
    assert not (lake.root / ".billing-inflight").exists()


def test_crash_before_commit_leaves_previous_state(tmp_path, monkeypatch):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,100,,,,,self:138\n")
    feed(lake, 11, D0, 2)
    bill_day(lake, D0)
    import billing.state

    def boom(*a, **k):
        raise RuntimeError("power cut")
    monkeypatch.setattr(billing.state, "commit", boom)
    with pytest.raises(RuntimeError):
        bill_day(lake, D0 + dt.timedelta(days=1))
    assert settled_days(lake) == [D0]
    monkeypatch.undo()
    bill_day(lake, D0 + dt.timedelta(days=1))
    assert balance(lake, "1001", D0 + dt.timedelta(days=1)) == Decimal("90.62")
    assert [x["kind"] for x in ledger(lake)] == ["opening", "charge", "charge"]


def test_annual_tiers_across_new_year(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,5000,,,,,self:138\n")
    first = dt.date(2026, 12, 26)
    feed(lake, 11, first, 7, step=6000)                  # 6 kWh a quarter hour = 576 kWh a day
    bill_range(lake, first, first + dt.timedelta(days=6))
    ch = {r["day"]: r["amount"] for r in lake.read("charges").to_pylist()}
    # Dec 26-30: 5 × 576 = 2880 kWh in tier 1 (281.2608 a day); Dec 31 all tier 2; Jan 1 tier 1 again
    assert [ch[d.isoformat()] for d in days(7, first)] == [Decimal("281.26")] * 5 + [Decimal("310.06"),
                                                                                    Decimal("281.26")]
    lines = [r for r in lake.read("charge_lines", "2026-12-31").to_pylist()]
    assert [(r["tier"], r["quantity"]) for r in lines] == [(2, pytest.approx(576.0))]


def test_postpaid_bill_with_bands_and_arrears_notice(tmp_path):
    lake = make_lake(tmp_path, "P-1,21,cn-sh-res-elec-tou,postpaid,,,,,,self:150;wife:151\n")
    first = dt.date(2026, 11, 29)
    feed(lake, 21, first, 4)
    cfg = Config(policy=Policy(due_days=1))
    bill_range(lake, first, first + dt.timedelta(days=3), config=cfg)
    [bill] = lake.read("bills").to_pylist()
    # the account's first bill: partial, from its first billed day (not the period's 1 November)
    assert (bill["period_start"], bill["period_end"], bill["partial"]) == (first, dt.date(2026, 11, 30), True)
    # two days: day band 06-22 = 64 quarter hours × 0.1 = 6.4 kWh a day at 0.617, night 3.2 kWh at 0.307
    assert bill["quantity"] == pytest.approx(19.2) and bill["amount"] == Decimal("9.86")
    assert bill["due_date"] == dt.date(2026, 12, 1)
    lines = sorted((r["band"], r["tier"], round(r["quantity"], 6), r["amount"]) for r in lake.read("bill_lines").to_pylist())
    assert lines == [("day", 1, 12.8, Decimal("7.90")), ("night", 1, 6.4, Decimal("1.96"))]
    notes = alerts(lake, "arrears")
    assert {(r["day"], r["recipient"]) for r in notes} == {("2026-12-02", "150"), ("2026-12-02", "151")}
    assert "9.86" in notes[0]["message"] and "1.00" in notes[0]["message"]
    issued = alerts(lake, "bill_issued")
    assert {r["recipient"] for r in issued} == {"150", "151"} and {r["day"] for r in issued} == {"2026-11-30"}
    assert "2026-11-29 to 2026-11-30 (first bill, partial: billing started 2026-11-29): 9.86 CNY, due 2026-12-01" \
        in issued[0]["message"]
    bill_ledger = [r for r in ledger(lake) if r["ref"] == "bill:2026-11-29"]
    assert bill_ledger[0]["amount"] == Decimal("-9.86")


def test_daylight_saving_day_has_100_intervals(tmp_path):
    lake = init_lake(tmp_path / "ny", "America/New_York")
    (tmp_path / "ny.csv").write_text(HEADER + "NY-1,31,cn-bj-res-elec,prepaid,100,,,,,self:1212\n")
    import_accounts(lake, tmp_path / "ny.csv")
    day = dt.date(2026, 11, 1)                       # clocks go back: 25 hours
    start, end = lake.day_bounds_utc(day)
    n = int((end - start).total_seconds() // 900)
    ts = [start + dt.timedelta(minutes=15 * k) for k in range(n + 1)]
    t = pa.table({"meter_id": [31] * len(ts), "ts": pa.array(ts, UTC_S),
                  "register_milli": [1000 + 100 * k for k in range(len(ts))]})
    for d in sorted({lake.local_day(x) for x in ts}):
        lake.write("readings", t.filter(pa.array([lake.local_day(x) == d for x in ts])), d.isoformat())
    [res] = bill_day(lake, day)
    assert n == 100 and res.intervals == 100 and res.vee["ok"] == 100
    assert lake.read("charges").to_pylist()[0]["amount"] == Decimal("4.88")   # 10 kWh × 0.4883


def test_reconnect_by_the_nightly_run_when_paid_before_the_disconnect_was_settled(tmp_path):
    lake = make_lake(tmp_path, "1001,11,cn-bj-res-elec,prepaid,5,,,,,self:138\n")
    feed(lake, 11, D0, 4)
    bill_range(lake, D0, D0 + dt.timedelta(days=1))                  # arrears on day 2
    d4 = D0 + dt.timedelta(days=3)
    r = pay(lake, "1001", "20", "bank-9", at=dt.datetime.combine(d4, dt.time(9), lake.tz))
    assert not r["reconnect"]                                         # day 3 (the disconnect) not settled yet
    bill_range(lake, D0 + dt.timedelta(days=2), d4)
    assert [x["day"] for x in alerts(lake, "disconnect")] == ["2026-11-03"]
    assert [x["day"] for x in alerts(lake, "reconnect")] == ["2026-11-04"]


def test_imported_interval_data_is_billed(tmp_path):
    """Rows from `meters import` carry quantity_milli + interval_s (here 30 minutes, NEM12-style quality
    A/E) instead of a register: each fills its two quarter hours."""
    lake = make_lake(tmp_path, "NMI-1,41,cn-bj-res-elec,prepaid,100,,,,,self:138\n")
    start, _ = lake.day_bounds_utc(D0)
    ts = [start + dt.timedelta(minutes=30 * k) for k in range(1, 49)]
    t = pa.table({"meter_id": [41] * 48, "ts": pa.array(ts, UTC_S), "quantity_milli": [200] * 48,
                  "interval_s": pa.array([1800] * 48, pa.int32()), "quality": ["A"] * 47 + ["E"],
                  "sender": ["import:nem12"] * 48})
    for d in sorted({lake.local_day(x) for x in ts}):
        lake.write("readings", t.filter(pa.array([lake.local_day(x) == d for x in ts])), d.isoformat())
    [res] = bill_day(lake, D0)
    assert res.money_cents == 469 and res.vee["ok"] == 94 and res.vee["source"] == 2   # 9.6 kWh
    iv = lake.read("intervals").to_pylist()
    assert all(r["quantity"] == pytest.approx(0.1) for r in iv)
    assert [r["flag"] for r in iv if r["quality"] != "actual"] == ["source", "source"]


def test_compacted_partitions_skip_null_columns_and_bill_the_same(tmp_path):
    """Compacted partitions are read without the interval columns when the Parquet statistics say they
    are all null (day 1: registers only), and with them otherwise (day 2: imported interval rows too):
    the money and intervals equal those of the same readings in ordinary files."""
    rows = ("1001,11,cn-bj-res-elec,prepaid,100,,,,,self:138\n"
            "NMI-1,41,cn-bj-res-elec,prepaid,100,,,,,self:139\n")
    plain, comp = make_lake(tmp_path, rows, "plain"), make_lake(tmp_path, rows, "comp")
    for lake in (plain, comp):
        feed(lake, 11, D0, 2)
        start, _ = lake.day_bounds_utc(D0 + dt.timedelta(days=1))
        ts = [start + dt.timedelta(minutes=30 * k) for k in range(1, 48)]
        lake.write("readings", pa.table({
            "meter_id": [41] * 47, "ts": pa.array(ts, UTC_S), "quantity_milli": [200] * 47,
            "interval_s": pa.array([1800] * 47, pa.int32()), "quality": ["A"] * 46 + ["E"]}),
            (D0 + dt.timedelta(days=1)).isoformat())
    for key in comp.partitions("readings"):     # the same rows as one compacted file per day
        t = comp.read("readings", key).sort_by([("meter_id", "ascending"), ("ts", "ascending")])
        for f in comp.files("readings", key):
            f.unlink()
        comp.write("readings", t, key, file_name="compact-test.parquet")
    from meters.readings import INTERVAL_COLUMNS
    from meters.readings import null_columns as _null_columns
    k0, k1 = D0.isoformat(), (D0 + dt.timedelta(days=1)).isoformat()
    assert _null_columns(comp, comp.files("readings", k0), INTERVAL_COLUMNS) == set(INTERVAL_COLUMNS)
    assert _null_columns(comp, comp.files("readings", k1), INTERVAL_COLUMNS) == set()
    # (meter 41 has no readings on day 1: half the meters, billed on estimates)
    a = bill_range(plain, D0, D0 + dt.timedelta(days=1), allow_estimates=True)
    b = bill_range(comp, D0, D0 + dt.timedelta(days=1), allow_estimates=True)
    assert [r.money_cents for r in a] == [r.money_cents for r in b] and [r.vee for r in a] == [r.vee for r in b]
    assert b[1].vee["source"] == 2 and b[1].money_cents > 469
    strip = lambda lk: lk.read("intervals").drop_columns(["day"]).to_pylist()  # noqa: E731
    assert strip(plain) == strip(comp)


def test_vee_inputs_from_many_chunks_in_threads_equal_one_chunk():
    """_part_arrays works on groups of chunks in threads (tables over 1M rows): runs of a meter that
    continue across chunks and groups give the same CSR arrays as one chunk."""
    import numpy as np

    from billing.inputs import over_chunk_groups as _over_chunk_groups
    from billing.inputs import part_arrays as _part_arrays
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 40, 60_000)
    meter = np.repeat(np.arange(10, 10 + counts.size, dtype=np.int64), counts)
    n = meter.size
    ts = (1_700_000_000 + 900 * (np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts))).astype(np.int64)
    reg = rng.integers(0, 10**6, n)
    cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n, 37)]))
    one = pa.table({"meter_id": meter, "ts": pa.array(ts).cast(UTC_S), "register_milli": reg})
    many = pa.Table.from_batches([one.slice(a, b - a).to_batches()[0] for a, b in zip(cuts[:-1], cuts[1:])])
    assert many.column("meter_id").num_chunks == len(cuts) - 1 and n > 1_000_000
    ids = np.arange(10, 10 + counts.size, 2, dtype=np.int64)          # every other meter has an account
    a, da = _part_arrays(one, ids, 1_700_000_000, 900)
    b, db = _part_arrays(many, ids, 1_700_000_000, 900)
    assert da == db
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for g in (1, 2, 3, 7):
        got = _over_chunk_groups(lambda ch, off: (off, sum(len(c) for c in ch)), many.column("ts"), g)
        assert [o for o, _ in got] == list(np.cumsum([0] + [k for _, k in got])[:-1]) and sum(k for _, k in got) == n
