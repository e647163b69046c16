"""The account store as a library, on SQLite and PostgreSQL: migrations, idempotent payments,
balances, reversals, dated settings, the registry import and the nightly read protocol."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa
from accounts_support import USERS, Clock, PaymentStream, db_url, local, make_lake, store  # noqa: F401  (fixtures)
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from accounts import settings as st
from accounts.errors import Conflict, Invalid, NotFound
from accounts.nightly import PAYMENTS, payments_for_day, record_settled, settings_in_force
from accounts.payments import balance, pay, reverse
from accounts.registry import import_accounts_csv, import_from_lake
from accounts.schema import metadata, payments, settings
from accounts.status import account_status, mask_name
from accounts.store import open_store
from meters.schemas import ACCOUNTS

D = dt.date(2026, 11, 20)


def count(store, table) -> int:
    with store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_migrated_schema_is_the_schema_the_queries_use(store):
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    again = open_store(store.lake, None if store.engine.dialect.name == "sqlite" else str(store.engine.url))
    assert count(again, payments) == 0  # reopening does not re-create anything
    again.close()


def test_pay_is_idempotent_per_channel_reference(store):
    first = pay(store, "1001", "12.34", "wx-1", channel="wechat", payer="son")
    assert first["status"] == "applied" and first["balance"] == "62.34"
    again = pay(store, "1001", Decimal("12.34"), "wx-1", channel="wechat", payer="son")
    assert again == {**first, "status": "duplicate"}
    other_channel = pay(store, "1001", "12.34", "wx-1", channel="alipay")   # another channel's reference
    assert other_channel["status"] == "applied" and other_channel["balance"] == "74.68"
    for body in ({"user_number": "1002", "amount": "12.34"}, {"user_number": "1001", "amount": "12.35"}):
        with pytest.raises(Conflict, match="already used"):
            pay(store, body["user_number"], body["amount"], "wx-1", channel="wechat", payer="son")
    assert count(store, payments) == 2
    assert balance(store, "1001")["balance"] == "74.68"


@pytest.mark.parametrize("amount", [-1, 0, "0.00", "1.234", 12.345, "1e12", 10**9, "abc", "NaN", "Infinity",
                                    True, None, ""])
def test_bad_amounts_are_refused_and_change_nothing(store, amount):
    with pytest.raises(Invalid, match="amount"):
        pay(store, "1001", amount, "ref-bad", channel="wechat")
    assert count(store, payments) == 0


def test_unknown_user_and_empty_reference(store):
    with pytest.raises(NotFound, match="9999"):
        pay(store, "9999", 10, "r1", channel="wechat")
    with pytest.raises(Invalid, match="channel_ref"):
        pay(store, "1001", 10, "  ", channel="wechat")
    assert count(store, payments) == 0


def test_reversal_is_a_negative_entry_naming_the_original(store):
    p = pay(store, "1002", 30, "ali-9", channel="alipay")
    r = reverse(store, "alipay", "ali-9")
    assert r["amount"] == "-30.00" and r["balance"] == "0.00" and r["channel_ref"] == "reversal:ali-9"
    assert reverse(store, "alipay", "ali-9")["status"] == "duplicate"
    with store.read() as conn:
        assert conn.execute(sa.select(payments.c.reverses).where(payments.c.seq == r["seq"])).scalar() == p["seq"]
    with pytest.raises(Invalid, match="itself a reversal"):
        reverse(store, "alipay", "reversal:ali-9")


def test_account_status_masks_the_name_and_follows_the_balance(store):
    from accounts.status import set_name

    set_name(store, "1001", "张三明")
    a = account_status(store, "1001")
    assert a["name"] == "张*明" and a["utility"] == "electricity" and a["mode"] == "prepaid"
    assert (a["balance"], a["status"]) == ("50.00", "ok")
    assert account_status(store, "1002")["status"] == "low"
    reverse(store, "c", pay(store, "1002", "5", "x", channel="c")["channel_ref"])
    assert mask_name("张三") == "张*" and mask_name("Wang Fang") == "W*******g" and mask_name("A") == "A"
    with pytest.raises(NotFound):
        account_status(store, "nope")


def test_balance_is_last_settled_balance_plus_later_payments(store):
    lake = store.lake
    store.clock = Clock(local(lake, D, 10))
    pay(store, "1001", 10, "a", channel="c")                     # credited by the run of D
    t, w = payments_for_day(store, D)
    assert t.column("channel_ref").to_pylist() == ["a"]
    state = pa.table({"account_id": ["1001", "1002", "1003"], "meter_id": [1, 2, 3],
                      "balance": pa.array([Decimal("41.25"), Decimal("-3.00"), Decimal("-80.00")], pa.decimal128(18, 2)),
                      "level": pa.array([0, 2, 0], pa.int8()), "disconnected": [False, True, False],
                      "arrears_since": pa.array([None, D, D - dt.timedelta(days=3)], pa.date32())})
    lake.write("billing_state", state, D.isoformat())           # what the nightly run of D left
    record_settled(store, D, w)
    store.clock = Clock(local(lake, D + dt.timedelta(days=1), 9))
    pay(store, "1001", "0.75", "b", channel="c")
    assert balance(store, "1001") == {"user_number": "1001", "balance": "42.00", "last_settled_day": D.isoformat()}
    assert account_status(store, "1001", details=True)["balance"] == "42.00"      # the query's own statement
    assert account_status(store, "1001")["status"] == "ok"
    assert account_status(store, "1002")["status"] == "disconnected"   # until the nightly run reconnects
    assert account_status(store, "1003")["status"] == "arrears"        # postpaid, overdue and unpaid
    pay(store, "1003", 80, "pays-off", channel="c")
    assert account_status(store, "1003") | {"balance": None} == {
        "user_number": "1003", "name": None, "utility": "water", "mode": "postpaid", "balance": None,
        "status": "ok", "last_settled_day": D.isoformat()}


def test_late_payment_lands_on_the_next_day_and_reruns_repeat_the_first_run(store):
    lake = store.lake
    store.clock = Clock(local(lake, D, 23, 59, 59))
    pay(store, "1001", 1, "on-time", channel="c")
    t, w = payments_for_day(store, D)
    pay(store, "1001", 2, "late-commit", channel="c")             # received on D, committed after the read
    record_settled(store, D, w)
    pay(store, "1001", 4, "after-settled", channel="c")           # received on D after D was settled
    store.clock = Clock(local(lake, D + dt.timedelta(days=1), 0, 0, 1))
    pay(store, "1002", 8, "next-day", channel="c")
    assert t.column("channel_ref").to_pylist() == ["on-time"] and t.schema == PAYMENTS
    assert payments_for_day(store, D) == (t, w)                   # a re-run reads the same payments
    t2, w2 = payments_for_day(store, D + dt.timedelta(days=1))
    assert t2.column("channel_ref").to_pylist() == ["late-commit", "after-settled", "next-day"]
    assert w2 == w + 3
    assert record_settled(store, D, w) is False
    with pytest.raises(Conflict):
        record_settled(store, D, w + 1)
    with pytest.raises(Invalid, match="in order"):
        payments_for_day(store, D - dt.timedelta(days=1))


def test_skipped_days_lose_no_payment(store):
    lake = store.lake
    store.clock = Clock(local(lake, D, 12))
    pay(store, "1001", 1, "d0", channel="c")
    store.clock = Clock(local(lake, D + dt.timedelta(days=1), 0, 1))
    pay(store, "1001", 2, "d1-early", channel="c")                # received on D+1 before the run of D read
    t, w = payments_for_day(store, D)
    assert t.column("channel_ref").to_pylist() == ["d0"] and w == 2
    record_settled(store, D, w)
    store.clock = Clock(local(lake, D + dt.timedelta(days=2), 12))
    pay(store, "1001", 4, "d2", channel="c")
    t3, _ = payments_for_day(store, D + dt.timedelta(days=3))     # D+1 and D+2 were never settled
    assert t3.column("channel_ref").to_pylist() == ["d1-early", "d2"]


def test_a_payment_committed_while_the_run_reads_is_credited_exactly_once(store):
    lake = store.lake
    store.clock = Clock(local(lake, D, 23, 59, 59))
    with PaymentStream(store, USERS[:2]) as s:
        s.wait(20)
        t, w = payments_for_day(store, D)
        record_settled(store, D, w)
        s.wait(20)
    refs = s.refs
    t2, _ = payments_for_day(store, D + dt.timedelta(days=1))
    first, second = t.column("channel_ref").to_pylist(), t2.column("channel_ref").to_pylist()
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(refs) and len(first) >= 20 and len(second) >= 20
    assert max(t.column("seq").to_pylist()) == w < min(t2.column("seq").to_pylist())


def test_a_settings_change_dated_today_leaves_earlier_days_unchanged(store):
    lake = store.lake
    before = settings_in_force(store, D)
    assert before.schema == ACCOUNTS and before.column("account_id").to_pylist() == list(USERS)
    store.clock = Clock(local(lake, D + dt.timedelta(days=1), 8))
    who = {"changed_by": "daughter", "channel": "wechat"}
    r = st.set_auto_topup(store, "1001", "15.50", 100, **who)
    assert r["changed"] and r["effective_from"] == (D + dt.timedelta(days=1)).isoformat()
    assert st.set_auto_topup(store, "1001", "15.50", "100.00", **who)["changed"] is False  # no second row
    st.set_warnings(store, "1001", ["40", "25"], **who)
    assert settings_in_force(store, D) == before
    after = settings_in_force(store, D + dt.timedelta(days=1)).to_pylist()[0]
    assert (after["topup_below"], after["topup_amount"], after["warn_1"]) == (Decimal("15.50"), Decimal("100.00"),
                                                                               Decimal("40.00"))
    record_settled(store, D + dt.timedelta(days=1), 0)
    with pytest.raises(Invalid, match="settled"):
        st.set_auto_topup(store, "1001", None, None, **who)    # today is settled: cannot change it any more
    with pytest.raises(Invalid, match="level 2"):
        st.set_warnings(store, "1001", ["10", "20"], effective_from=D + dt.timedelta(days=2), **who)
    with pytest.raises(NotFound):
        st.set_warnings(store, "none", ["10", "5"], effective_from=D + dt.timedelta(days=2), **who)


def test_contacts_are_dated_adds_and_removals(store):
    lake = store.lake
    store.clock = Clock(local(lake, D, 8))
    who = {"changed_by": "son", "channel": "alipay"}
    r = st.add_contact(store, "1001", "+8613900000009", "son", "en", **who)
    assert {"recipient": "+8613900000009", "relation": "son", "language": "en"} in r["contacts"]
    assert st.add_contact(store, "1001", "+8613900000009", "son", "en", **who)["changed"] is False
    store.clock = Clock(local(lake, D + dt.timedelta(days=1), 8))
    st.remove_contact(store, "1001", "+8613800000001", **who)
    with pytest.raises(NotFound):
        st.remove_contact(store, "1001", "+86000", **who)
    on = lambda day: sorted(r["recipient"] for r in st.contacts_in_force(store, day).to_pylist()  # noqa: E731
                            if r["account_id"] == "1001")
    assert on(D - dt.timedelta(days=1)) == ["+8613800000001"]
    assert on(D) == ["+8613800000001", "+8613900000009"]
    assert on(D + dt.timedelta(days=1)) == ["+8613900000009"]
    store.clock = Clock(local(lake, D + dt.timedelta(days=2), 8))
    st.add_contact(store, "1001", "+8613800000001", "mother", "en", **who)     # back, with another relation
    st.add_contact(store, "1001", "+8613900000009", "son", "zh", **who)        # a change of language
    with store.read() as conn:   # one account's contacts (the balance query's read) = the window query's
        for day in (D - dt.timedelta(days=1), D, D + dt.timedelta(days=1), D + dt.timedelta(days=2)):
            for n in ("1001", "1002", "1003"):
                assert st.contacts_of(conn, n, day) == st.contacts_by_account(conn, {n}, day).get(n, [])
        assert [c["relation"] for c in st.contacts_of(conn, "1001", D + dt.timedelta(days=2))] == ["mother", "son"]


def test_import_leaves_out_columns_and_writes_nothing_when_unchanged(store, tmp_path):
    n_settings = count(store, settings)
    assert import_from_lake(store, changed_by="again")["settings_rows"] == 0
    assert count(store, settings) == n_settings
    f = tmp_path / "partial.csv"
    f.write_text("account_id,meter_id,tariff_id,mode,warn_1\n1001,1,cn-bj-res-elec,prepaid,45\n")
    store.clock = Clock(local(store.lake, D, 8))
    r = import_accounts_csv(store, f, changed_by="ops")
    assert (r["settings_rows"], r["accounts_changed"], r["contact_rows"]) == (1, 0, 0)
    assert balance(store, "1001")["balance"] == "50.00"          # balance left out: opening balance kept
    old, new = settings_in_force(store, D - dt.timedelta(days=1)), settings_in_force(store, D)
    assert old.to_pylist()[0]["warn_1"] == Decimal("30.00") and new.to_pylist()[0]["warn_1"] == Decimal("45.00")
    assert new.to_pylist()[0]["warn_2"] == Decimal("20.00")     # warn_2 left out: unchanged
    assert import_accounts_csv(store, f, changed_by="ops")["settings_rows"] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("account_id,meter_id,tariff_id,mode\n1001,1,cn-bj-res-elec,prepaid\n1004,4,nope,prepaid\n")
    with pytest.raises(Exception, match="line 3"):
        import_accounts_csv(store, bad, changed_by="ops")
    assert count(store, settings) == n_settings + 1


def test_sqlite_commits_are_durable_and_a_bad_db_url_is_refused(tmp_path):
    s = open_store(make_lake(tmp_path / "lake"))
    assert s.engine.url.database == str((tmp_path / "lake" / "accounts.db").resolve())
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    s.close()
    from meters.errors import MetersError
    with pytest.raises(MetersError, match="postgresql://"):
        open_store(s.lake, "mysql://x")
    with pytest.raises(MetersError, match="cannot open the account store"):
        open_store(s.lake, "postgresql://nobody@127.0.0.1:1/none")


def test_concurrent_payments_commit_together_and_one_bad_payment_fails_alone(store):
    """On SQLite concurrent payments share a group commit: an unknown user number or a reused reference
    in the group is answered alone, every other payment is applied once, numbered in commit order."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(USERS[i % 3], f"g{i % 30}") for i in range(60)] + [("nobody", f"bad{i}") for i in range(5)]

    def one(job):
        try:
            return pay(store, job[0], 1, job[1], channel="c")["status"]
        except (NotFound, Conflict) as e:
            return type(e).__name__

    with ThreadPoolExecutor(20) as ex:
        out = list(ex.map(one, jobs))
    assert out.count("applied") == 30 and out.count("duplicate") == 30 and out.count("NotFound") == 5
    with store.read() as conn:
        seqs = conn.execute(sa.select(payments.c.seq).order_by(payments.c.seq)).scalars().all()
    assert len(seqs) == 30 and len(set(seqs)) == 30
    assert sum(Decimal(balance(store, u)["balance"]) for u in USERS) == Decimal("50.00") + 30   # openings 50 + 0 + 0


