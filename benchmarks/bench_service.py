"""The account service: payments over HTTP with 50 concurrent clients, next to the bare insert rate.

For SQLite (the lake's ``accounts.db``: WAL, ``synchronous=FULL``) and PostgreSQL (a throwaway cluster,
as the tests start it; skipped when ``initdb`` is missing), side by side, in the same run:

- payments over HTTP: ``clients`` concurrent keep-alive clients post ``payments`` distinct payments to a
  real ``meters serve``; each answer comes after its commit is durable — payments/s, p50 and p99;
- the bare database insert: the same number of single-row payment inserts, one durable commit each, from
  one connection (the ceiling a payment's transaction works under);
- balance queries/s: ``GET /v1/accounts/{n}`` from the same clients;
- the payment rate again with ``stored`` payments already in the store, as a ratio to the empty store
  (SQLite: the bulk load's write-ahead log checkpointed and truncated before it, as the background
  checkpoints of a store that grew over months would have left it; the log's size is printed);
- each of these with the server run as ``meters serve --workers N`` for each N of ``--workers`` (default
  1 and 2: one process, and what this 2-core machine would run); the server's CPU time is summed over
  its parent and all worker processes.

Targets (issue 11, SQLite on a 2-core machine): ≥ 2,000 payments/s, p99 ≤ 50 ms, ≥ 5,000 balance
queries/s, with 1,000,000 payments stored within 20 % of the empty store's rate.

``python -m benchmarks service [--quick] [--accounts N] [--payments N] [--clients N] [--stored N]
[--workers 1,2] [--no-postgres]``
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import os
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


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` so far (0 without /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(pid: int | None) -> float:
    """CPU time of the server ``pid`` and its worker processes (its children) so far."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, TypeError):
        children = []
    return cpu_seconds(pid) + sum(cpu_seconds(int(c)) for c in children)


def run_load(port: int, requests: list[bytes], clients: int, pid: int | None = None) -> dict:
    """``requests`` over ``clients`` keep-alive connections (tests/accounts_support.send_all: a raw
    asyncio client, so that the generator is not what is measured); ``pid``: the server, whose CPU
    time per request is counted (a figure the machine's other load barely moves)."""
    from accounts_support import send_all

    c0 = server_cpu_seconds(pid)
    s, answers = send_all(port, requests, clients)
    lat = [a[2] for a in answers]
    return {"rate": len(requests) / s, "p50_ms": percentile(lat, 0.5) * 1e3, "p99_ms": percentile(lat, 0.99) * 1e3,
            "failed": sum(not 200 <= a[0] < 300 for a in answers), "load": os.getloadavg()[0],
            "cpu_ms": (server_cpu_seconds(pid) - c0) / len(requests) * 1e3}


FIXED = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{"status":"ok"}'


def _fixed_server(port: int, ready) -> None:
    """A trivial HTTP server (the same fixed answer to every request, no framework, an asyncio protocol
    on uvloop): the target the load generator's own ceiling is measured against."""
    class Fixed(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buf = transport, b""

        def data_received(self, data):
            self.buf += data
            while (h := self.buf.find(b"\r\n\r\n")) >= 0:
                head = self.buf[:h + 2].lower()
                k = head.find(b"content-length:")
                end = h + 4 + (int(head[k + 15:head.index(b"\r\n", k)]) if k >= 0 else 0)
                if len(self.buf) < end:
                    return
                self.buf = self.buf[end:]
                self.transport.write(FIXED)

    async def serve():
        server = await asyncio.get_running_loop().create_server(Fixed, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    try:
        import uvloop
        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())


def generator_ceiling(n: int, clients: int) -> dict:
    """The load generator against the trivial server (another process), with payment requests."""
    import multiprocessing as mp

    from accounts_support import request_bytes

    from meters.broker import free_port

    port = free_port()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_fixed_server, args=(port, ready), daemon=True)
    proc.start()
    try:
        ready.wait(60)
        body = {"user_number": "310000000000", "amount": "10.00", "channel_ref": "x"}
        return run_load(port, [request_bytes("POST", "/v1/payments", "mk_" + "k" * 43, body)] * n, clients)
    finally:
        proc.terminate()
        proc.join()


def http_payments(port, key, users, n, clients, tag, pid=None) -> dict:
    from accounts_support import request_bytes

    return run_load(port, [request_bytes("POST", "/v1/payments", key, {
        "user_number": random.choice(users), "amount": "10.00", "channel_ref": f"{tag}-{i}"}) for i in range(n)], clients, pid)


def http_balances(port, key, users, n, clients, pid=None) -> dict:
    from accounts_support import request_bytes

    return run_load(port, [request_bytes("GET", f"/v1/accounts/{random.choice(users)}", key, None)
                           for _ in range(n)], clients, pid)


