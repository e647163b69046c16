"""The outbox's bulk paths: a night queued by the driver's executemany stores exactly what
SQLAlchemy's own INSERT stores; a claim takes the longest due deliveries of both due states."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from meters import outbox
from meters.accountdb import create_engine

NOW = dt.datetime(2026, 11, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)


def _row(i: int, **kw) -> dict:
    return {"alert_id": f"al_{i}", "base_id": f"al_{i}", "digest": "d" * 64, "corrects": None,
            "account_id": f"{i:07d}", "day": dt.date(2026, 11, 1), "kind": "low_balance",
            "recipient": f"wechat:o6_{i}", "channel": "wechat", "language": "zh-CN", "data": '{"balance":1}',
            "state": "pending", "attempts": 0, "last_error": None, "next_attempt_at": NOW, "queued_at": NOW,
            "created_at": NOW, "sent_at": None} | kw


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'o.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_cluster").create_database())
    e = create_engine(url)
    outbox.metadata.create_all(e)
    yield e
    e.dispose()


def _raw(engine, ids) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            "SELECT * FROM outbox WHERE alert_id IN (%s) ORDER BY alert_id" % ",".join(f"'{i}'" for i in ids))]


def test_insert_many_stores_what_sqlalchemy_stores(engine):
    a = [_row(i, sent_at=NOW if i % 2 else None, last_error="x" if i == 3 else None) for i in range(6)]
    b = [r | {"alert_id": f"al_{i + 100}"} for i, r in enumerate(a)]
    with engine.begin() as conn:
        outbox.insert_many(conn, outbox.outbox, a)
        conn.execute(sa.insert(outbox.outbox), b)
    got, want = _raw(engine, [r["alert_id"] for r in a]), _raw(engine, [r["alert_id"] for r in b])
    assert [g[1:] for g in got] == [w[1:] for w in want]          # all but the id, byte for byte
    assert got[1][-1] == want[1][-1]                              # instants as SQLAlchemy writes them


def test_claim_takes_the_longest_due_of_both_states(engine):
    rows = [_row(i, next_attempt_at=NOW - dt.timedelta(seconds=100 - i)) for i in range(10)]
    rows += [_row(i, state="failed", next_attempt_at=NOW - dt.timedelta(seconds=100 - i)) for i in range(10, 15)]
    rows += [_row(99, next_attempt_at=NOW + dt.timedelta(seconds=5)), _row(98, state="sent")]
    with engine.begin() as conn:
        outbox.insert_many(conn, outbox.outbox, rows)
    got = outbox.claim(engine, 12, 60, now=NOW)
    assert [r["alert_id"] for r in got] == [f"al_{i}" for i in range(12)]
    assert all(r["attempts"] == 1 and r["queued_at"] == NOW for r in got)
    rest = outbox.claim(engine, 100, 60, now=NOW)                  # the leased ones are not due again
    assert sorted(r["alert_id"] for r in rest) == sorted(f"al_{i}" for i in range(12, 15))


def _night_alerts(n: int, day: dt.date, seed: int) -> list[dict]:
    """A night's alerts of every sort the outbox sees: contacts, ``account:`` stand-ins (skipped),
    operator alerts (to the operator, and one misaddressed), languages in any case or none, an id twice."""
    import random

    rng = random.Random(seed)
    recipients = ["wechat:o6_{i}", "sms:+86138{i:08d}", "email:a{i}@x.org", "+86139{i:08d}", "account:{i}", "operator"]
    out = []
    for i in range(n):
        kind = rng.choice(["low_balance", "arrears", "bill_issued", "data_gap", "disconnect_held"])
        r = rng.choice(recipients).format(i=i)
        out.append({"alert_id": outbox.alert_id(f"{i:07d}", day, kind, r), "account_id": f"{i:07d}", "day": day,
                    "kind": kind, "recipient": r, "language": rng.choice([None, "", "en", "EN", "zh-CN", "zh"]),
                    "data": outbox.canonical(balance=rng.randint(-5000, 5000), note="\"é\"\n")})
    return out + [dict(out[0], data='{"balance":0}')]           # the same id again: its last values win


def test_enqueue_equals_the_row_by_row_original(engine, tmp_path, request):
    from reference.outbox import enqueue_rowwise

    other = create_engine(f"sqlite:///{tmp_path / 'ref.db'}" if engine.dialect.name == "sqlite"
                          else request.getfixturevalue("pg_cluster").create_database())
    outbox.metadata.create_all(other)
    day = dt.date(2026, 11, 1)
    first = _night_alerts(300, day, 1)
    again = [dict(a, data=a["data"].replace("1", "2")) if i % 3 == 0 else a for i, a in enumerate(_night_alerts(300, day, 1))]
    for alerts, now in ((first, NOW), (again, NOW + dt.timedelta(hours=1)), (again, NOW + dt.timedelta(hours=2))):
        got = outbox.enqueue(engine, alerts, now=now)
        assert got == enqueue_rowwise(other, alerts, now=now)
        with engine.begin() as conn:          # some delivered: their corrections name them
            conn.execute(sa.update(outbox.outbox).where(outbox.outbox.c.alert_id < "al_m").values(state="sent"))
        with other.begin() as conn:
            conn.execute(sa.update(outbox.outbox).where(outbox.outbox.c.alert_id < "al_m").values(state="sent"))
    cols = [c for c in outbox.outbox.columns]
    with engine.connect() as a, other.connect() as b:
        want = b.execute(sa.select(*cols).order_by(outbox.outbox.c.alert_id)).all()
        assert a.execute(sa.select(*cols).order_by(outbox.outbox.c.alert_id)).all() == want
    assert len(want) > 100 and got["unchanged"] > 0 and any(r.corrects for r in want)
    other.dispose()
