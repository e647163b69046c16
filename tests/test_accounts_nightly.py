"""The nightly batch on the account store, on SQLite and PostgreSQL: billing reads each day's payments,
settings and contacts from the store (through meters.nightly_inputs), records the watermark after its
commit, and keeps the lake's views (accounts, contacts, ledger, payments) in step; existing lakes are
adopted without losing a payment."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from accounts_support import Clock, PaymentStream, db_url, local  # noqa: F401  (fixtures)
from click.testing import CliRunner

from accounts import settings as st
from accounts.adopt import adopt_lake
from accounts.nightly import open_adopted
from accounts.payments import pay, reverse
from accounts.schema import payments, settings, settled_days
from billing.batch import bill_day
from billing.payments import pay as lake_pay
from meters.cli import cli
from meters.nightly_inputs import open_nightly_store
from meters.sql import connect
from test_billing_batch import D0, HEADER, feed, make_lake

ROWS = ("1001,11,cn-bj-res-elec,prepaid,40,30,20,,,self:+8613800000001\n"
        "1002,12,cn-bj-res-elec,prepaid,12,30,20,5,20,self:+8613800000002;son:+8613800000003\n")
DAY = [D0 + dt.timedelta(days=i) for i in range(5)]
WHO = {"changed_by": "daughter", "channel": "wechat"}


@pytest.fixture
def lake(tmp_path):
    lake = make_lake(tmp_path, ROWS)
    for m in (11, 12):
        feed(lake, m, D0, 5)
    return lake


@pytest.fixture
def store(lake, db_url):  # noqa: F811
    s = open_adopted(lake, db_url)
    yield s
    s.close()


def db_of(store):
    return None if store.engine.dialect.name == "sqlite" else store.engine.url.render_as_string(hide_password=False)


def bill(store, day):
    return bill_day(store.lake, day, db=db_of(store))


def outputs(lake, day):
    """Everything billing wrote about ``day`` that must not change when it is re-run (run ids aside)."""
    out = {}
    for name in ("charges", "alerts", "billing_state", "payments"):
        t = lake.read(name, day.isoformat())
        out[name] = sorted(map(str, t.drop_columns([c for c in ("run_id",) if c in t.column_names]).to_pylist()))
    led = lake.read("ledger")
    end = lake.day_bounds_utc(day)
    ts = led.column("ts")
    led = led.filter(pc.and_(pc.greater_equal(ts, end[0]), pc.less_equal(ts, end[1])))
    out["ledger"] = sorted(map(str, led.to_pylist()))
    return out


def state(lake, day):
    return {r["account_id"]: r["balance"] for r in lake.read("billing_state", day.isoformat()).to_pylist()}


def test_rerunning_settled_days_gives_the_first_runs_money_and_alerts(store):
    lake = store.lake
    store.clock = Clock(local(lake, DAY[0], 12))
    pay(store, "1001", "25.50", "wx-1", channel="wechat", payer="儿子")
    bill(store, DAY[0])
    store.clock = Clock(local(lake, DAY[1], 9))
    pay(store, "1002", 3, "ali-1", channel="alipay")
    bill(store, DAY[1])
    first = {d: outputs(lake, d) for d in DAY[:2]}
    assert first[DAY[0]]["payments"] and "wx-1" in str(first[DAY[0]]["ledger"])
    # after D1 is settled: settings change (dated today), a contact goes, a late payment arrives
    store.clock = Clock(local(lake, DAY[1], 23, 30))
    late = pay(store, "1001", 7, "wx-late", channel="wechat")     # received on D1, after D1 was settled
    store.clock = Clock(local(lake, DAY[2], 8))
    st.set_auto_topup(store, "1001", 100, 50, **WHO)               # would top up every day from the start
    st.set_warnings(store, "1002", [60, 50], **WHO)
    st.remove_contact(store, "1002", "+8613800000003", **WHO)
    bill(store, DAY[0])                                             # re-runs D0 and D1
    assert {d: outputs(lake, d) for d in DAY[:2]} == first
    bill(store, DAY[2])
    d2 = lake.read("payments", DAY[2].isoformat())
    assert d2.column("channel_ref").to_pylist() == ["wx-late"] and late["status"] == "applied"
    led = [r for r in lake.read("ledger").to_pylist() if r["account_id"] == "1001"]
    assert [r["ref"] for r in led if r["kind"] == "auto_topup"] == [f"auto_topup:{DAY[2]}"]   # from D2 on only
    alerts2 = lake.read("alerts", DAY[2].isoformat()).to_pylist()
    assert not any(a["recipient"] == "+8613800000003" for a in alerts2)   # the removed contact
    assert state(lake, DAY[2])["1001"] == state(lake, DAY[1])["1001"] + Decimal("7.00") + Decimal("50.00") \
        - Decimal("4.68")
    with store.read() as conn:
        marks = dict(conn.execute(sa.select(settled_days.c.day, settled_days.c.watermark)).all())
    assert marks == {DAY[0]: 1, DAY[1]: 2, DAY[2]: 3}
    # the analysts' views follow the store: settings in force today, contacts, payments in the ledger
    con = connect(lake)
    assert con.execute("SELECT topup_below FROM accounts WHERE account_id = '1001'").fetchone()[0] == Decimal("100")
    assert con.execute("SELECT count(*) FROM contacts WHERE account_id = '1002'").fetchone()[0] == 1
    assert con.execute("SELECT sum(amount) FROM payments").fetchone()[0] == Decimal("35.50")
    assert con.execute("SELECT count(*) FROM ledger WHERE kind = 'topup'").fetchone()[0] == 3


def test_a_payment_committed_while_the_run_reads_is_credited_exactly_once(store):
    lake = store.lake
    store.clock = Clock(local(lake, DAY[0], 23, 59, 59))   # the last second before midnight
    with PaymentStream(store, ("1001", "1002"), "wechat") as s:
        s.wait(10)
        bill(store, DAY[0])
        s.wait(10)
    refs = s.refs
    bill(store, DAY[1])
    on = {d: lake.read("payments", d.isoformat()).column("channel_ref").to_pylist() for d in DAY[:2]}
    assert len(on[DAY[0]]) >= 10 and len(on[DAY[1]]) >= 10          # some on the day, the rest the next
    assert sorted(on[DAY[0]] + on[DAY[1]]) == sorted(refs)          # each exactly once
    topups = [r for r in lake.read("ledger").to_pylist() if r["kind"] == "topup"]
    assert sorted(r["ref"] for r in topups) == sorted(f"wechat:{r}" for r in refs)
    paid = {a: sum(1 for i, r in enumerate(refs) if ("1001", "1002")[int(r[1:]) % 2] == a) for a in ("1001", "1002")}
    charges = {a: sum(r["amount"] for d in DAY[:2] for r in lake.read("charges", d.isoformat()).to_pylist()
                      if r["account_id"] == a) for a in ("1001", "1002")}
    opening = {"1001": Decimal(40), "1002": Decimal(12)}
    topped = {a: sum(r["amount"] for r in lake.read("ledger").to_pylist() if r["kind"] == "auto_topup"
                     and r["account_id"] == a) for a in ("1001", "1002")}
    assert state(lake, DAY[1]) == {a: opening[a] + paid[a] - charges[a] + topped[a] for a in opening}


def test_reversal_is_credited_as_a_negative_payment_once(store):
    lake = store.lake
    store.clock = Clock(local(lake, DAY[0], 10))
    pay(store, "1001", 30, "wx-9", channel="wechat")
    reverse(store, "wechat", "wx-9")
    assert reverse(store, "wechat", "wx-9")["status"] == "duplicate"
    bill(store, DAY[0])
    p = lake.read("payments", DAY[0].isoformat()).to_pylist()
    assert [r["amount"] for r in p] == [Decimal("30.00"), Decimal("-30.00")] and p[1]["reverses"] == p[0]["seq"]
    assert state(lake, DAY[0])["1001"] == Decimal("40") - Decimal("4.69")


def test_an_existing_lake_is_adopted_without_losing_or_doubling_a_payment(lake, db_url):  # noqa: F811
    lake_pay(lake, "1001", "10", "bank-1", at=dt.datetime.combine(DAY[0], dt.time(9), lake.tz))
    bill_day(lake, DAY[0])                                  # no store yet: the lake's payment files
    lake_pay(lake, "1002", "5", "bank-2", at=dt.datetime.combine(DAY[1], dt.time(9), lake.tz))
    before = outputs(lake, DAY[0])
    assert open_nightly_store(lake, db_url) is None or db_url  # SQLite: no accounts.db yet
    store = open_adopted(lake, db_url)
    try:
        assert adopt_lake(store) == {"accounts": 0, "payments": 0, "days": 0}   # once only
        with store.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(payments)).scalar_one() == 2
            assert conn.execute(sa.select(sa.func.count()).select_from(settings)).scalar_one() == 2
        bill(store, DAY[1])
        bill(store, DAY[0])                                 # re-run D0 and D1 on the store
        after = outputs(lake, DAY[0])
        assert {k: v for k, v in after.items() if k != "payments"} == \
               {k: v for k, v in before.items() if k != "payments"}
        assert lake.read("payments", DAY[0].isoformat()).column("channel_ref").to_pylist() == ["bank-1"]
        assert lake.read("payments", DAY[1].isoformat()).column("channel_ref").to_pylist() == ["bank-2"]
        topups = [r["ref"] for r in lake.read("ledger").to_pylist() if r["kind"] == "topup"]
        assert sorted(topups) == ["bank-1", "bank-2"]       # the adopted payments keep their ledger files
        assert state(lake, DAY[1])["1002"] == Decimal("12") + Decimal("5") - Decimal("4.69") - Decimal("4.69")
    finally:
        store.close()


def test_accounts_import_and_pay_commands_write_to_the_store(tmp_path, db_url):  # noqa: F811
    from meters.lake import init_lake

    lake = init_lake(tmp_path / "lake")
    db = ["--db", db_url] if db_url else []
    run = CliRunner()
    f = tmp_path / "a.csv"
    f.write_text(HEADER + ROWS)
    r = run.invoke(cli, ["accounts", "import", str(f), "--lake", str(lake.root), "--json", *db])
    assert r.exit_code == 0, r.output
    assert '"accounts_new": 2' in r.output
    assert lake.read("accounts").num_rows == 2 and lake.read("contacts").num_rows == 3
    files = {p: p.stat().st_mtime_ns for p in lake.root.glob("*/*.parquet")}
    r = run.invoke(cli, ["accounts", "import", str(f), "--lake", str(lake.root), "--json", *db])
    assert r.exit_code == 0 and '"settings_rows": 0' in r.output and '"contact_rows": 0' in r.output
    assert {p: p.stat().st_mtime_ns for p in lake.root.glob("*/*.parquet")} == files   # nothing written
    f.write_text("account_id,meter_id,tariff_id,mode\n1001,11,cn-bj-res-elec,prepaid\n")  # balance left out
    assert run.invoke(cli, ["accounts", "import", str(f), "--lake", str(lake.root), *db]).exit_code == 0
    acc = {r["account_id"]: r for r in lake.read("accounts").to_pylist()}
    assert acc["1001"]["balance"] == Decimal("40.00") and acc["1002"]["topup_below"] == Decimal("5.00")
    f.write_text(HEADER + "1003,13,cn-bj-res-elec,prepaid,1,,,,,\n1004,14,cn-bj-res-elec,prepaid,x,,,,,\n")
    r = run.invoke(cli, ["accounts", "import", str(f), "--lake", str(lake.root), *db])
    assert r.exit_code == 1 and "line 3: balance 'x'" in r.output and r.output.count("\n") == 1
    assert lake.read("accounts").num_rows == 2                           # all or nothing
    pay_args = ["pay", "1001", "10", "--ref", "c-1", "--lake", str(lake.root), *db]
    r = run.invoke(cli, pay_args)
    assert r.exit_code == 0 and "balance 50.00" in r.output
    assert "already applied" in run.invoke(cli, pay_args).output
    r = run.invoke(cli, ["balance", "1001", "--lake", str(lake.root), "--json", *db])
    assert '"balance": "50.00"' in r.output


def test_an_account_added_later_starts_on_the_next_unsettled_day(store, tmp_path):
    from accounts.registry import import_accounts_csv

    lake = store.lake
    bill(store, DAY[0])
    first = outputs(lake, DAY[0])
    (tmp_path / "more.csv").write_text(HEADER + "1003,13,cn-bj-res-elec,prepaid,9,,,,,\n")
    feed(lake, 13, D0, 2)
    import_accounts_csv(store, tmp_path / "more.csv")
    bill(store, DAY[0])                                  # the re-run leaves the new account out
    assert outputs(lake, DAY[0]) == first
    bill(store, DAY[1])
    led = [r for r in lake.read("ledger").to_pylist() if r["account_id"] == "1003"]
    assert [r["kind"] for r in led] == ["opening", "charge"] and led[0]["amount"] == Decimal("9.00")


def test_a_billing_reset_forgets_the_settled_days_of_the_store(store):
    from billing.status import reset
    from meters.errors import MetersError

    lake = store.lake
    store.clock = Clock(local(lake, DAY[1], 10))
    pay(store, "1001", 5, "wx-5", channel="wechat")
    bill(store, DAY[0])
    bill(store, DAY[1])
    with pytest.raises(MetersError, match="falls before"):
        reset(lake, DAY[2], db=db_of(store))
    reset(lake, DAY[1], db=db_of(store))
    assert lake.read("payments").num_rows == 0 and not lake.read("ledger").num_rows
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(settled_days)).scalar_one() == 0
    bill(store, DAY[1])                                  # the new start credits the payment once
    assert lake.read("payments", DAY[1].isoformat()).column("channel_ref").to_pylist() == ["wx-5"]


def test_a_lake_with_a_store_is_never_billed_past_it(store, monkeypatch):
    from meters.errors import MetersError

    monkeypatch.setenv("METERS_STORE", "not-installed")   # as if the implementation were missing
    with pytest.raises(MetersError, match="no account store implementation"):
        bill(store, DAY[0])
    assert not store.lake.partitions("billing_state")


def test_billing_on_the_store_over_a_cluster_equals_single_process(tmp_path, db_url, request):  # noqa: F811
    """`meters bill --cluster local:2` on a lake with an account store: the same money, outputs,
    recorded watermarks and queued alerts as the single-process run of the same store."""
    pytest.importorskip("dask.distributed")
    from billing.batch import bill_range
    from meters.outbox import outbox

    second = None if db_url is None else request.getfixturevalue("pg_cluster").create_database()
    runs = {}
    for name, db, cluster in (("one", db_url, None), ("many", second, "local:2")):
        lake = make_lake(tmp_path / name, ROWS)
        for m in (11, 12):
            feed(lake, m, D0, 5)
        s = open_adopted(lake, db)
        try:
            s.clock = Clock(local(lake, DAY[0], 12))
            pay(s, "1001", "25.50", "wx-1", channel="wechat", payer="儿子")
            s.clock = Clock(local(lake, DAY[1], 9))
            st.set_auto_topup(s, "1002", 30, 20, **WHO)
            pay(s, "1002", 3, "ali-1", channel="alipay")
            s.clock = Clock(local(lake, DAY[2], 23, 59, 59))
            st.remove_contact(s, "1002", "+8613800000003", **WHO)
            pay(s, "1001", "0.01", "wx-2", channel="wechat")
            results = bill_range(lake, DAY[0], DAY[2], db=db_of(s), cluster=cluster)
            with s.read() as conn:
                marks = conn.execute(sa.select(settled_days.c.day, settled_days.c.watermark)
                                     .order_by(settled_days.c.day)).all()
                queued = sorted(conn.execute(sa.select(outbox.c.alert_id, outbox.c.kind, outbox.c.recipient,
                                                       outbox.c.data)).all())
        finally:
            s.close()
        runs[name] = ([r.money_cents for r in results], {d: outputs(lake, d) for d in DAY[:3]}, marks, queued)
    assert runs["one"][0] != [0, 0, 0]
    assert runs["many"] == runs["one"]
