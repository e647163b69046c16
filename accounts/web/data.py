"""What the pages show, read from the store (indexed queries through :mod:`accounts.status`) and the
lake (DuckDB over the analysts' views, one connection per page). The console's whole-city figures
(load curve, accounts in arrears) are computed once per settled partition and kept in ``store.cache``
until its files change."""
from __future__ import annotations

import datetime as dt
import json
import threading

from meters.lake import Lake

from .. import lakeview, status
from ..lakeview import LakeReader
from ..store import Store

USAGE_DAYS = 30
ARREARS_SHOWN = 50
DEADLETTER_DAYS = 7
BILL_DAYS = 180   # bills of the last half year
LEDGER_DAYS = 92  # the console's ledger: this month and the two before


def _files_key(lake: Lake, table: str, key: str) -> tuple:
    return tuple((p.name, p.stat().st_mtime_ns) for p in lake.current_files(table, key))


def _cached(store: Store, name: str, key: tuple, compute):
    hit = store.cache.get(("web", name))
    if hit and hit[0] == key:
        return hit[1]
    value = compute()
    store.cache[("web", name)] = (key, value)
    return value


INLINE_ROWS = 200_000   # a city figure over at most this many stored rows is computed in the request
_COMPUTING: dict = {}
_COMPUTING_LOCK = threading.Lock()


def stored_rows(lake: Lake, table: str, keys: list[str]) -> int:
    """Rows of the partitions ``keys`` of ``table``, from the files' footers (kept between requests)."""
    if not lake.is_local:
        return 0
    return sum(lakeview.footer(p).metadata.num_rows for k in keys for p in lake.current_files(table, k))


def _figure(store: Store, lr: LakeReader, name: str, key: tuple, rows: int, compute):
    """A whole-city figure kept in ``store.cache`` until ``key`` (its files) changes: computed in the
    request when it reads at most :data:`INLINE_ROWS` rows, else in a background thread (once) while
    the page answers at once with None ("being computed"); the next request after it ends shows it."""
    hit = store.cache.get(("web", name))
    if hit and hit[0] == key:
        return hit[1]
    if rows <= INLINE_ROWS:
        return _cached(store, name, key, lambda: compute(lr))
    with _COMPUTING_LOCK:
        if (id(store), name, key) in _COMPUTING:
            return None

        def work():
            try:
                with LakeReader(store.lake) as lr:
                    store.cache[("web", name)] = (key, compute(lr))
            finally:
                with _COMPUTING_LOCK:
                    _COMPUTING.pop((id(store), name, key), None)

        th = threading.Thread(target=work, name=f"meters-web-{name}", daemon=True)
        _COMPUTING[(id(store), name, key)] = th
        th.start()
    return None


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
        kinds = _figure(store, lr, "alert-kinds", tuple((d, _files_key(store.lake, "alerts", d)) for d in days),
                         stored_rows(store.lake, "alerts", days),
                        lambda r: r.rows("SELECT day, kind, count(*) AS n FROM {alerts} GROUP BY ALL "
                                         "ORDER BY day, n DESC, kind", [], {"alerts": days}))
    for r in rows:
        vee = json.loads(r["vee_counts"] or "{}")
        r["vee"] = ", ".join(f"{k} {v:,}" for k, v in sorted(vee.items()) if v) or "-"
        r["alerts"] = "…" if kinds is None else (
            ", ".join(f"{k['kind']} {k['n']:,}" for k in kinds if k["day"] == r["day"]) or "-")
    return rows


def load_curve(store: Store, lr: LakeReader, day: dt.date) -> dict[str, list[tuple[str, float]]] | None:
    """The city's consumption per interval of ``day`` by utility (from ``intervals``); None while it
    is being computed (:func:`_figure`)."""
    key = (day, _files_key(store.lake, "intervals", day.isoformat()))

    def compute(lr):
        rows = lr.rows("SELECT m.utility, strftime(i.ts, '%H:%M') AS t, sum(i.quantity) AS q "
                       "FROM {intervals} i JOIN {meters} m USING (meter_id) "
                       "GROUP BY ALL ORDER BY 1, min(i.ts)", [], {"intervals": [day.isoformat()]})
        out: dict[str, list] = {}
        for r in rows:
            out.setdefault(r["utility"], []).append((r["t"], float(r["q"] or 0)))
        return out

    return _figure(store, lr, "load", key, stored_rows(store.lake, "intervals", [day.isoformat()]), compute)


def in_arrears(store: Store, lr: LakeReader) -> tuple[int, list[dict]] | None:
    """(how many, the first :data:`ARREARS_SHOWN` by balance): accounts the last settled day left in
    arrears or disconnected (one scan of the day's ``billing_state``); None while it is being computed."""
    day = lakeview.last_settled_day(store.lake)
    if day is None:
        return 0, []
    key = (day, _files_key(store.lake, "billing_state", day.isoformat()))

    def compute(lr):
        rows = lr.rows("SELECT account_id, balance, arrears_since, disconnected, count(*) OVER () AS n "
                       "FROM {billing_state} WHERE disconnected OR arrears_since IS NOT NULL "
                       "ORDER BY balance, account_id LIMIT ?", [ARREARS_SHOWN], {"billing_state": [day.isoformat()]})
        return (rows[0]["n"] if rows else 0), [{k: v for k, v in r.items() if k != "n"} for r in rows]

    return _figure(store, lr, "arrears", key, stored_rows(store.lake, "billing_state", [day.isoformat()]), compute)


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
