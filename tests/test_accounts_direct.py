"""Statements on the driver's cursor (accounts.direct) give the rows SQLAlchemy gives: values, types
and names, dates and instants included; expanding IN lists go through SQLAlchemy."""
import datetime as dt

import pytest
import sqlalchemy as sa

from accounts import payments, settings
from accounts.direct import DirectConnection, direct
from accounts.schema import accounts, contacts, payments as payments_table
from accounts.settings import in_force
from accounts_support import make_lake
from accounts.adopt import import_from_lake
from accounts.store import open_store


@pytest.fixture
def sqlite_store(tmp_path):
    s = open_store(make_lake(tmp_path / "lake"))
    import_from_lake(s, changed_by="test")
    yield s
    s.close()


def test_direct_rows_are_sqlalchemys_rows(sqlite_store):
    s = sqlite_store
    payments.pay(s, "1001", "12.34", "r-1", channel="wechat", payer="儿子")
    settings.add_contact(s, "1001", "+8613700000000", "son", changed_by="t", channel="t")
    day = s.today() + dt.timedelta(days=1)
    cases = [(sa.select(accounts).where(accounts.c.account_id == sa.bindparam("id")), {"id": "1001"}),
             (sa.select(accounts).where(accounts.c.account_id == sa.bindparam("id")), {"id": "nobody"}),
             (sa.select(payments_table).where(payments_table.c.account_id == "1001"), {}),
             (sa.select(accounts.c.account_id).where(accounts.c.account_id.in_(sa.bindparam("ids", expanding=True))),
              {"ids": ["1001", "1002"]})]
    with s.read() as conn:
        d = direct(conn)
        assert isinstance(d, DirectConnection)
        for stmt, params in cases:
            want, got = conn.execute(stmt, params).all(), d.execute(stmt, params).all()
            assert [tuple(r) for r in got] == [tuple(r) for r in want] and [r._asdict() for r in got] == [
                r._asdict() for r in want]
        assert isinstance(d.execute(cases[2][0]).first().received_at, dt.datetime)
        for table, part in ((settings.settings, [settings.settings.c.account_id]),
                            (contacts, [contacts.c.account_id, contacts.c.recipient])):
            want, got = in_force(conn, day, table, part, "1001"), in_force(d, day, table, part, "1001")
            assert got and [r._asdict() for r in got] == [r._asdict() for r in want]
        assert d.execute(cases[1][0], {"id": "1002"}).scalar() == "1002"
