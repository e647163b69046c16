"""Billing a simulated fleet (simulator/, no broker: its uploads are written straight to the lake).

With faults on (lost, duplicate, late, spike readings; rollover and replaced meters) the money billed
stays within the estimation error of the money billed from the true readings, every interval whose
quantity differs from the truth is flagged (not ``actual``), and the VEE counts see each fault kind.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from billing.batch import bill_range
from meters.lake import init_lake
from meters.schemas import UTC_MS, UTC_S

simulator = pytest.importorskip("simulator.engine")
from simulator.engine import Plan, Shard  # noqa: E402
from simulator.faults import parse_faults  # noqa: E402
from simulator.fleet import make_fleet, save_fleet  # noqa: E402

D0 = dt.date(2026, 11, 2)
DAYS = 3


def simulated_lake(path, faults: str, n=300, seed=11):
    fleet = make_fleet(n, seed)
    lake = init_lake(path)
    save_fleet(lake, fleet)
    start, _ = lake.day_bounds_utc(D0)
    plan = Plan(fleet, int(start.timestamp()), DAYS, 900, seed, faults=parse_faults(faults))
    shard = Shard(plan)
    ups = [u for b in range(plan.n_blocks) for u in shard.uploads(b)] + shard.leftovers()
    m = np.concatenate([u.meter_id for u in ups])
    ts = np.concatenate([u.ts for u in ups])
    reg = np.concatenate([u.register_milli for u in ups])
    received = (int(start.timestamp()) + np.arange(len(m))) * 1000   # arrival order
    t = pa.table({"meter_id": m, "ts": pa.array(ts).cast(UTC_S), "register_milli": reg,
                  "sender": ["sim"] * len(m), "received_at": pa.array(received).cast(UTC_MS)})
    offset = 8 * 3600  # Asia/Shanghai
    day = (ts + offset) // 86400
    for d in np.unique(day):
        key = (dt.date(1970, 1, 1) + dt.timedelta(days=int(d))).isoformat()
        lake.write("readings", t.filter(pa.array(day == d)), key)
    return lake, shard


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    truth, shard = simulated_lake(root / "truth", "none")
    faulty, _ = simulated_lake(root / "faulty", "lost=0.02,duplicate=0.02,late=0.02,spike=0.003,"
                                                "rollover=0.05,replacement=0.05")
    last = D0 + dt.timedelta(days=DAYS - 1)
    return truth, faulty, shard, bill_range(truth, D0, last), bill_range(faulty, D0, last)


def test_truth_is_billed_exactly(billed):
    truth, _, shard, res, _ = billed
    iv = truth.read("intervals").sort_by([("meter_id", "ascending"), ("ts", "ascending")])
    assert set(iv.column("quality").to_pylist()) == {"actual"}
    q = iv.column("quantity").to_numpy().reshape(len(shard.meter_id), DAYS, 96).sum(axis=2)
    order = np.argsort(shard.meter_id)
    np.testing.assert_allclose(q, shard.day_q[order] / 1000.0, atol=1e-9)


def test_faulty_money_within_estimation_error_and_estimates_flagged(billed):
    truth, faulty, shard, res_t, res_f = billed
    money_t = sum(r.money_cents for r in res_t)
    money_f = sum(r.money_cents for r in res_f)
    assert money_t > 0 and abs(money_f - money_t) / money_t < 0.02, (money_t, money_f)
    a = faulty.read("intervals").sort_by([("meter_id", "ascending"), ("ts", "ascending")])
    b = truth.read("intervals").sort_by([("meter_id", "ascending"), ("ts", "ascending")])
    qa, qb = a.column("quantity").to_numpy(), b.column("quantity").to_numpy()
    actual = np.asarray(a.column("quality").to_pylist()) == "actual"
    # every interval that differs from the truth is flagged; every flagged one carries a reason
    assert np.all(np.abs(qa[actual] - qb[actual]) < 1e-9)
    flags = np.asarray(a.column("flag").to_pylist(), dtype=object)
    assert all(f for f in flags[~actual])
    vee = {}
    for r in res_f:
        for k, v in r.vee.items():
            vee[k] = vee.get(k, 0) + v
    assert vee["gap"] > 0 and vee["rollover"] > 0 and vee["replacement"] > 0 and vee["discarded"] > 0
    assert vee["duplicate"] > 0
    gaps = [x for x in faulty.read("alerts").to_pylist() if x["kind"] == "data_gap"]
    assert gaps and {x["recipient"] for x in gaps} == {"operator"}
    # per meter and day, the billed quantity is close to the truth (estimates share the same total)
    qd = qa.reshape(len(shard.meter_id), DAYS, 96).sum(axis=(1, 2))
    td = qb.reshape(len(shard.meter_id), DAYS, 96).sum(axis=(1, 2))
    close = np.abs(qd - td) <= 0.05 * td + 0.05
    assert close.mean() > 0.9
