"""Regenerate the golden billing outputs in ``tests/data/golden/`` (checked by tests/test_billing_golden.py).

    .venv/bin/python tests/data/make_golden.py          # rewrite the golden CSV files
    .venv/bin/python tests/data/make_golden.py --check  # compare only (exit 1 on a difference)

A fixed small simulated city (60 meters of :func:`simulator.fleet.make_fleet`, seed 7, faults on so
that VEE estimates and ``data_gap`` alerts appear; no broker: the simulator's uploads are written
straight to the lake) is billed from 2026-11-29 to 2026-12-02 — across a month end, so postpaid bills
close — with one payment on the second day; then the readings from noon of 2026-12-01 to the end of
2026-12-02 held back from a fifth of the meters arrive late and that day is re-billed (adjustments in the ledger). Prepaid accounts with auto top-up and low opening
balances give top-ups and low-balance alerts. The ledger, bills, bill lines, alerts, charges, charge
lines, carried billing state and the per-day run summaries are written as CSV in read order (the lake
reads partitions and files in name order, so the order is stable), with the random ``run_id`` left out.

Regenerate only when a change is *meant* to change billing results, and say so in the commit.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
FIRST = dt.date(2026, 11, 29)
DAYS = 4
METERS = 60
SEED = 7
FAULTS = "lost=0.03,duplicate=0.02,late=0.02,spike=0.01,rollover=0.05,replacement=0.05"
TABLES = ("ledger", "bills", "bill_lines", "alerts", "charges", "charge_lines", "billing_state")
LATE_DAY = FIRST + dt.timedelta(days=2)   # some of its readings arrive after it was billed
DROP = {"run_id"}          # random per run


def build_lake(path: Path):
    """The simulated city's lake with its readings of FIRST .. FIRST + DAYS (and the next day's edge)."""
    from meters.lake import init_lake
    from meters.schemas import UTC_MS, UTC_S
    from simulator.engine import Plan, Shard
    from simulator.faults import parse_faults
    from simulator.fleet import make_fleet, save_fleet

    fleet = make_fleet(METERS, SEED)
    # low opening balances: some prepaid accounts cross their warning levels and top up automatically
    fleet.balance_cents[:] = np.where(fleet.prepaid, fleet.balance_cents // 10, 0)
    lake = init_lake(path)
    save_fleet(lake, fleet)
    start, _ = lake.day_bounds_utc(FIRST)
    plan = Plan(fleet, int(start.timestamp()), DAYS + 1, 900, SEED, faults=parse_faults(FAULTS))
    shard = Shard(plan)
    ups = [u for b in range(plan.n_blocks) for u in shard.uploads(b)] + shard.leftovers()
    m = np.concatenate([u.meter_id for u in ups])
    ts = np.concatenate([u.ts for u in ups])
    reg = np.concatenate([u.register_milli for u in ups])
    received = (int(start.timestamp()) + np.arange(len(m))) * 1000   # arrival order
    t = pa.table({"meter_id": m, "ts": pa.array(ts).cast(UTC_S), "register_milli": reg,
                  "sender": ["sim"] * len(m), "received_at": pa.array(received).cast(UTC_MS)})
    day = (ts + 8 * 3600) // 86400   # Asia/Shanghai, the lake's default time zone
    late_from = int(lake.day_bounds_utc(LATE_DAY)[0].timestamp()) + 12 * 3600
    late_to = int(lake.day_bounds_utc(LATE_DAY)[1].timestamp()) + 86400
    late = (m % 5 == 0) & (ts >= late_from) & (ts < late_to)   # held back: they arrive late
    for d in np.unique(day):
        key = (dt.date(1970, 1, 1) + dt.timedelta(days=int(d))).isoformat()
        lake.write("readings", t.filter(pa.array((day == d) & ~late)), key, file_name="part-sim.parquet")
    return lake, t.filter(pa.array(late))


def bill(lake, late: pa.Table, **kw) -> list:
    """Bill the city day by day, with one payment (a top-up) on the second day; then the held-back
    readings from LATE_DAY's noon to the end of the next day arrive and LATE_DAY is re-billed (with the days after it).
    ``kw``: :func:`billing.batch.bill_day`'s keywords (e.g. ``block_size``)."""
    from billing.batch import bill_day
    from billing.payments import pay

    acc = lake.read("accounts").sort_by("account_id")
    prepaid = [a for a, mode in zip(acc.column("account_id").to_pylist(), acc.column("mode").to_pylist())
               if mode == "prepaid"]
    results = []
    for i in range(DAYS):
        day = FIRST + dt.timedelta(days=i)
        if i == 1:
            at = lake.day_bounds_utc(day)[0] + dt.timedelta(hours=10)
            pay(lake, prepaid[0], "25.50", "golden-payment-1", at=at)
        results += bill_day(lake, day, **kw)
    for d in (LATE_DAY, LATE_DAY + dt.timedelta(days=1)):
        a, b = (int(x.timestamp()) for x in lake.day_bounds_utc(d))
        ts = late.column("ts").cast(pa.int64()).to_numpy()
        lake.write("readings", late.filter(pa.array((ts >= a) & (ts < b))), d.isoformat(),
                   file_name="part-late.parquet")
    return results + bill_day(lake, LATE_DAY, **kw)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (dt.datetime, dt.date, Decimal)):
        return v.isoformat() if not isinstance(v, Decimal) else str(v)
    if isinstance(v, list):
        return "[" + " ".join(_cell(x) for x in v) + "]"
    return str(v)


def to_csv(t: pa.Table) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    names = [n for n in t.column_names if n not in DROP]
    w.writerow(names)
    cols = [t.column(n).to_pylist() for n in names]
    for row in zip(*cols):
        w.writerow([_cell(v) for v in row])
    return out.getvalue()


def results_csv(results) -> str:
    rows = [{"day": r.day.isoformat(), "accounts": r.accounts, "readings": r.readings, "intervals": r.intervals,
             "money_cents": r.money_cents, "adjustments_cents": r.adjustments_cents, "bills": r.bills,
             "ledger_rows": r.ledger_rows, "alerts": " ".join(f"{k}={v}" for k, v in sorted(r.alerts.items())),
             "vee": " ".join(f"{k}={v}" for k, v in sorted(r.vee.items()))} for r in results]
    return to_csv(pa.Table.from_pylist(rows))


def golden_files(tmp: Path) -> dict[str, str]:
    """File name → CSV text of a fresh billing of the city in ``tmp``."""
    lake, late = build_lake(tmp / "lake")
    results = bill(lake, late)
    files = {f"{name}.csv": to_csv(lake.read(name)) for name in TABLES}
    files["results.csv"] = results_csv(results)
    return files


def main(argv: list[str]) -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        files = golden_files(Path(tmp))
    if "--check" in argv:
        bad = [n for n, text in files.items() if (GOLDEN / n).read_text() != text]
        print("golden files differ: " + ", ".join(bad) if bad else "golden files match")
        return 1 if bad else 0
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for n, text in files.items():
        (GOLDEN / n).write_text(text)
    print(f"wrote {len(files)} files to {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
