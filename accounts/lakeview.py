"""What the lake says about an account: the last settled state (``billing_state``) and the billing
outputs (bills, daily charges, ledger, alerts, runs). Read-only, through meters/ readers and the
analysts' views (:func:`meters.sql.connect`); never through billing/."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from meters.lake import Lake


@dataclass(frozen=True)
class Settled:
    """One account after the last settled day."""

    day: dt.date
    balance_cents: int
    level: int
    arrears_since: dt.date | None
    disconnected: bool


def last_settled_day(lake: Lake) -> dt.date | None:
    """The newest day with a ``billing_state`` partition (None: nothing settled yet)."""
    days = lake.partitions("billing_state")
    return dt.date.fromisoformat(days[-1]) if days else None


def _settled_table(lake: Lake, day: dt.date, cache: dict) -> dict[str, Settled]:
    files = tuple((p.name, p.stat().st_mtime_ns) for p in lake.current_files("billing_state", day.isoformat()))
    key = ("billing_state", day, files)
    hit = cache.get("settled")
    if hit and hit[0] == key:
        return hit[1]
    t = lake.read("billing_state", day.isoformat(),
                  columns=["account_id", "balance", "level", "arrears_since", "disconnected"])
    out = {r["account_id"]: Settled(day, int(r["balance"] * 100), int(r["level"] or 0), r["arrears_since"],
                                    bool(r["disconnected"])) for r in t.to_pylist()}
    cache["settled"] = (key, out)
    return out


def settled(lake: Lake, account_id: str, cache: dict | None = None) -> Settled | None:
    """The account's state after the last settled day (None: not settled yet). ``cache`` (a dict
    kept by the caller) holds the newest partition until its files change."""
    day = last_settled_day(lake)
    if day is None:
        return None
    return _settled_table(lake, day, {} if cache is None else cache).get(account_id)


def settled_table(lake: Lake, cache: dict | None = None) -> tuple[dt.date | None, dict[str, Settled]]:
    """(the last settled day, every account's state after it): ``(None, {})`` before any settled day."""
    day = last_settled_day(lake)
    return (day, {}) if day is None else (day, _settled_table(lake, day, {} if cache is None else cache))


def query(lake: Lake, sql: str, params: list) -> list[dict]:
    """Rows of a parameterized SELECT over the analysts' views of the lake (money as ``"12.34"``)."""
    from meters.sql import connect

    con = connect(lake, threads=1)
    try:
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    finally:
        con.close()
    return [{k: (f"{v:.2f}" if isinstance(v, Decimal) else v) for k, v in zip(names, r)} for r in rows]


def bills(lake: Lake, account_id: str) -> list[dict]:
    return query(lake, "SELECT period_start, period_end, quantity, amount, due_date FROM bills "
                       "WHERE account_id = ? ORDER BY period_start", [account_id])


def usage(lake: Lake, account_id: str, start: dt.date | None, end: dt.date | None) -> list[dict]:
    """Daily consumption (the ``charges`` view: one row per billing day) between ``start`` and
    ``end`` inclusive."""
    return query(lake, "SELECT day, quantity, amount FROM charges WHERE account_id = ? "
                       "AND day >= coalesce(?::DATE, DATE '0001-01-01') AND day <= coalesce(?::DATE, DATE '9999-12-31') "
                       "ORDER BY day", [account_id, start, end])


def ledger(lake: Lake, account_id: str, limit: int) -> list[dict]:
    return query(lake, "SELECT ts, kind, amount, balance_after, ref FROM ledger WHERE account_id = ? "
                       "ORDER BY ts DESC LIMIT ?", [account_id, limit])


def alerts(lake: Lake, account_id: str, limit: int) -> list[dict]:
    return query(lake, "SELECT ts, kind, recipient, message, alert_id FROM alerts WHERE account_id = ? "
                       "ORDER BY ts DESC LIMIT ?", [account_id, limit])


def runs(lake: Lake, limit: int) -> list[dict]:
    return query(lake, "SELECT day, run_id, started_at, duration_s, accounts, money FROM runs "
                       "ORDER BY day DESC, started_at DESC LIMIT ?", [limit])
