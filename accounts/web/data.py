"""What the pages show, read from the store (indexed queries through :mod:`accounts.status`) and the
lake (DuckDB over the analysts' views, one connection per page). The console's whole-city figures
(load curve, accounts in arrears) are computed once per settled partition and kept in ``store.cache``
until its files change."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import threading

import duckdb

from meters.lake import Lake
from meters.schemas import TABLES
from meters.sql import view_select
from meters.views import quote_literal, table_files

from .. import lakeview, status
from ..store import Store

USAGE_DAYS = 30
ARREARS_SHOWN = 50
DEADLETTER_DAYS = 7
BILL_DAYS = 180   # bills of the last half year
LEDGER_DAYS = 92  # the console's ledger: this month and the two before


class LakeReader:
    """The queries of one page: a cursor of the lake's long-lived DuckDB connection (parquet metadata
    cached between pages). A query names its tables as ``{charges}`` with the partitions it needs
    (``parts={"charges": [keys]}``; default: every partition), read as the analysts' views type them."""

    _connections: dict[str, duckdb.DuckDBPyConnection] = {}
    _lock = threading.Lock()

    def __init__(self, lake: Lake):
        self.lake, self.cur = lake, None

    def _cursor(self):
        with self._lock:
            con = self._connections.get(str(self.lake.root))
            if con is None:
                con = duckdb.connect(":memory:")
                con.execute("SET enable_object_cache = true")
                con.execute(f"SET TimeZone = {quote_literal(self.lake.timezone_name)}")
                con.execute("SET threads = 2")
                self.lake.register_duckdb(con)
                self._connections[str(self.lake.root)] = con
            return con.cursor()

    def rows(self, sql: str, params: list | None = None, parts: dict[str, list[str]] | None = None) -> list[dict]:
        scans = {}
        for name, t in TABLES.items():
            if "{" + name + "}" in sql:
                keys = (parts or {}).get(name)
                files = table_files(self.lake, t) if keys is None else [
                    f for k in keys for f in self.lake.current_files(name, k)]
                scans[name] = f"({view_select(self.lake, t, files)})"
        if self.cur is None:
            self.cur = self._cursor()
        cur = self.cur.execute(sql.format(**scans), params or [])
        names = [d[0] for d in cur.description]
        return [{k: self._shown(v) for k, v in zip(names, r)} for r in cur.fetchall()]

    def _shown(self, v):
        """Money as ``"12.34"``, instants in the lake's time zone."""
        if isinstance(v, Decimal):
            return f"{v:.2f}"
        if isinstance(v, dt.datetime) and v.tzinfo is not None:
            return v.astimezone(self.lake.tz)
        return v

    def keys(self, name: str, since: dt.date | None = None) -> list[str]:
        """Partition keys of table ``name`` (day or month) from ``since`` on."""
        keys = self.lake.partitions(name)
        if since is None:
            return keys
        first = since.isoformat()[:len(keys[0])] if keys else ""
        return [k for k in keys if k >= first]

    def __enter__(self) -> "LakeReader":
        return self

    def __exit__(self, *exc) -> None:
        if self.cur is not None:
            self.cur.close()


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
        usage = lr.rows("SELECT day, quantity, amount FROM {charges} WHERE day > ? AND account_id = ? ORDER BY day",
                        [since, user_number], {"charges": lr.keys("charges", since)})
        months = {"bills": lr.keys("bills", since - dt.timedelta(days=BILL_DAYS)),
                  "bill_lines": lr.keys("bill_lines", since - dt.timedelta(days=BILL_DAYS))}
        bills = lr.rows("SELECT period_start, period_end, quantity, amount, due_date FROM {bills} "
                        "WHERE account_id = ? ORDER BY period_start DESC LIMIT 6", [user_number], months)
        lines = lr.rows("SELECT period_start, tier, band, quantity, unit_price, amount FROM {bill_lines} "
                        "WHERE account_id = ? AND period_start >= ? ORDER BY period_start, tier, band",
                        [user_number, min(b["period_start"] for b in bills)], months) if bills else []
        alerts = lr.rows("SELECT ts, kind, message FROM {alerts} WHERE account_id = ? AND day > ? "
                         "ORDER BY ts DESC LIMIT 10", [user_number, since], {"alerts": lr.keys("alerts", since)})
    for b in bills:
        b["lines"] = [ln for ln in lines if ln["period_start"] == b["period_start"]]
    unit = _unit(acc["utility"])
    return {"account": acc, "usage": usage, "bills": bills, "alerts": alerts, "unit": unit}


