"""The account service: payments over HTTP with 50 concurrent clients, next to the bare insert rate.

For SQLite (the lake's ``accounts.db``: WAL, ``synchronous=FULL``) and PostgreSQL (a throwaway cluster,
as the tests start it; skipped when ``initdb`` is missing), side by side, in the same run:

- payments over HTTP: ``clients`` concurrent keep-alive clients post ``payments`` distinct payments to a
  real ``meters serve``; each answer comes after its commit is durable — payments/s, p50 and p99;
- the bare database insert: the same number of single-row payment inserts, one durable commit each, from
  one connection (the ceiling a payment's transaction works under);
- balance queries/s: ``GET /v1/accounts/{n}`` from the same clients;
- the payment rate again with ``stored`` payments already in the store, as a ratio to the empty store.

Targets (issue 11, SQLite on a 2-core machine): ≥ 2,000 payments/s, p99 ≤ 50 ms, ≥ 5,000 balance
queries/s, with 1,000,000 payments stored within 20 % of the empty store's rate.

``python -m benchmarks service [--quick] [--accounts N] [--payments N] [--clients N] [--stored N]
[--no-postgres]``
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

FULL = {"accounts": 10_000, "payments": 10_000, "clients": 50, "stored": 1_000_000}
QUICK = {"accounts": 1_000, "payments": 1_000, "clients": 50, "stored": 20_000}


def make_store(root: Path, accounts: int, db: str | None):
    """A lake with ``accounts`` prepaid accounts, its store, and a channel key."""
    from accounts.channels import add_channel
    from accounts.nightly import open_adopted
    from meters.lake import init_lake
    from meters.registry import import_accounts

    lake = init_lake(root / "lake")
    csv = root / "accounts.csv"
    csv.write_text("account_id,meter_id,tariff_id,mode,balance\n" + "".join(
        f"{310000000000 + i},{1 + i},cn-bj-res-elec,prepaid,50\n" for i in range(accounts)))
    import_accounts(lake, csv)
    store = open_adopted(lake, db)
    return store, add_channel(store, "bench", "channel")["key"]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def _load(url: str, key: str, requests: list, clients: int) -> tuple[float, list[float], int]:
    """Send ``requests`` ((method, path, json) tuples) over ``clients`` keep-alive connections;
    returns (seconds, latencies, failures)."""
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    lat: list[float] = []
    failed = 0
    headers = {"Authorization": f"Bearer {key}"}

    async def client():
        nonlocal failed
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as c:
            while True:
                try:
                    method, path, body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                r = await c.request(method, path, json=body)
                lat.append(time.perf_counter() - t0)
                failed += r.status_code >= 300

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0, lat, failed


def http_payments(url, key, users, n, clients, tag) -> dict:
    reqs = [("POST", "/v1/payments", {"user_number": random.choice(users), "amount": "10.00",
                                      "channel_ref": f"{tag}-{i}"}) for i in range(n)]
    s, lat, failed = asyncio.run(_load(url, key, reqs, clients))
    return {"rate": n / s, "p50_ms": percentile(lat, 0.5) * 1e3, "p99_ms": percentile(lat, 0.99) * 1e3,
            "failed": failed}


def http_balances(url, key, users, n, clients) -> dict:
    reqs = [("GET", f"/v1/accounts/{random.choice(users)}", None) for _ in range(n)]
    s, lat, failed = asyncio.run(_load(url, key, reqs, clients))
    return {"rate": n / s, "p99_ms": percentile(lat, 0.99) * 1e3, "failed": failed}


def bare_inserts(store, users, n) -> float:
    """Single-row payment inserts, one durable commit each (the counter taken as a payment takes it)."""
    import sqlalchemy as sa

    from accounts.payments import next_seq
    from accounts.schema import payments

    now = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    for i in range(n):
        with store.write() as conn:
            conn.execute(sa.insert(payments).values(seq=next_seq(conn), channel="bare", channel_ref=f"b-{i}",
                                                    account_id=users[i % len(users)], amount_cents=1000,
                                                    received_at=now))
    return n / (time.perf_counter() - t0)


def prefill(store, users, n) -> float:
    """``n`` payments stored in bulk (batches of 10,000), the counter moved past them."""
    import sqlalchemy as sa

    from accounts.schema import counters, payments

    t0 = time.perf_counter()
    with store.write() as conn:
        start = conn.execute(sa.select(counters.c.value).where(counters.c.name == "payments")).scalar_one()
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for lo in range(0, n, 10_000):
        rows = [{"seq": start + 1 + i, "channel": "stored", "channel_ref": f"s-{i}", "account_id": users[i % len(users)],
                 "amount_cents": 100, "received_at": when} for i in range(lo, min(n, lo + 10_000))]
        with store.write() as conn:
            conn.execute(sa.insert(payments), rows)
    with store.write() as conn:
        conn.execute(sa.update(counters).where(counters.c.name == "payments").values(value=start + n))
    return time.perf_counter() - t0


def run_one(name: str, root: Path, db: str | None, p: dict) -> dict:
    from accounts_support import Server  # tests/: the real `meters serve` on a free port

    print(f"[{name}] {p['accounts']:,} accounts; {p['payments']:,} payments from {p['clients']} clients", flush=True)
    store, key = make_store(root, p["accounts"], db)
    users = [str(310000000000 + i) for i in range(p["accounts"])]
    server = Server(root / "lake", db).start()
    try:
        http_payments(server.url, key, users, min(200, p["payments"]), p["clients"], "warm")
        pay_empty = http_payments(server.url, key, users, p["payments"], p["clients"], "empty")
        bal = http_balances(server.url, key, users, p["payments"], p["clients"])
        bare = bare_inserts(store, users, p["payments"])
        fill_s = prefill(store, users, p["stored"])
        print(f"[{name}] stored {p['stored']:,} payments in {fill_s:.1f} s", flush=True)
        pay_full = http_payments(server.url, key, users, p["payments"], p["clients"], "full")
    finally:
        server.stop()
        store.close()
    return {"pay": pay_empty, "bal": bal, "bare": bare, "full": pay_full}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks service", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: " + ", ".join(f"{k} {v:,}" for k, v in QUICK.items()))
    for k in FULL:
        ap.add_argument(f"--{k}", type=int, default=None, help=f"default {FULL[k]:,} ({QUICK[k]:,} with --quick)")
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    a = ap.parse_args(argv)
    p = {k: getattr(a, k) or (QUICK if a.quick else FULL)[k] for k in FULL}
    print("full parameters: " + ", ".join(f"--{k} {v:,}" for k, v in FULL.items()) +
          ("   (this run: --quick " + ", ".join(f"{k} {v:,}" for k, v in p.items()) + ")" if a.quick else ""))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    results, cluster = {}, None
    with tempfile.TemporaryDirectory(prefix="meters-bench-service-") as tmp:
        results["sqlite"] = run_one("sqlite", Path(tmp) / "sqlite", None, p)
        if not a.no_postgres:
            from pg_cluster import PostgresCluster

            try:
                cluster = PostgresCluster().start()
            except RuntimeError as e:
                print(f"[postgresql] skipped: {e}")
            if cluster is not None:
                try:
                    results["postgresql"] = run_one("postgresql", Path(tmp) / "pg", cluster.create_database(), p)
                finally:
                    cluster.stop()
    names = list(results)
    rows = [("payments/s over HTTP", lambda r: f"{r['pay']['rate']:,.0f}"),
            ("  p50 / p99 ms", lambda r: f"{r['pay']['p50_ms']:.1f} / {r['pay']['p99_ms']:.1f}"),
            ("  failed requests", lambda r: f"{r['pay']['failed'] + r['full']['failed'] + r['bal']['failed']}"),
            ("bare inserts/s (1 commit each)", lambda r: f"{r['bare']:,.0f}"),
            ("balance queries/s", lambda r: f"{r['bal']['rate']:,.0f}"),
            (f"payments/s, {p['stored']:,} stored", lambda r: f"{r['full']['rate']:,.0f}"),
            ("  vs empty store", lambda r: f"{r['full']['rate'] / r['pay']['rate']:.0%}")]
    print()
    print(f"{'':34}" + "".join(f"{n:>16}" for n in names))
    for label, f in rows:
        print(f"{label:34}" + "".join(f"{f(results[n]):>16}" for n in names))
    s = results["sqlite"]
    if not a.quick:
        ok = lambda c: "met" if c else "NOT met"  # noqa: E731
        print(f"\ntargets (SQLite): ≥ 2,000 payments/s {ok(s['pay']['rate'] >= 2000)}; p99 ≤ 50 ms "
              f"{ok(s['pay']['p99_ms'] <= 50)}; ≥ 5,000 balance queries/s {ok(s['bal']['rate'] >= 5000)}; "
              f"stored within 20 % {ok(s['full']['rate'] >= 0.8 * s['pay']['rate'])}")
    else:
        print("\n(--quick: sizes too small to judge the targets; run without --quick for them)")
