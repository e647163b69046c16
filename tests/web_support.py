"""A settled small city for the web tests: meters with imported interval data, accounts (the mother's
prepaid account, a neighbour who runs into arrears), the days before yesterday billed by the real
nightly batch, the store with the page's channel and an operator with a console password, and
``meters serve`` on a free loopback port."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

from accounts_support import Server

from accounts.channels import add_channel
from accounts.passwords import set_password
from accounts.registry import import_from_lake
from accounts.status import set_name
from accounts.store import open_store
from billing.batch import bill_day
from meters.cli_import import import_file
from meters.lake import init_lake
from meters.registry import import_accounts

MOTHER, NEIGHBOUR, POSTPAID = "2001", "2002", "2003"
OPERATOR, PASSWORD = "ops", "correct horse battery"
DAYS = 2
ACCOUNTS_CSV = f"""account_id,meter_id,tariff_id,mode,balance,warn_1,warn_2,topup_below,topup_amount,contacts
{MOTHER},11,cn-bj-res-elec,prepaid,80.00,30,20,,,self:13800000001
{NEIGHBOUR},12,cn-bj-res-elec,prepaid,5.00,30,20,,,self:13800000002
{POSTPAID},13,cn-bj-res-elec,postpaid,,,,,,
"""


def readings_csv(path: Path, first: dt.date, days: int) -> Path:
    """15-minute consumption of meters 11-13 (0.5 kWh a quarter, more in the evening)."""
    lines = ["meter_id,ts,quantity"]
    start = dt.datetime.combine(first, dt.time())
    for m in (11, 12, 13):
        for i in range(1, days * 96 + 1):
            ts = start + dt.timedelta(minutes=15 * i)
            q = 0.9 if 18 <= (ts - dt.timedelta(minutes=15)).hour < 22 else 0.4
            lines.append(f"{m},{ts:%Y-%m-%dT%H:%M:%S},{q}")
    path.write_text("\n".join(lines) + "\n")
    return path


def settled_city(tmp: Path) -> SimpleNamespace:
    lake = init_lake(tmp / "lake")
    today = dt.datetime.now(lake.tz).date()
    first = today - dt.timedelta(days=DAYS + 1)
    import_file(lake, "csv", readings_csv(tmp / "readings.csv", first, DAYS))
    (tmp / "accounts.csv").write_text(ACCOUNTS_CSV)
    import_accounts(lake, tmp / "accounts.csv")
    for i in range(DAYS):
        bill_day(lake, first + dt.timedelta(days=i), now=dt.datetime.now(dt.timezone.utc))
    store = open_store(lake)
    import_from_lake(store, changed_by="test")
    set_name(store, MOTHER, "王秀英")
    add_channel(store, "web", "channel")
    add_channel(store, OPERATOR, "operator")
    set_password(store, OPERATOR, PASSWORD)
    server = Server(tmp / "lake", None).start()
    return SimpleNamespace(lake=lake, store=store, server=server, url=server.url,
                           last_day=first + dt.timedelta(days=DAYS - 1))