def test_sqlite_checkpoints_run_outside_commits_and_start_the_log_again(tmp_path, monkeypatch):
    """The store's connections never checkpoint inside a commit; the background checkpoint copies the
    log and, once it holds RESTART_FRAMES pages, starts it again (the next commit writes from its
    beginning) — unless a reader still holds old pages: then it leaves the log as it is and does it
    the next time. Every payment stays in the store."""
    import sqlite3
    from pathlib import Path

    from accounts import checkpoint

    monkeypatch.setattr(checkpoint, "RESTART_FRAMES", 20)
    s = open_store(make_lake(tmp_path / "lake"))
    s.checkpointer.every_s = 3600   # this test runs the checkpoints itself
    import_from_lake(s, changed_by="test")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    con = sqlite3.connect(s.engine.url.database, isolation_level=None)
    cp = checkpoint.Checkpointer(s.engine.url.database, s.exclusive)

    def log_pages():
        return con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]

    for i in range(30):
        pay(s, USERS[i % 3], 1, f"a{i}", channel="c")
    wal = Path(f"{s.engine.url.database}-wal")
    assert wal.stat().st_size >= 30 * 4096      # one commit, at least one page: nothing was copied back
    reader = sqlite3.connect(s.engine.url.database, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM payments").fetchone() == (30,)
    pay(s, USERS[0], 1, "b0", channel="c")      # the reader's snapshot now lacks a page of the log
    mode, busy, log, done, *_ = cp.checkpoint(con)
    assert (mode, busy) == ("RESTART", 1) and done < log
    pay(s, USERS[0], 1, "b1", channel="c")
    assert log_pages() > log                     # the log went on growing
    assert reader.execute("SELECT count(*) FROM payments").fetchone() == (30,)
    reader.execute("COMMIT")
    mode, busy, log, done, *_ = cp.checkpoint(con)
    assert (mode, busy) == ("RESTART", 0) and done == log >= 30
    pay(s, USERS[0], 1, "b2", channel="c")
    assert 0 < log_pages() < 20                  # written from the log's start again
    assert count(s, payments) == 33
    s.close()
    assert con.execute("SELECT count(*) FROM payments").fetchone() == (33,)
    con.close()


def test_payments_queued_while_another_process_writes_share_one_group(tmp_path):
    """SQLite: the payment writer takes the writers' flock before it takes its group, so the payments
    that arrive while another process holds it are committed together, in one transaction."""
    import fcntl
    import time

    from accounts.payments import submit

    s = open_store(make_lake(tmp_path / "lake"))
    import_from_lake(s, changed_by="test")
    groups = []
    s.clock = lambda: groups.append(1) or dt.datetime(2026, 11, 20, 8, tzinfo=dt.timezone.utc)  # once per group
    with s.exclusive():
        with s.exclusive():   # re-entrant in the thread that holds it
            pass
    other = open(f"{s.engine.url.database}-writer.lock", "a+b")   # another process's lock (its own open file)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        futures = [submit(s, USERS[0], 1, "q0", channel="c")]
        time.sleep(0.3)   # the writer thread is up and waits for the flock
        futures += [submit(s, USERS[i % 3], 1, f"q{i}", channel="c") for i in range(1, 5)]
        assert not any(f.done() for f in futures)
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        other.close()
    assert [f.result(timeout=30)["status"] for f in futures] == ["applied"] * 5
    assert len(groups) == 1 and count(s, payments) == 5
    s.close()
