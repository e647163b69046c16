"""The web pages' server time on a large lake: the resident page and the API reads behind it (bills,
usage, alerts), the operator console, its account search and the runs.

Default size: 1,000,000 accounts (and meters) with 30 settled days of charges, one day of 15-minute
intervals (96M rows: the load curve), the last day's billing state (2 % in arrears), runs, alerts,
a month of ledger, bills and bill lines, dead letters; the account store (SQLite) holds every account
and its settings. Generated directly as Parquet in the layout billing writes (a day or month partition
per table behind its ``_current`` manifest, per-account outputs sorted by account in
:data:`meters.lake.ACCOUNT_ROW_GROUP`-row groups, ``billing_state`` sorted by meter) and the store
filled by bulk inserts, so generation takes minutes, not a billing month. Measured in-process through
the ASGI app (no network): each page's time from request to the last byte, p50/p95 of repeated
requests, target ≤ 300 ms each. "Cold" is the first request of a page after a new settled day: before
each one the newest day's outputs are written again as new files (:class:`NewDay`), so whatever is
cached by file misses them, while the older days stay cached as in a long-running service. The console computes a city figure over more than
:data:`accounts.web.data.INLINE_ROWS` rows (the load curve of a big city) in a background thread
and says "being computed" meanwhile; how long that takes is printed too.

``python -m benchmarks web [--quick] [--accounts N] [--requests R] [--cold C] [--keep DIR]``
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

TARGET_MS = 300
DAYS = 30
QUICK = 20_000
FULL = 1_000_000
CHUNK = 100_000   # store rows per bulk insert


def _money(cents: np.ndarray) -> pa.Array:
    from billing.money_io import money

    return money(np.asarray(cents, np.int64))


def _put(lake, name: str, key: str | None, data: pa.Table) -> None:
    """One partition as billing writes it: behind its ``_current`` manifest, the table's row groups."""
    lake.replace_partition(name, key, data, fsync=False)


def _fill_store(store, accounts: np.ndarray, meter_ids: np.ndarray) -> None:
    """Every account and its first settings, by bulk inserts (what ``meters accounts import`` stores)."""
    import sqlalchemy as sa

    from accounts.registry import ALWAYS
    from accounts.schema import accounts as acc_t
    from accounts.schema import settings
    from accounts.store import utcnow

    now = utcnow()
    with store.write() as conn:
        for i in range(0, len(accounts), CHUNK):
            ids, mids = accounts[i:i + CHUNK].tolist(), meter_ids[i:i + CHUNK].tolist()
            conn.execute(sa.insert(acc_t), [{"account_id": a, "meter_id": m, "utility": "electricity",
                                             "billing_day": 1, "opening_cents": 10000, "created_at": now}
                                            for a, m in zip(ids, mids)])
            conn.execute(sa.insert(settings), [{"account_id": a, "effective_from": ALWAYS,
                                                "tariff_id": "cn-bj-res-elec", "mode": "prepaid",
                                                "warn_1_cents": 3000, "warn_2_cents": 2000, "changed_at": now,
                                                "changed_by": "bench", "channel": "import"} for a in ids])