def bare_inserts(store, users, n) -> float:
    """Single-row payment inserts (with the account's running total), one durable commit each, from
    one connection: a database that commits each payment alone."""
    from accounts.payments import insert_payments, next_seq

    now = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    for i in range(n):
        with store.write() as conn:
            insert_payments(conn, [{"seq": next_seq(conn), "channel": "bare", "channel_ref": f"b-{i}",
                                    "account_id": users[i % len(users)], "amount_cents": 1000, "payer": None,
                                    "received_at": now, "reverses": None}])
    return n / (time.perf_counter() - t0)


def prefill(store, users, n) -> float:
    """``n`` payments stored in bulk in one transaction (SQLite: executemany in batches of 100,000;
    PostgreSQL: COPY), the accounts' running totals and the counter moved past them."""
    import sqlalchemy as sa

    from accounts.schema import accounts, counters

    t0 = time.perf_counter()
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cols = "seq, channel, channel_ref, account_id, amount_cents, received_at"
    with store.write() as conn:
        start = conn.execute(sa.select(counters.c.value).where(counters.c.name == "payments")).scalar_one()
        cur = conn.connection.driver_connection.cursor()
        rows = ((start + 1 + i, "stored", f"s-{i}", users[i % len(users)], 100, when) for i in range(n))
        if store.engine.dialect.name == "sqlite":   # SQLAlchemy's text form of a UTC instant
            stamp = when.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
            rows = ((*r[:5], stamp) for r in rows)
            while batch := list(itertools.islice(rows, 100_000)):
                cur.executemany(f"INSERT INTO payments ({cols}) VALUES (?, ?, ?, ?, ?, ?)", batch)
        else:
            with cur.copy(f"COPY payments ({cols}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
        per = dict.fromkeys(users, 0)
        for i in range(n):
            per[users[i % len(users)]] += 100
        conn.execute(sa.update(accounts).where(accounts.c.account_id == sa.bindparam("a"))
                     .values(paid_cents=accounts.c.paid_cents + sa.bindparam("c")),
                     [{"a": a, "c": c} for a, c in per.items() if c])
        conn.execute(sa.update(counters).where(counters.c.name == "payments").values(value=start + n))
    return time.perf_counter() - t0


def settle_wal(store) -> str:
    """SQLite: after the bulk load, copy its write-ahead log into the database file and truncate it (a
    store that grew payment by payment has had it copied all along, :mod:`accounts.checkpoint`); the
    log's size before and the time taken. PostgreSQL: nothing."""
    if store.engine.dialect.name != "sqlite":
        return ""
    import sqlite3

    before = wal_mib(store)
    t0 = time.perf_counter()
    con = sqlite3.connect(store.engine.url.database, isolation_level=None, timeout=60)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return f"; its {before:,.0f} MiB write-ahead log checkpointed in {time.perf_counter() - t0:.1f} s"


def wal_mib(store) -> float:
    """The size of the SQLite store's write-ahead log file (MiB; 0 for PostgreSQL)."""
    try:
        return os.path.getsize(f"{store.engine.url.database}-wal") / 2**20
    except (OSError, TypeError):
        return 0.0


def run_one(name: str, root: Path, db: str | None, p: dict, workers: int = 1) -> dict:
    from accounts_support import Server  # tests/: the real `meters serve` on a free port

    print(f"[{name}] {p['accounts']:,} accounts; {p['payments']:,} payments from {p['clients']} clients; "
          f"{workers} server worker{'s' if workers > 1 else ''}", flush=True)
    store, key = make_store(root, p["accounts"], db)
    users = [str(310000000000 + i) for i in range(p["accounts"])]
    server = Server(root / "lake", db, "--workers", str(workers)).start()
    try:
        port, warm = server.port, min(1_000, p["payments"])
        http_payments(port, key, users, warm, p["clients"], "warm")
        pid = server.proc.pid
        pay_empty = http_payments(port, key, users, p["payments"], p["clients"], "empty", pid)
        http_balances(port, key, users, warm, p["clients"])
        bal = http_balances(port, key, users, p["payments"], p["clients"], pid)
        bare = bare_inserts(store, users, min(p["payments"], 2_000))
        pay_empty["wal"] = wal_mib(store)
        fill_s = prefill(store, users, p["stored"])
        print(f"[{name}] stored {p['stored']:,} payments in {fill_s:.1f} s ({p['stored'] / fill_s:,.0f}/s, "
              f"load {os.getloadavg()[0]:.1f}){settle_wal(store)}", flush=True)
        http_payments(port, key, users, warm, p["clients"], "warm-full")
        pay_full = http_payments(port, key, users, p["payments"], p["clients"], "full", pid)
        pay_full["wal"] = wal_mib(store)
    finally:
        server.stop()
        store.close()
    return {"pay": pay_empty, "bal": bal, "bare": bare, "full": pay_full}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks service", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: " + ", ".join(f"{k} {v:,}" for k, v in QUICK.items()))
    for k in FULL:
        ap.add_argument(f"--{k}", type=int, default=None, help=f"default {FULL[k]:,} ({QUICK[k]:,} with --quick)")
    ap.add_argument("--workers", default="1,2", metavar="N[,N…]",
                    help="server processes (meters serve --workers), one run each (default 1,2)")
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    a = ap.parse_args(argv)
    try:
        counts = [int(n) for n in a.workers.split(",")]
        if not counts or min(counts) < 1:
            raise ValueError
    except ValueError:
        ap.error(f"--workers {a.workers!r}: give whole numbers ≥ 1 separated by commas, e.g. 1,2")
    p = {k: getattr(a, k) or (QUICK if a.quick else FULL)[k] for k in FULL}
    print("full parameters: " + ", ".join(f"--{k} {v:,}" for k, v in FULL.items()) +
          ("   (this run: --quick " + ", ".join(f"{k} {v:,}" for k, v in p.items()) + ")" if a.quick else ""))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    ceiling = generator_ceiling(max(p["payments"], 5_000), p["clients"])
    print(f"load generator ceiling (a trivial server, the same requests): {ceiling['rate']:,.0f} requests/s, "
          f"p99 {ceiling['p99_ms']:.1f} ms, load {ceiling['load']:.1f}", flush=True)
    results, cluster = {}, None
    with tempfile.TemporaryDirectory(prefix="meters-bench-service-") as tmp:
        for n in counts:
            results[f"sqlite ×{n}"] = run_one(f"sqlite ×{n}", Path(tmp) / f"sqlite-{n}", None, p, n)
        if not a.no_postgres:
            from pg_cluster import PostgresCluster

            try:
                cluster = PostgresCluster().start()
            except RuntimeError as e:
                print(f"[postgresql] skipped: {e}")
            if cluster is not None:
                try:
                    for n in counts:
                        results[f"postgresql ×{n}"] = run_one(f"postgresql ×{n}", Path(tmp) / f"pg-{n}",
                                                              cluster.create_database(), p, n)
                finally:
                    cluster.stop()
    names = list(results)
    rows = [("payments/s over HTTP", lambda r: f"{r['pay']['rate']:,.0f}"),
            ("  p50 / p99 ms", lambda r: f"{r['pay']['p50_ms']:.1f} / {r['pay']['p99_ms']:.1f}"),
            ("  server CPU ms per payment", lambda r: f"{r['pay']['cpu_ms']:.2f}"),
            ("  load average", lambda r: f"{r['pay']['load']:.1f}"),
            ("bare inserts/s (1 commit each)", lambda r: f"{r['bare']:,.0f}"),
            ("balance queries/s", lambda r: f"{r['bal']['rate']:,.0f}"),
            ("  p50 / p99 ms", lambda r: f"{r['bal']['p50_ms']:.1f} / {r['bal']['p99_ms']:.1f}"),
            ("  server CPU ms per query", lambda r: f"{r['bal']['cpu_ms']:.2f}"),
            ("  load average", lambda r: f"{r['bal']['load']:.1f}"),
            (f"payments/s, {p['stored']:,} stored", lambda r: f"{r['full']['rate']:,.0f}"),
            ("  p50 / p99 ms", lambda r: f"{r['full']['p50_ms']:.1f} / {r['full']['p99_ms']:.1f}"),
            ("  server CPU ms per payment", lambda r: f"{r['full']['cpu_ms']:.2f}"),
            ("  load average", lambda r: f"{r['full']['load']:.1f}"),
            ("  vs empty store", lambda r: f"{r['full']['rate'] / r['pay']['rate']:.0%}"),
            ("  WAL file MiB (empty / stored)", lambda r: f"{r['pay']['wal']:.1f} / {r['full']['wal']:.1f}"),
            ("  CPU per payment vs empty store", lambda r: f"{r['full']['cpu_ms'] / max(r['pay']['cpu_ms'], 1e-9):.0%}"),
            ("failed requests", lambda r: f"{r['pay']['failed'] + r['full']['failed'] + r['bal']['failed']}")]
    print(f"\n{'(×N: server worker processes)':34}" + "".join(f"{n:>16}" for n in names))
    for label, f in rows:
        print(f"{label:34}" + "".join(f"{f(results[n]):>16}" for n in names))
    deploy = max(counts)
    s = results[f"sqlite ×{deploy}"]
    ok = lambda c: "met" if c else "NOT met"  # noqa: E731
    print(f"\ntargets (SQLite, {deploy} worker{'s' if deploy > 1 else ''}): ≥ 2,000 payments/s {ok(s['pay']['rate'] >= 2000)}; p99 ≤ 50 ms "
          f"{ok(s['pay']['p99_ms'] <= 50)}; ≥ 5,000 balance queries/s {ok(s['bal']['rate'] >= 5000)}; "
          f"stored within 20 % {ok(s['full']['rate'] >= 0.8 * s['pay']['rate'])}"
          + ("  (--quick: small sizes, judge the full run)" if a.quick else ""))
