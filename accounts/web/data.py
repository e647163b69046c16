"""What the pages show, read from the store (indexed queries through :mod:`accounts.status`) and the
lake (DuckDB over the analysts' views, one connection per page). The console's whole-city figures
(load curve, accounts in arrears) are computed once per settled partition and kept in ``store.cache``
until its files change."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from meters.lake import Lake
from meters.sql import connect

from .. import lakeview, status
from ..store import Store

USAGE_DAYS = 30
ARREARS_SHOWN = 50
DEADLETTER_DAYS = 7


class LakeReader:
    """One DuckDB connection over the lake's views for the queries of one page."""

    def __init__(self, lake: Lake):
        self.lake, self.con = lake, None

    def rows(self, sql: str, params: list | None = None) -> list[dict]:
        if self.con is None:
            self.con = connect(self.lake, threads=2)
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [{k: (f"{v:.2f}" if isinstance(v, Decimal) else v) for k, v in zip(names, r)} for r in cur.fetchall()]

    def __enter__(self) -> "LakeReader":
        return self

    def __exit__(self, *exc) -> None:
        if self.con is not None:
            self.con.close()


def _files_key(lake: Lake, table: str, key: str) -> tuple:
    return tuple((p.name, p.stat().st_mtime_ns) for p in lake.current_files(table, key))


def _cached(store: Store, name: str, key: tuple, compute):
    hit = store.cache.get(("web", name))
    if hit and hit[0] == key:
        return hit[1]
    value = compute()
    store.cache[("web", name)] = (key, value)
    return value


# -- the resident page -------------------------------------------------------------------------------

def resident(store: Store, user_number: str) -> dict:
    """The account as a channel sees it (contacts masked), its last 30 days' usage, bills with their
    lines by tier and band, and recent alerts. :class:`NotFound` for an unknown user number."""
    acc = status.account_status(store, user_number, details=True)
    acc["contacts"] = [c | {"recipient": status.mask_recipient(c["recipient"])} for c in acc["contacts"]]
    since = store.today() - dt.timedelta(days=USAGE_DAYS)
    with LakeReader(store.lake) as lr:
        usage = lr.rows("SELECT day, quantity, amount FROM charges WHERE day > ? AND account_id = ? ORDER BY day",
                        [since, user_number])
        bills = lr.rows("SELECT period_start, period_end, quantity, amount, due_date FROM bills "
                        "WHERE account_id = ? ORDER BY period_start DESC LIMIT 6", [user_number])
        lines = lr.rows("SELECT period_start, tier, band, quantity, unit_price, amount FROM bill_lines "
                        "WHERE account_id = ? AND period_start >= ? ORDER BY period_start, tier, band",
                        [user_number, min((b["period_start"] for b in bills), default=dt.date.max)]) if bills else []
        alerts = lr.rows("SELECT ts, kind, message FROM alerts WHERE account_id = ? AND day > ? "
                         "ORDER BY ts DESC LIMIT 10", [user_number, since])
    for b in bills:
        b["lines"] = [ln for ln in lines if ln["period_start"] == b["period_start"]]
    unit = _unit(acc["utility"])
    return {"account": acc, "usage": usage, "bills": bills, "alerts": alerts, "unit": unit}


def _unit(utility: str) -> str:
    return {"electricity": "kWh", "water": "m³", "gas": "m³", "heat": "GJ"}.get(utility, "")


# -- the operator console ----------------------------------------------------------------------------

def runs(store: Store, lr: LakeReader, limit: int = 7) -> list[dict]:
    """The newest billing runs with their VEE counts and the day's alerts by kind."""
    rows = lr.rows("SELECT day, run_id, started_at, duration_s, accounts, money, vee_counts, outcome, coverage "
                   "FROM runs ORDER BY day DESC, started_at DESC LIMIT ?", [limit])
    if rows:
        days = sorted({r["day"] for r in rows})
        kinds = lr.rows("SELECT day, kind, count(*) AS n FROM alerts WHERE day BETWEEN ? AND ? "
                        "GROUP BY ALL ORDER BY day, n DESC, kind", [days[0], days[-1]])
    for r in rows:
        vee = json.loads(r["vee_counts"] or "{}")
        r["vee"] = ", ".join(f"{k} {v:,}" for k, v in sorted(vee.items()) if v) or "-"
        r["alerts"] = ", ".join(f"{k['kind']} {k['n']:,}" for k in kinds if k["day"] == r["day"]) or "-"
    return rows


def load_curve(store: Store, lr: LakeReader, day: dt.date) -> dict[str, list[tuple[str, float]]]:
    """The city's consumption per interval of ``day`` by utility (from ``intervals``)."""
    key = (day, _files_key(store.lake, "intervals", day.isoformat()))

    def compute():
        rows = lr.rows("SELECT m.utility, strftime(i.ts, '%H:%M') AS t, sum(i.quantity) AS q "
                       "FROM intervals i JOIN meters m USING (meter_id) WHERE i.day = ? "
                       "GROUP BY ALL ORDER BY 1, min(i.ts)", [day])
        out: dict[str, list] = {}
        for r in rows:
            out.setdefault(r["utility"], []).append((r["t"], float(r["q"] or 0)))
        return out

    return _cached(store, "load", key, compute)


def in_arrears(store: Store, lr: LakeReader) -> tuple[int, list[dict]]:
    """(how many, the first :data:`ARREARS_SHOWN` by balance): accounts the last settled day left in
    arrears or disconnected."""
    day = lakeview.last_settled_day(store.lake)
    if day is None:
        return 0, []
    key = (day, _files_key(store.lake, "billing_state", day.isoformat()))

    def compute():
        cond = "day = ? AND (disconnected OR arrears_since IS NOT NULL)"
        n = lr.rows(f"SELECT count(*) AS n FROM billing_state WHERE {cond}", [day])[0]["n"]
        shown = lr.rows(f"SELECT account_id, balance, arrears_since, disconnected FROM billing_state WHERE {cond} "
                        "ORDER BY balance, account_id LIMIT ?", [day, ARREARS_SHOWN])
        return n, shown

    return _cached(store, "arrears", key, compute)


def deadletter_reasons(store: Store, lr: LakeReader) -> list[dict]:
    """Dead letters of the last :data:`DEADLETTER_DAYS` days by reason code."""
    since = store.today() - dt.timedelta(days=DEADLETTER_DAYS)
    return lr.rows("SELECT reason, count(*) AS n, max(received_at) AS last FROM deadletter WHERE day >= ? "
                   "GROUP BY reason ORDER BY n DESC, reason", [since])


def load_days(lake: Lake) -> list[str]:
    """Days with intervals, newest first."""
    return list(reversed(lake.partitions("intervals")))


def console_account(store: Store, user_number: str) -> dict:
    """An account as an operator sees it: status, settings, contacts in full, ledger, unsettled payments."""
    acc = status.account_status(store, user_number, details=True)
    with LakeReader(store.lake) as lr:
        ledger = lr.rows("SELECT ts, kind, amount, balance_after, ref FROM ledger WHERE account_id = ? "
                         "ORDER BY ts DESC LIMIT 100", [user_number])
    return {"account": acc, "ledger": ledger, "pending": status.pending_payments(store, user_number)}