def generate(root: Path, n: int, seed: int = 5):
    """A lake and its store with ``n`` accounts settled up to yesterday (lake-local); per-table seconds
    are printed."""
    from accounts.store import open_store
    from meters.lake import init_lake

    rng = np.random.default_rng(seed)
    lake = init_lake(root / "lake", "Asia/Shanghai")
    took: dict[str, float] = {}

    def step(name, fn):
        t0 = time.perf_counter()
        fn()
        took[name] = time.perf_counter() - t0

    ids = np.arange(n, dtype=np.int64)
    meter_ids = 110100000000 + ids
    accounts = np.char.add("u", np.char.zfill(ids.astype(str), 8)).astype(object)   # sorted like the meters
    acc = pa.array(accounts, pa.string())
    last = dt.datetime.now(lake.tz).date() - dt.timedelta(days=1)
    step("registry", lambda: (
        _put(lake, "meters", None, pa.table({"meter_id": meter_ids, "utility": pa.array(["electricity"] * n),
                                             "unit": pa.array(["kWh"] * n)})),
        _put(lake, "accounts", None, pa.table({
            "account_id": acc, "meter_id": meter_ids, "tariff_id": pa.array(["cn-bj-res-elec"] * n),
            "mode": pa.array(["prepaid"] * n), "billing_day": np.ones(n, np.int8),
            "balance": _money(np.full(n, 10000))}))))

    def charges():
        for d in range(DAYS):
            day = last - dt.timedelta(days=DAYS - 1 - d)
            q = rng.gamma(2.0, 3.0, n)
            _put(lake, "charges", day.isoformat(), pa.table({
                "account_id": acc, "quantity": q, "amount": _money(np.round(q * 48.83)),
                "tariff_id": pa.array(["cn-bj-res-elec"] * n), "run_id": pa.array([f"bench-{day}"] * n)}))
    step("charges", charges)

    def intervals():
        start, _ = lake.day_bounds_utc(last)
        ts = int(start.timestamp()) + 900 * np.arange(1, 97, dtype=np.int64)
        parts = []
        for i in range(0, n, 250_000):   # bounded memory: the partition as files of 24M rows at most
            m = meter_ids[i:i + 250_000]
            k = len(m)
            parts.append(pa.table({
                "meter_id": np.repeat(m, 96), "ts": pa.array(np.tile(ts, k)).cast(pa.timestamp("s", tz="UTC")),
                "quantity": rng.gamma(2.0, 0.06, k * 96),
                "quality": pa.DictionaryArray.from_arrays(np.zeros(k * 96, np.int8), pa.array(["actual"])),
                "flag": pa.nulls(k * 96, pa.string())}))
        lake.stage("intervals", last.isoformat())
        names = []
        for t in parts:
            names += lake.write_staged("intervals", last.isoformat(), t, pieces=2, stats=["meter_id", "ts"])
        lake.switch("intervals", last.isoformat(), names)
    step("intervals", intervals)

    balance = rng.integers(-5000, 20000, n)
    arrears = balance < -4600
    step("billing_state", lambda: _put(lake, "billing_state", last.isoformat(), pa.table({
        "account_id": acc, "meter_id": meter_ids, "balance": _money(balance), "level": np.zeros(n, np.int8),
        "arrears_since": pa.array(np.full(n, (last - dt.date(1970, 1, 1)).days, np.int32), pa.int32(),
                                  mask=~arrears).cast(pa.date32()),
        "disconnected": arrears})))
    ts_ms = pa.array([dt.datetime.combine(last, dt.time(23, 59), lake.tz)] * n, pa.timestamp("ms", tz="UTC"))

    def outputs():
        low = np.flatnonzero(balance < 3000)      # low-balance alerts: about a third of the city
        _put(lake, "alerts", last.isoformat(), pa.table({
            "account_id": acc.take(low), "ts": ts_ms.take(low), "kind": pa.array(["low_balance"] * len(low)),
            "recipient": pa.array(["13800000000"] * len(low)), "message": pa.array(["low"] * len(low))}))
        _put(lake, "ledger", last.strftime("%Y-%m"), pa.table({
            "account_id": acc, "ts": ts_ms, "kind": pa.array(["charge"] * n),
            "amount": _money(-np.abs(balance) // 10), "balance_after": _money(balance),
            "ref": pa.array([last.isoformat()] * n)}))
        first_of_month = last.replace(day=1)
        _put(lake, "bills", last.strftime("%Y-%m"), pa.table({
            "account_id": acc, "period_start": pa.array([first_of_month] * n, pa.date32()),
            "period_end": pa.array([last] * n, pa.date32()), "quantity": rng.gamma(2.0, 90, n),
            "amount": _money(balance % 9000)}))
        _put(lake, "bill_lines", last.strftime("%Y-%m"), pa.table({
            "account_id": acc, "period_start": pa.array([first_of_month] * n, pa.date32()),
            "tier": np.ones(n, np.int32), "band": pa.array(["all"] * n), "quantity": rng.gamma(2.0, 90, n),
            "amount": _money(balance % 9000)}))
        _put(lake, "runs", last.isoformat(), pa.table({
            "run_id": ["bench"], "started_at": pa.array([ts_ms[0].as_py()], pa.timestamp("ms", tz="UTC")),
            "duration_s": [600.0], "accounts": [n], "money": _money(np.array([n * 1000])),
            "vee_counts": ['{"ok": %d}' % (n * 96)], "outcome": ["settled"]}))
        k = max(1, n // 1000)
        lake.write("deadletter", pa.table({"received_at": pa.array([ts_ms[0].as_py()] * k, pa.timestamp("ms", tz="UTC")),
                                           "reason": ["bad_json"] * k}), last.isoformat(), fsync=False)
    step("outputs", outputs)
    store = open_store(lake)
    step("store", lambda: _fill_store(store, accounts, meter_ids))
    print("  generation: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    return lake, store, [str(a) for a in accounts], [str(a) for a in accounts[arrears]]


def _time(client, url: str, headers: dict | None = None) -> tuple[float, float]:
    """(wall ms, CPU ms of this process — the server's threads and DuckDB's) of one request."""
    t0, c0 = time.perf_counter(), time.process_time()
    r = client.get(url, headers=headers)
    ms, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return ms, cpu


NEW_DAY_TABLES = ("billing_state", "charges", "alerts", "runs")   # what a settled day writes (intervals aside)


class NewDay:
    """A new settled day as the service sees it: the newest day's ``billing_state``, ``charges``,
    ``alerts`` and ``runs`` written again (new files, as a billing run's switch leaves them), so every
    cache keyed by files misses them while the older days' files stay cached, as in a long-running
    service; the console's city figures are forgotten (a new day's intervals would change them)."""

    def __init__(self, lake):
        self.lake = lake
        self.day = lake.partitions("billing_state")[-1]
        self.tables = {name: lake.read(name, self.day) for name in NEW_DAY_TABLES}

    def __call__(self, store) -> None:
        from accounts.web import data

        for th in list(data._COMPUTING.values()):   # a figure still being computed: let it end first
            th.join()
        for name, t in self.tables.items():
            self.lake.replace_partition(name, self.day, t, fsync=False)
        store.cache.clear()


def _pct(ms: list[float], p: float) -> float:
    ms = sorted(ms)
    return ms[min(len(ms) - 1, int(round(p * (len(ms) - 1))))]


def _reopen(root: Path):
    """A lake and store generated before (``--keep``): the lake, the store, user numbers, those in arrears."""
    import pyarrow.compute as pc

    from accounts.lakeview import last_settled_day
    from accounts.store import open_store
    from meters.lake import Lake

    lake = Lake(root / "lake")
    st = lake.read("billing_state", last_settled_day(lake).isoformat(), columns=["account_id", "arrears_since"])
    users = st.column("account_id").to_pylist()
    return lake, open_store(lake), users, st.filter(pc.is_valid(st.column("arrears_since"))).column("account_id").to_pylist()


def main(argv=None) -> None:
    from fastapi.testclient import TestClient

    from accounts.api.app import create_app
    from accounts.channels import add_channel
    from accounts.passwords import set_password
    from accounts.web import data

    p = argparse.ArgumentParser(prog="python -m benchmarks web", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK:,} accounts")
    p.add_argument("--accounts", type=int, default=None, help=f"accounts (default {FULL:,}; {QUICK:,} with --quick)")
    p.add_argument("--requests", type=int, default=30, help="warm requests per page (default 30)")
    p.add_argument("--cold", type=int, default=5, help="cold requests per page (default 5)")
    p.add_argument("--keep", type=Path, default=None, help="generate into (or reuse) this directory and keep it")
    a = p.parse_args(argv)
    n = a.accounts or (QUICK if a.quick else FULL)
    print(f"full size: python -m benchmarks web --accounts {FULL} --requests 30 "
          f"({FULL:,} accounts × {DAYS} days of charges, {FULL * 96:,} intervals; target ≤ {TARGET_MS} ms a page)")
    root = a.keep or Path(tempfile.mkdtemp(prefix="meters-bench-web-"))
    marker = root / f"ready-{n}"
    began = time.perf_counter()
    try:
        if marker.exists():
            lake, store, users, in_arrears = _reopen(root)
            print(f"reusing {root} ({n:,} accounts)")
        else:
            if (root / "lake").exists():
                shutil.rmtree(root / "lake")
            root.mkdir(parents=True, exist_ok=True)
            t0, c0 = time.perf_counter(), time.process_time()
            lake, store, users, in_arrears = generate(root, n)
            print(f"generated {n:,} accounts in {time.perf_counter() - t0:.1f} s (cpu {time.process_time() - c0:.1f} s; "
                  f"{len(in_arrears):,} in arrears), load average {os.getloadavg()[0]:.1f}")
            marker.touch()
        run = time.strftime("%Y%m%d%H%M%S")              # keys are shown once: this run's channel and operator
        operator = f"ops-{run}"
        ops_key = add_channel(store, operator, "operator")["key"]
        key = add_channel(store, f"web-{run}", "channel")["key"]
        set_password(store, operator, "benchmark password")
        client = TestClient(create_app(store))
        csrf = client.get("/console/login").cookies.get("meters_csrf") or client.cookies.get("meters_csrf")
        r = client.post("/console/login", data={"csrf": csrf, "name": operator, "password": "benchmark password"},
                        follow_redirects=False)
        assert r.status_code == 303, r.text[:300]
        rnd = random.Random(3)
        auth, ops = {"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {ops_key}"}
        pages = {
            "resident page /?user=": lambda: _time(client, "/?user=" + rnd.choice(users)),
            "API account /v1/accounts/U": lambda: _time(client, "/v1/accounts/" + rnd.choice(users), auth),
            "API bills /v1/accounts/U/bills": lambda: _time(client, f"/v1/accounts/{rnd.choice(users)}/bills", auth),
            "API usage /v1/accounts/U/usage": lambda: _time(client, f"/v1/accounts/{rnd.choice(users)}/usage", auth),
            "API alerts /v1/accounts/U/alerts": lambda: _time(client, f"/v1/accounts/{rnd.choice(users)}/alerts", auth),
            "console /console": lambda: _time(client, "/console"),
            "console search /console/account": lambda: _time(client, "/console/account?user=" + rnd.choice(in_arrears)),
            "runs /v1/runs": lambda: _time(client, "/v1/runs", ops),
        }
        new_day = NewDay(lake)
        print(f"server time per page ({n:,} accounts; cold: the first request after a new settled day, {a.cold} "
              f"each; warm: {a.requests} each; wall ms, and CPU ms of the process), load average "
              f"{os.getloadavg()[0]:.1f}:")
        for fn in pages.values():     # a service already running: connections open, templates compiled
            fn()
        worst = worst_cpu = 0.0
        for name, fn in pages.items():
            cold = []
            for _ in range(a.cold):
                new_day(store)
                cold.append(fn())
            if name.startswith("console /console"):   # the city figures, in the background after a cold request
                new_day(store)
                t1, c1 = time.perf_counter(), time.process_time()
                fn()
                for th in list(data._COMPUTING.values()):
                    th.join()
                ready, ready_cpu = time.perf_counter() - t1, time.process_time() - c1
            fn()
            warm = [fn() for _ in range(a.requests)]
            cw, cc, ww, wc = ([x[i] for x in ms] for ms in (cold, warm) for i in (0, 1))
            worst = max(worst, _pct(cw, 0.95), _pct(ww, 0.95))
            worst_cpu = max(worst_cpu, _pct(cc, 0.95), _pct(wc, 0.95))
            print(f"  {name:34} cold p50 {statistics.median(cw):6.0f} p95 {_pct(cw, 0.95):6.0f} (cpu {_pct(cc, 0.95):4.0f})"
                  f"   warm p50 {statistics.median(ww):6.0f} p95 {_pct(ww, 0.95):6.0f} (cpu p50 {statistics.median(wc):4.0f}"
                  f" p95 {_pct(wc, 0.95):4.0f})")
        print(f"  console city figures (load curve, arrears, alerts by kind) ready {ready:.1f} s (cpu {ready_cpu:.1f} s) "
              f"after a new settled day's first console request (in the request up to {data.INLINE_ROWS:,} rows)")
        print(f"  worst p95 {worst:.0f} ms wall, {worst_cpu:.0f} ms CPU: "
              f"{'meets' if worst <= TARGET_MS else 'MISSES'} the target ≤ {TARGET_MS} ms "
              f"(CPU: {'meets' if worst_cpu <= TARGET_MS else 'MISSES'}); load average {os.getloadavg()[0]:.1f}")
        took = time.perf_counter() - began
        print(f"this run took {took:.0f} s" + ("" if n >= FULL else
              f"; generation and city figures grow with the accounts: at {FULL:,} expect about "
              f"{took * FULL / n / 60:.0f} min on this machine now"))
        store.close()
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