def _unit(utility: str) -> str:
    return {"electricity": "kWh", "water": "m³", "gas": "m³", "heat": "kWh"}.get(utility, "")


# -- the operator console ----------------------------------------------------------------------------

def runs(store: Store, lr: LakeReader, limit: int = 7) -> list[dict]:
    """The newest billing runs with their VEE counts and the day's alerts by kind."""
    recent = lr.keys("runs")[-limit:]
    rows = lr.rows("SELECT day, run_id, started_at, duration_s, accounts, money, vee_counts, outcome, coverage "
                   "FROM {runs} ORDER BY day DESC, started_at DESC LIMIT ?", [limit], {"runs": recent})
    if rows:
        days = sorted({r["day"].isoformat() for r in rows})
        kinds = _cached(store, "alert-kinds", tuple((d, _files_key(store.lake, "alerts", d)) for d in days),
                        lambda: lr.rows("SELECT day, kind, count(*) AS n FROM {alerts} GROUP BY ALL "
                                        "ORDER BY day, n DESC, kind", [], {"alerts": days}))
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
                       "FROM {intervals} i JOIN {meters} m USING (meter_id) "
                       "GROUP BY ALL ORDER BY 1, min(i.ts)", [], {"intervals": [day.isoformat()]})
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
        part = {"billing_state": [day.isoformat()]}
        cond = "disconnected OR arrears_since IS NOT NULL"
        n = lr.rows(f"SELECT count(*) AS n FROM {{billing_state}} WHERE {cond}", [], part)[0]["n"]
        shown = lr.rows(f"SELECT account_id, balance, arrears_since, disconnected FROM {{billing_state}} "
                        f"WHERE {cond} ORDER BY balance, account_id LIMIT ?", [ARREARS_SHOWN], part)
        return n, shown

    return _cached(store, "arrears", key, compute)


def deadletter_reasons(store: Store, lr: LakeReader) -> list[dict]:
    """Dead letters of the last :data:`DEADLETTER_DAYS` days by reason code."""
    since = store.today() - dt.timedelta(days=DEADLETTER_DAYS)
    return lr.rows("SELECT reason, count(*) AS n, max(received_at) AS last FROM {deadletter} "
                   "GROUP BY reason ORDER BY n DESC, reason", [], {"deadletter": lr.keys("deadletter", since)})


def load_days(lake: Lake) -> list[str]:
    """Days with intervals, newest first."""
    return list(reversed(lake.partitions("intervals")))


def console_account(store: Store, user_number: str) -> dict:
    """An account as an operator sees it: status, settings, contacts in full, ledger, unsettled payments."""
    acc = status.account_status(store, user_number, details=True)
    with LakeReader(store.lake) as lr:
        ledger = lr.rows("SELECT ts, kind, amount, balance_after, ref FROM {ledger} WHERE account_id = ? "
                         "ORDER BY ts DESC LIMIT 100", [user_number],
                         {"ledger": lr.keys("ledger", store.today() - dt.timedelta(days=LEDGER_DAYS))})
    pending = [p | {"received_at": dt.datetime.fromisoformat(p["received_at"]).astimezone(store.tz)}
               for p in status.pending_payments(store, user_number)]
    return {"account": acc, "ledger": ledger, "pending": pending}
